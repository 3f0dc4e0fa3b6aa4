"""Graph shape: topological order, predecessors, width, depth and critical path.

Kept free of pydantic and LangGraph so the optimizer and the simulator can use it on raw edge lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


def find_cycle(nodes: Iterable[str], pairs: Iterable[tuple[str, str]]) -> list[str] | None:
    """Return one cycle as [a, b, ..., a], or None when the graph is acyclic."""
    successors: dict[str, list[str]] = {n: [] for n in nodes}
    for source, target in pairs:
        successors.setdefault(source, []).append(target)
        successors.setdefault(target, [])
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(successors, white)
    for root in successors:  # depth-first without recursion: a 1,000-node chain hit Python's limit
        if color[root] != white:
            continue
        color[root] = grey
        path, pending = [root], [iter(successors[root])]
        while pending:
            nxt = next(pending[-1], None)
            if nxt is None:
                color[path.pop()] = black
                pending.pop()
            elif color[nxt] == grey:
                return [*path[path.index(nxt) :], nxt]
            elif color[nxt] == white:
                color[nxt] = grey
                path.append(nxt)
                pending.append(iter(successors[nxt]))
    return None


@dataclass(frozen=True)
class Topology:
    """Static shape of a DAG, with nodes in a deterministic topological order."""

    order: tuple[str, ...]
    predecessors: Mapping[str, tuple[str, ...]]
    successors: Mapping[str, tuple[str, ...]]

    @classmethod
    def build(cls, nodes: Iterable[str], pairs: Iterable[tuple[str, str]]) -> Topology:
        node_list = list(nodes)
        preds: dict[str, list[str]] = {n: [] for n in node_list}
        succs: dict[str, list[str]] = {n: [] for n in node_list}
        for source, target in pairs:
            preds[target].append(source)
            succs[source].append(target)
        position = {n: i for i, n in enumerate(node_list)}
        indegree = {n: len(preds[n]) for n in node_list}
        ready = [n for n in node_list if indegree[n] == 0]
        order: list[str] = []
        while ready:
            ready.sort(key=position.__getitem__)
            current = ready.pop(0)
            order.append(current)
            for nxt in succs[current]:
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(node_list):
            raise ValueError("graph has a cycle")
        return cls(
            tuple(order),
            {n: tuple(p) for n, p in preds.items()},
            {n: tuple(s) for n, s in succs.items()},
        )

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if not self.predecessors[n])

    @property
    def sinks(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if not self.successors[n])

    def levels(self) -> dict[str, int]:
        """Depth of each node: 1 for sources, 1 + max over predecessors otherwise."""
        level: dict[str, int] = {}
        for node in self.order:
            level[node] = 1 + max((level[p] for p in self.predecessors[node]), default=0)
        return level

    @property
    def depth(self) -> int:
        """Number of nodes on the longest path (sequential refinement steps)."""
        return max(self.levels().values(), default=0)

    @property
    def width(self) -> int:
        """Largest number of nodes at one depth level (parallel chains)."""
        counts: dict[int, int] = {}
        for lvl in self.levels().values():
            counts[lvl] = counts.get(lvl, 0) + 1
        return max(counts.values(), default=0)

    def critical_path(self, weight: Mapping[str, float]) -> tuple[float, list[str]]:
        """Longest weighted path (e.g. by latency): the latency a perfectly parallel run would have."""
        best: dict[str, tuple[float, list[str]]] = {}
        for node in self.order:
            prior = max((best[p] for p in self.predecessors[node]), key=lambda x: x[0], default=(0.0, []))
            best[node] = (prior[0] + weight.get(node, 0.0), [*prior[1], node])
        return max(best.values(), key=lambda x: x[0], default=(0.0, []))
