"""Options shared by several commands (cli/_options.py): `--task-option KEY=VALUE` parsing."""

from __future__ import annotations

import re

import pytest

from agentscale.cli._options import parse_options
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
