"""Options shared by several commands (cli/_options.py): `--task-option KEY=VALUE` parsing, output
files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentscale import Gateway
from agentscale.cli._options import executor_config, parse_options, warn_if_open
from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.executors import ExecutorConfig


def test_task_options_are_read_as_yaml_values() -> None:
    options = parse_options(["max_digits=1", " ops = [+, -]", "name=plain text", "ratio=0.5", "empty="])
    assert options == {"max_digits": 1, "ops": ["+", "-"], "name": "plain text", "ratio": 0.5, "empty": None}


@pytest.mark.parametrize(
    ("pair", "message"),
    [("max_digits", "use KEY=VALUE"), ("=1", "use KEY=VALUE"), ("ops=[+, -", "cannot read the value")],
)
def test_bad_task_options_name_the_flag(pair: str, message: str) -> None:
    with pytest.raises(AgentScaleError, match=re.escape(f"--task-option {pair!r}: {message}")):
        parse_options([pair])


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["report", "abc", "-o"], "report.html"),
        (["handbook", "export", "math", "-o"], "handbook.json"),
        (["draw", "g.yaml", "-o"], "graph.svg"),
        (["optimize", "s.yaml", "--out"], "best.yaml"),
        (["sim", "best-known", "s.yaml", "--out"], "space.best-known.yaml"),
    ],
)
def test_an_output_path_ending_in_a_slash_is_refused_as_a_folder(
    command: list[str], example: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`handbook export -o out/` (no folder out yet) wrote a file named `out`: Path drops the slash."""
    folder = f"{tmp_path}/out/"
    assert main([*command, folder]) == 2
    assert f"{folder} names a folder; give a file path, e.g. {tmp_path}/out/{example}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["runs", "list"], ["eval", "g.yaml", "--task", "sim:math"], ["handbook", "list"]])
def test_an_empty_db_is_refused_as_such(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--db "$DB"` with DB unset became the path `.`: "database . is a directory", naming neither
    the option nor the empty value."""
    assert main([*command, "--db", ""]) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "Invalid value for '--db': an empty path names no database file" in said


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "g.yaml", "--task", "sim:math", "--seed", "-1"],
        ["handbook", "build", "--task", "sim:math", "--model", "sim/llama-8b", "--seed", "-1"],
        ["optimize", "s.yaml", "--seed", "-1"],
    ],
)
def test_a_negative_seed_is_refused_by_every_command(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Seeds are >= 0 in files and for `optimize`; `eval --seed -1` and `handbook build --seed -1` took it."""
    assert main(command) == 2
    assert "Invalid value for '--seed'" in capsys.readouterr().err


def test_a_resumed_run_keeps_its_stored_executor_unless_flags_change_it(gateway: Gateway) -> None:
    """`optimize --resume RUN` with no executor flag must go on with the executor the run was started
    with (None: keep it): a local default there sent a Ray run's remaining evaluations to this host's
    process. A flag given changes only what it names."""
    ray = {"kind": "ray", "address": None, "workers": 2}
    assert gateway.store is not None
    run = gateway.store.create_run("optimize", config={"executor": ray})
    assert executor_config(gateway, run.id, None, None, None) is None
    assert executor_config(gateway, run.id, None, None, 3) == ExecutorConfig("ray", None, 3)
    assert executor_config(gateway, None, None, None, None) == ExecutorConfig()  # a new run: local


@pytest.mark.parametrize(
    ("host", "warned"),
    [
        ("localhost", False),
        ("LocalHost", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("0.0.0.0", True),
        ("", True),
        ("my-box", True),
    ],
)
def test_only_a_host_other_machines_can_reach_is_warned_of(
    host: str, warned: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve-graph`/`serve` without a key warn for a host reachable from other machines, not for this
    machine's loopback (mutant O5: `--host localhost` was warned of as open; serve-graph's test binds
    127.0.0.1 and "" only)."""
    warn_if_open(host, "runs the graph")
    err = capsys.readouterr().err
    assert ("is reachable from other machines and no key is asked" in " ".join(err.split())) == warned


def test_ray_is_said_before_its_start(capsys: pytest.CaptureFixture[str]) -> None:
    """Starting or reaching Ray took 10-20 s on every `--executor ray` command with nothing on screen
    but "0/300" (the executors walk's F1); --json and the local executor say nothing."""
    from agentscale.cli._options import say_where_items_run
    from agentscale.executors import ExecutorConfig

    say_where_items_run(ExecutorConfig(), json_output=False)
    say_where_items_run(ExecutorConfig("ray"), json_output=True)
    assert capsys.readouterr().err == ""
    say_where_items_run(ExecutorConfig("ray", workers=2), json_output=False)
    say_where_items_run(ExecutorConfig("ray", address="ray://head:10001"), json_output=False)
    said = " ".join(capsys.readouterr().err.split())
    assert "items run on Ray: starting a new local Ray (10-20 s on a small machine), 2 workers" in said
    assert "starting the cluster at ray://head:10001 before the first item" in said
