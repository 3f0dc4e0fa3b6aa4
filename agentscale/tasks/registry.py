"""Task names -> loaders: ``load_task("humaneval")``, ``load_task("rg:chain_sum", n=50)``,
``load_task("data.jsonl", scorer="numeric")``, and the rows of ``agentscale tasks list``.

Two kinds of entries: exact names (``humaneval``, ``champ``) and prefixes (``rg:<name>``). Other
modules add their own with :func:`register_task` / :func:`register_prefix` - e.g. the simulated
population registers ``sim:`` (``sim:math``) when imported - or, from another package, through the
``agentscale.tasks`` entry-point group (each entry point is a zero-argument callable that calls the
register functions; they are loaded the first time a name is not found or tasks are listed).
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from agentscale.errors import AgentScaleError
from agentscale.tasks.base import Task, TaskInfo
from agentscale.tasks.errors import TaskError, TaskOptionError, TaskScorerError
from agentscale.tasks.scorers import SCORERS, get_scorer
from agentscale.tasks.sources import champ, humaneval, rgym
from agentscale.tasks.sources.jsonl import load_jsonl

ENTRY_POINT_GROUP = "agentscale.tasks"


@dataclass(frozen=True)
class _Named:
    loader: Callable[..., Task]
    info: TaskInfo


@dataclass(frozen=True)
class _Prefixed:
    loader: Callable[..., Task]  # loader(name_after_prefix, **options)
    lister: Callable[[], list[TaskInfo]]


_named: dict[str, _Named] = {}
_prefixed: dict[str, _Prefixed] = {}
_plugins_loaded = False
_plugins_lock = threading.Lock()


def register_task(name: str, loader: Callable[..., Task], info: TaskInfo) -> None:
    """Make ``load_task(name, **options)`` call ``loader(**options)``; ``info`` is its list row."""
    if ":" in name:
        raise ValueError(f"task name {name!r} may not contain ':' (use register_prefix)")
    _named[name] = _Named(loader, info)


def register_prefix(
    prefix: str, loader: Callable[..., Task], lister: Callable[[], list[TaskInfo]] | None = None
) -> None:
    """Make ``load_task(f"{prefix}:{rest}", **options)`` call ``loader(rest, **options)``."""
    if not prefix or ":" in prefix:
        raise ValueError(f"bad task prefix {prefix!r}")
    _prefixed[prefix] = _Prefixed(loader, lister or (lambda: []))


def _load_plugins() -> None:
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()()
            except Exception as error:  # a broken plugin must not hide the built-in tasks
                raise TaskError(f"task plugin {entry.name!r} ({entry.value}) failed to load: {error}") from error


def _is_path(spec: str) -> bool:
    """A task file: a .jsonl/.json name, a path with a folder, or a bare file name that names no task
    (a file `champ` in the working directory loaded instead of the built-in; `./champ` names it)."""
    if spec.endswith((".jsonl", ".json")) or "/" in spec:
        return True
    return Path(spec).is_file() and not _names_task(spec)


def _names_task(spec: str) -> bool:
    prefix, sep, _ = _with_plugins_for(spec)
    return prefix in _prefixed if sep else spec in _named


def _with_plugins_for(spec: str) -> tuple[str, str, str]:
    """``spec`` split at its prefix, the plugins loaded first when it names no built-in task."""
    prefix, sep, rest = spec.partition(":")
    if (sep and prefix not in _prefixed) or (not sep and spec not in _named):
        _load_plugins()
    return prefix, sep, rest


def stable_task_spec(spec: str) -> str:
    """``spec`` as a stored run keeps it: a task file's path made absolute, so ``--resume`` finds the
    file from any directory (relative, it named a file relative to where the run started); a task
    name unchanged."""
    spec = spec.strip()
    return str(Path(spec).resolve()) if _is_path(spec) and Path(spec).is_file() else spec


def task_file_problem(path: str) -> str | None:
    """Why `path` cannot be a task file, or None: /dev/zero, a pipe and (on resume) a folder were all
    "not found"."""
    file = Path(path)
    if file.is_file():
        return None
    if not _is_path(path) and _names_task(path):  # `eval --resume RUN --task sim:math` said "file not found"
        return f"{path!r} names a task, not a task file"
    if file.is_dir():
        return f"task file {path!r} is a directory"
    if file.exists():
        return f"task file {path!r} is not a regular file (a device or a pipe): save the items to a file"
    return f"task file {path!r} not found"


def task_file_digest(spec: str) -> str | None:
    """The sha256 of a task file's bytes (None for a named task): a resumed eval checks its file is
    the one it started on (a file edited or grown since mixed two versions' items and verdicts)."""
    spec = spec.strip()
    if not (_is_path(spec) and Path(spec).is_file()):
        return None
    with Path(spec).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def refuse_a_changed_task_file(path: str, sha256: str | None, run_id: str, start_anew: str) -> None:
    """A resumed run's task file must be the one it started on (`sha256`; None: a named task, or a
    run stored before the digest was kept): edited or grown, its items were sampled again and
    verdicts kept under ids that now name other questions (an eval said 5/5 while its report said
    5/7; an optimization crowned a graph neither version of the file would). `start_anew` says how."""
    if sha256 is None:
        return
    now = task_file_digest(path)
    if now is not None and now != sha256:
        raise AgentScaleError(
            f"task file {path} has changed since run {run_id} started: its items and their stored verdicts "
            f"would no longer match; put the file back as it was, or {start_anew}"
        )


def moved_task_file(path: str, sha256: str | None, now_at: str, run_id: str, flag: str = "--task") -> str:
    """Where a resumed run's task file (stored at `path`, its bytes' `sha256`) is now, `now_at` (given
    with `flag`): the same bytes, checked, as the run keeps it (`stable_task_spec`)."""
    if sha256 is None:
        if not _is_path(path):
            raise AgentScaleError(
                f"run {run_id} answers task {path!r}, not a task file it could find elsewhere: drop {flag}"
            )
        raise AgentScaleError(
            f"run {run_id} was stored without its task file's sha256 (an earlier release), so another file cannot "
            f"be checked to be it: put the file back at {path}"
        )
    problem = task_file_problem(now_at)
    if problem is not None:
        raise AgentScaleError(problem)
    if task_file_digest(now_at) != sha256:
        raise AgentScaleError(
            f"task file {now_at} is not the file run {run_id} started on ({path}): its sha256 differs"
        )
    return stable_task_spec(now_at)


def refuse_a_missing_task_file(path: str, sha256: str | None, run_id: str, flag: str = "--task") -> None:
    """A resumed run whose task file is gone from where it was says how to give its new place."""
    if sha256 is not None and not Path(path).is_file():
        raise AgentScaleError(
            f"run {run_id}'s task file {path} is not there: if it moved, give its new path with {flag}"
        )


def task_topic(spec: str) -> str:
    """The topic behaviors learnt from task ``spec`` are filed under: a task file's name (so the same
    file is one topic whether its path was given relative, absolute or stored by a run), else the
    task's name."""
    spec = spec.strip()
    return Path(spec).name if _is_path(spec) else spec


def _call(loader: Callable[..., Task], spec: str, /, *args: Any, **options: Any) -> Task:
    try:
        inspect.signature(loader).bind(*args, **options)
    except TypeError:
        accepted = [
            p.name
            for p in list(inspect.signature(loader).parameters.values())[len(args) :]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        refused = sorted(set(options) - set(accepted)) or sorted(options)  # name the culprits, not every option
        raise TaskOptionError(
            f"task {spec!r} does not accept option(s) {', '.join(refused)}; it accepts: {', '.join(accepted) or 'none'}"
        ) from None
    return loader(*args, **options)


def _valid_names() -> str:
    names = sorted(_named) + [f"{prefix}:<name>" for prefix in sorted(_prefixed)]
    return ", ".join(names) + ", or a path to a .jsonl file"


def load_task(
    spec: str,
    *,
    scorer: str | None = None,
    stored: bool = False,
    options: Mapping[str, Any] | None = None,
    **more_options: Any,
) -> Task:
    """The task named by ``spec``; ``scorer`` replaces its scorer (a built-in task's only by one that
    reads its answer format: another would change its prompts too), ``options`` and
    ``more_options`` go to its loader (a user's options come as the mapping: one named `scorer`,
    `stored`, `spec` or `options` among keywords was a TypeError, not a refused option).
    ``stored``: the task of a stored run being resumed, taken as it was started (runs stored before
    the answer-format check must still finish).

    ``spec`` is a built-in name (``humaneval``, ``champ``), ``prefix:name`` (``rg:chain_sum``) or a
    JSONL path. Unknown names raise `TaskError` listing the valid ones.
    """
    options = {**(options or {}), **more_options}
    spec = spec.strip()
    if _is_path(spec):
        problem = task_file_problem(spec)
        if problem is not None:
            raise TaskError(problem)
        if "scorer" in options:  # a TypeError traceback ("multiple values for keyword argument 'scorer'")
            raise TaskOptionError("scorer is not a task option: give it as --scorer (task.scorer in a space)")
        if options:  # the loader's own keywords were listed as what it accepts ("scorer, name, stored")
            raise TaskOptionError(
                f"task {spec!r} does not accept option(s) {', '.join(options)}; it accepts: none "
                "(a file's items are as written; options set generated tasks such as rg:...)"
            )
        return load_jsonl(spec, scorer=scorer, stored=stored)
    prefix, sep, rest = _with_plugins_for(spec)
    if sep:
        entry = _prefixed.get(prefix)
        if entry is None or not rest:
            raise TaskError(f"unknown task {spec!r}; valid tasks: {_valid_names()}")
        task = _call(entry.loader, spec, rest, **options)
    else:
        named = _named.get(spec)
        if named is None:
            raise TaskError(f"unknown task {spec!r}; valid tasks: {_valid_names()}")
        task = _call(named.loader, spec, **options)
    if scorer is not None:
        scorer_fn, answer_format = get_scorer(scorer)
        if answer_format != task.answer_format and not stored:  # it changes the prompts, not only scoring
            fitting = [name for name, (_, fmt) in SCORERS.items() if fmt == task.answer_format]
            raise TaskScorerError(
                f"task {spec!r} answers in {task.answer_format!r} and scorer {scorer!r} reads {answer_format!r} "
                f"answers: leave the scorer out (the task's own is {task.scorer_name!r})"
                + (f" or use {' or '.join(fitting)}" if fitting else "")
            )
        task = task.with_scorer(scorer_fn, scorer, answer_format)
    return task


def list_tasks() -> list[TaskInfo]:
    """Every known task (configurable ones at their default size), for ``agentscale tasks list``."""
    _load_plugins()
    rows = [named.info for _, named in sorted(_named.items())]
    for _, entry in sorted(_prefixed.items()):
        try:
            rows.extend(entry.lister())
        except TaskError:
            continue  # an optional dependency is missing: its tasks are simply not listed
    return rows


register_task(
    humaneval.NAME,
    humaneval.load_humaneval,
    TaskInfo(humaneval.NAME, humaneval.SIZE, "code", "code", humaneval.DESCRIPTION),
)
register_task(champ.NAME, champ.load_champ, TaskInfo(champ.NAME, champ.SIZE, "math", "text", champ.DESCRIPTION))
register_prefix(rgym.PREFIX, rgym.load_reasoning_gym, rgym.infos)
