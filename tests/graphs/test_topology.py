"""Graph shape: order, width, depth, critical path."""

from __future__ import annotations

import itertools

import pytest

from agentscale.graphs.topology import Topology, find_cycle

DIAMOND = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]


def test_order_width_depth() -> None:
    topology = Topology.build(["d", "c", "b", "a"], DIAMOND)
    assert topology.order == ("a", "c", "b", "d")  # ties keep the file order
    assert topology.sources == ("a",) and topology.sinks == ("d",)
    assert (topology.width, topology.depth) == (2, 3)


def test_critical_path_is_the_longest_weighted_path() -> None:
    topology = Topology.build(["a", "b", "c", "d"], DIAMOND)
    total, path = topology.critical_path({"a": 1.0, "b": 5.0, "c": 2.0, "d": 1.0})
    assert total == 7.0 and path == ["a", "b", "d"]


def test_find_cycle() -> None:
    assert find_cycle("abc", [("a", "b"), ("b", "c")]) is None
    assert find_cycle("abc", [("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]
    assert find_cycle("abcd", [("a", "b"), ("a", "c"), ("c", "d"), ("d", "c")]) == ["c", "d", "c"]


def test_find_cycle_follows_chains_longer_than_pythons_recursion_limit() -> None:
    """A 1,000-node chain failed validate, run and draw with RecursionError (a traceback)."""
    nodes = [f"n{i}" for i in range(5000)]
    chain = list(itertools.pairwise(nodes))
    assert find_cycle(nodes, chain) is None
    assert find_cycle(nodes, [*chain, ("n4999", "n4000")]) == [*nodes[4000:], "n4000"]


def test_build_refuses_a_cycle() -> None:
    """T4: the optimizer and the simulator build raw edge lists that validate never saw; a cycle must
    not give an order that leaves its nodes out (they would never run)."""
    with pytest.raises(ValueError, match="cycle"):
        Topology.build(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])


def test_a_node_s_level_is_one_past_its_deepest_predecessor() -> None:
    """T5: with a shortcut edge a -> c beside a -> b -> c, c is at depth 3, not 2."""
    topology = Topology.build(["a", "b", "c"], [("a", "b"), ("b", "c"), ("a", "c")])
    assert topology.levels() == {"a": 1, "b": 2, "c": 3}
    assert (topology.depth, topology.width) == (3, 1)
    assert topology.order == ("a", "b", "c")


def test_the_critical_path_is_the_heaviest_over_every_sink() -> None:
    """T7: raw edge lists may have several sinks; the longest path need not end at the last in order."""
    topology = Topology.build(["a", "b", "c"], [("a", "b"), ("a", "c")])
    assert topology.critical_path({"a": 1.0, "b": 5.0, "c": 2.0}) == (6.0, ["a", "b"])
