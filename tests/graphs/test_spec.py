"""Edge strings of a graph file."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentscale.graphs.spec import parse_edge


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("a -> b", [("a", "b")]),
        ("a, b -> c", [("a", "c"), ("b", "c")]),
        ("a -> b, c", [("a", "b"), ("a", "c")]),
        (" a->b -> c ", [("a", "b"), ("b", "c")]),
    ],
)
def test_edges_parse_into_pairs(text: str, pairs: list[tuple[str, str]]) -> None:
    assert parse_edge(text) == pairs


@pytest.mark.parametrize("text", ["a", "-> b", "a -> ", "a, -> b"])
def test_a_malformed_edge_names_itself(text: str) -> None:
    with pytest.raises(ValueError, match="edge"):
        parse_edge(text)


def test_long_blanks_in_an_edge_do_not_backtrack(in_a_child: Callable[[str], None]) -> None:
    # a split pattern \s*->\s* rescanned every blank run: 0.37 s on 20,000, minutes on a million
    in_a_child(
        "from agentscale.graphs.spec import parse_edge\n"
        "blanks = ' ' * 1_000_000\n"
        "assert parse_edge('a' + blanks + '-> b') == [('a', 'b')]\n"
        "assert parse_edge('a' + blanks + 'x -> b') == [('a' + blanks + 'x', 'b')]\n"
    )
