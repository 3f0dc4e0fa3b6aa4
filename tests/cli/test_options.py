"""Options shared by several commands (cli/_options.py): `--task-option KEY=VALUE` parsing, output
files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentscale.cli._options import parse_options
from agentscale.cli.app import main
from agentscale.errors import AgentScaleError


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
