"""Graph shape: order, width, depth, critical path."""

from __future__ import annotations

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
