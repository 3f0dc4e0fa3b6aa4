"""The shipped graph and space files, mutated at random (seeded): whatever a user's edit makes of them,
loading ends in a valid spec that round-trips or in a SpecError whose every issue names its place,
never in another exception (a traceback where the user expected a message).

Spaces are checked here too: they are validated by the same field pass (`validate_fields`).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentscale.errors import SpecError
from agentscale.graphs.io import dump_graph_spec
from agentscale.graphs.validate import load_spec_text
from agentscale.optimize.space import space_from_text

FILES = sorted((Path(__file__).parents[2] / "graphs").glob("*.yaml"))
MUTANTS_PER_FILE = 150
ODD_VALUES: list[Any] = [
    None,
    -1,
    0,
    1,
    2.5,
    1e30,
    "",
    "x",
    "ü\u0085é",
    [],
    {},
    True,
    10**20,
    [1, 2],
    {"a": 1},
    "a -> a",
]
ODD_KEYS = ["extra", "temperature", "max_tokens", "model", "role", "memory", "budget", "coordinator"]


def _places(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    children = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in children:
        yield from _places(value, (*path, key))


def _mutated(data: Any, rng: random.Random) -> Any:
    """One to two edits a user could make: odd characters in a text, a value replaced by an odd one, a key dropped or added, a
    list item repeated, a subtree moved elsewhere."""
    data = copy.deepcopy(data)
    for _ in range(rng.choice([1, 1, 2])):
        places = list(_places(data))
        path = rng.choice(places)
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        key, edit = path[-1], rng.random()
        if isinstance(parent[key], str) and edit < 0.2:  # odd characters in a text (a description)
            parent[key] += rng.choice(["\u0085 ü", "\t'\"", " # x", "\u2028"])
        elif edit < 0.5:
            parent[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        elif edit < 0.65:
            del parent[key]
        elif edit < 0.8 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))
        elif edit < 0.9 and isinstance(parent, dict):
            parent[rng.choice(ODD_KEYS)] = copy.deepcopy(rng.choice(ODD_VALUES))
        else:
            elsewhere = rng.choice(places)
            moved: Any = data
            for step in elsewhere:
                moved = moved[step]
            parent[key] = copy.deepcopy(moved)
    return data


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_a_mutated_file_loads_or_says_where_it_is_wrong(path: Path) -> None:
    original = yaml.safe_load(path.read_text())
    is_space = "task" in original
    rng = random.Random(path.name)
    outcomes = {"valid": 0, "refused": 0}
    for _ in range(MUTANTS_PER_FILE):
        text = yaml.safe_dump(_mutated(original, rng), sort_keys=False)  # non-ASCII escaped: kept as it is
        try:
            spec = space_from_text(text, "m.yaml") if is_space else load_spec_text(text, "m.yaml")
        except SpecError as exc:
            outcomes["refused"] += 1
            assert exc.issues, text
            for issue in exc.issues:
                assert issue.message and (issue.line is None or issue.line >= 1), (text, str(issue))
                assert "input string" not in issue.message, (text, str(issue))  # pydantic's own words
            continue
        outcomes["valid"] += 1
        if not is_space:
            assert load_spec_text(dump_graph_spec(spec), "dumped.yaml") == spec, text
    assert outcomes["valid"] and outcomes["refused"], outcomes  # the edits reach both outcomes
