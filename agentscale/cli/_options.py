"""Options shared by several commands, declared once so their help text and parsing stay consistent."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from agentscale.cli._console import err, keep_stdout_for_json
from agentscale.errors import AgentScaleError

if TYPE_CHECKING:
    from agentscale.executors import ExecutorConfig
    from agentscale.graphs.spec import ModelSpec
    from agentscale.models.gateway import Gateway
    from agentscale.storage.db import Store


def _database_path(raw: str) -> Path:
    """`--db`'s parser: `--db ""` (an unset shell variable, `--db "$DB"`) became the path `.` and was
    refused as "database . is a directory", naming neither the option nor the empty value."""
    if not raw.strip():
        raise typer.BadParameter("an empty path names no database file: give a SQLite file path, or leave --db out")
    return Path(raw)


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        parser=_database_path,
        metavar="<path>",
        help="SQLite file for runs and the response cache (env AGENTSCALE_DB; default ./.agentscale/agentscale.db).",
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON document on stdout (human output is suppressed).",
        callback=keep_stdout_for_json,
    ),
]
NoCacheOption = Annotated[
    bool,
    typer.Option("--no-cache", help="Do not read or write the response cache (env AGENTSCALE_CACHE=off)."),
]
RetryErrorsOption = Annotated[
    bool,
    typer.Option(
        "--retry-errors",
        help="With --resume: ask again what the run scored after a model call failed (a server down, a key "
        "missing), which a resume otherwise keeps as it ended; the calls that answered come from the cache.",
    ),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where items run: local (this process, asyncio; the default) or ray (worker actors on a Ray "
        "cluster; needs pip install 'agentscale\\[ray]'). This process still writes the database. "
        "Stored with the run: --resume reuses it unless given again.",
        show_default=False,
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to use with --executor ray: ray://HEAD:10001, or auto for one started with "
        "`ray start` on this host (default: start a local Ray on this machine's cores).",
        show_default=False,
    ),
]
RayWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        help="Worker actors with --executor ray, each taking --concurrency items at once (default: one per "
        "CPU of the cluster).",
        min=1,
        show_default=False,
    ),
]


def output_file(example: str) -> Callable[[str], Path]:
    """The parser of an option naming a file to write (`-o`, `--out`): a path ending in a separator
    names a folder, which is refused with a file to give instead (`Path` drops the separator, so
    `-o out/` wrote a file named `out`); `example` is the file name the hint puts in that folder."""

    def parse(raw: str) -> Path:
        if raw.endswith(("/", os.sep)):
            raise typer.BadParameter(f"{raw} names a folder; give a file path, e.g. {Path(raw) / example}")
        return Path(raw)

    return parse


def open_store(db: Path | None, *, existing: bool = False, reads_only: bool = False) -> Store:
    """The database; `existing`: commands that act on what it holds (a resume, `handbook prune`)
    refuse a path where none is, rather than leave an empty database at a mistyped `--db`;
    `reads_only` (existing too): commands that only read it (`runs show`, `report`) open a file they
    cannot write (a read-only folder or file system: a shared copy of results) read-only, which
    failed to open at all; one they can write is opened as usual (an earlier release's is brought
    up to date)."""
    from agentscale.storage.db import Store, database_file

    path = database_file(db)
    if (existing or reads_only) and not path.exists():
        raise AgentScaleError(f"no database at {path}: nothing has run with it (check --db or AGENTSCALE_DB)")
    read_only = reads_only and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
    return Store(db, read_only=read_only)


def checked_graph_text(path: Path) -> str:
    """A graph file's text, once its YAML and schema are checked: before the command opens its
    database, so a mistyped or broken graph file leaves no database behind (`eval g1.yaml` with no
    g1.yaml made a 122 KB one). Read once: a pipe (`run <(make-graph)`) cannot be read again."""
    from agentscale.graphs.io import load_spec_text, read_text

    text = read_text(path)
    load_spec_text(text, str(path))
    return text


def refuse_missing_file(path: Path) -> None:
    """Refuse a path with no file at it, as reading it would (a pipe, which is there, is left for the
    command to read once), before the command opens its database."""
    from agentscale.graphs.io import read_text

    if not path.exists() or path.is_dir():
        read_text(path)  # raises, naming what is wrong


def api_key_of(api_key_env: str | None) -> str | None:
    """The key an `--api-key-env VAR` option names (None without the option), refused before anything
    starts when the variable is unset or empty (serve-graph and serve)."""
    if api_key_env is None:
        return None
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):  # said without echoing: it may be the key
        raise AgentScaleError(
            "--api-key-env takes the name of an environment variable that holds the key (e.g. "
            "AGENTSCALE_SERVE_KEY), not the key itself"
        )
    key = os.environ.get(api_key_env)
    if not key:
        raise AgentScaleError(f"--api-key-env {api_key_env}: the variable is not set or empty")
    if not all("!" <= char <= "~" for char in key):  # the server started, and every request got a 401
        raise AgentScaleError(
            f"--api-key-env {api_key_env}: the key holds whitespace (a newline read from a secret file?) or "
            "characters other than printable ASCII, which no client can send in an Authorization header; "
            "strip them"
        )
    return key


def warn_if_open(host: str, what: str) -> None:
    """Warn that a server listening on `host` without a key lets anyone who reaches it do `what`,
    unless `host` is this machine's loopback (a security review: `--host 0.0.0.0` said only "no auth")."""
    import ipaddress

    from rich.markup import escape

    from agentscale.cli._console import err

    if host.lower() == "localhost":
        return
    with contextlib.suppress(ValueError):  # a host name may resolve to any interface: warned of
        if ipaddress.ip_address(host).is_loopback:
            return
    err.print(
        f"[yellow]warning:[/] {escape(host)} is reachable from other machines and no key is asked: anyone who "
        f"reaches it {what}",
        markup=True,
    )


def unset_api_keys(models: Mapping[str, ModelSpec], at: str = "models") -> list[str]:
    """The `api_key_env` variables not set here: valid, yet every call would fail where the command
    runs (an eval found it item by item; a served graph answered 502 to every question its cache did
    not hold); said as notes, not errors, as CI may validate without the secrets."""
    return [
        f"{at}.{alias}.api_key_env: {model.api_key_env} is not set in this environment"
        for alias, model in models.items()
        if model.api_key_env is not None and model.api_key_env not in os.environ
    ]


def make_gateway(
    db: Path | None,
    no_cache: bool,
    *,
    existing: bool = False,
    run_files: bool = False,
    resume: str | None = None,
    **settings: float | int | None,
) -> Gateway:
    """The command's gateway on its database; `existing`, as `open_store` takes it (a resume: a
    mistyped --db made an empty database before it said there was no such run); `run_files`: the
    command writes a run's files beside it (`refuse_blocked_run_files`); `resume`: the run a resume
    continues, whose `--no-cache` it keeps (the printed resume command, pasted, answered the rest of an
    eval started with --no-cache from the cache, mixing fresh and stale answers in one run)."""
    from agentscale.models.gateway import Gateway, GatewaySettings

    overrides = {k: v for k, v in settings.items() if v is not None}
    store = open_store(db, existing=existing)
    if not no_cache and resume is not None and _started_without_cache(store, resume):
        from agentscale.cli._console import err

        err.print(f"run {resume} was started with --no-cache: it goes on without the response cache")
        no_cache = True
    if no_cache:
        overrides["cache"] = False
    if run_files:
        refuse_blocked_run_files(store)
    return Gateway(store, GatewaySettings.from_env(**overrides))


def _started_without_cache(store: Store, run_id: str) -> bool:
    """Whether a stored run was made with the response cache off (`response_cache` in its config; runs
    made before it was stored say nothing and count as cached, as they were by default)."""
    try:
        run = store.get_run(run_id)
    except AgentScaleError:  # no such run: the resume itself says so
        return False
    return json.loads(run.config_json).get("response_cache") is False


def refuse_blocked_run_files(store: Store) -> None:
    """A run's files (report, best graph, plot) go under `runs/` beside the database: a file in the
    way is refused before the run starts. A finished eval, or a whole search, failed only when it came
    to write them, its results unprinted and an optimization stored failed."""
    from agentscale.graphs.io import blocking_file

    folder = store.run_folder("-")  # any run's: its parents are what a file may block
    if (blocking := blocking_file(folder)) is not None:
        raise AgentScaleError(
            f"a run's files go under {folder.parent}, but {blocking} is a file, not a folder: move it or give "
            "another --db"
        )


def executor_config(
    gateway: Gateway, resume: str | None, kind: str | None, address: str | None, workers: int | None
) -> ExecutorConfig | None:
    """The executor of this invocation: local, or the flags given; on `--resume`, the one stored with
    the run (None: keep it) with the flags given applied."""
    from agentscale.executors import ExecutorConfig

    if resume is None:
        return ExecutorConfig().override(kind, address, workers)
    if kind is None and address is None and workers is None:
        return None
    assert gateway.store is not None
    stored = json.loads(gateway.store.get_run(resume).config_json).get("executor")
    return ExecutorConfig.from_stored(stored).override(kind, address, workers)


def say_where_items_run(executor: ExecutorConfig, *, json_output: bool) -> None:
    """A line before Ray's start: starting or reaching it took 10-20 s on every `--executor ray` command
    here with nothing on screen but "0/300" (the executors walk)."""
    if executor.kind != "ray" or json_output:
        return
    where = f"the cluster at {executor.address}" if executor.address else "a new local Ray (10-20 s on a small machine)"
    count = executor.workers
    workers = f", {count} worker{'s' if count != 1 else ''}" if count else ""
    err.print(f"items run on Ray: starting {where}{workers} before the first item")


def check_retry_errors(retry_errors: bool, resume: str | None) -> None:
    """--retry-errors acts on a stored run: without --resume there is nothing to ask again."""
    if retry_errors and resume is None:
        raise AgentScaleError("--retry-errors asks again the failed items of a stored run: give --resume RUN_ID")


def refuse_ignored(given: dict[str, bool], why: str, *, by: str = "--resume") -> None:
    """Flags a stored run's own settings decide (`--resume` continues the run as it was started,
    `handbook build --from-run` learns from its items as they were scored): those given (named in
    `given`, True when the user gave one) are refused rather than silently ignored."""
    flags = [flag for flag, present in given.items() if present]
    if flags:
        raise AgentScaleError(f"{by} {why}; drop {', '.join(flags)}")


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`--task-option KEY=VALUE` pairs (eval, handbook build); values are read as YAML scalars or lists
    (2 -> int, [+, -] -> list)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise AgentScaleError(f"--task-option {pair!r}: use KEY=VALUE")
        try:
            options[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise AgentScaleError(f"--task-option {pair!r}: cannot read the value") from None
    return options
