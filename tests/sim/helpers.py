"""Helpers for the simulator tests: graph builders, and a discussion graph on sim/ models."""

from __future__ import annotations

from agentscale.sim.truth import SimGraph

DISCUSSION = (  # a CEO (llama-8b) steering two llama-3b solvers and their fuser for up to 3 rounds
    "name: discussion\nmodels: {s: {model: sim/llama-3b}, big: {model: sim/llama-8b}}\n"
    "coordinator: {model: big, max_rounds: 3}\nnodes:\n  - {id: s1, role: assistant, model: s}\n"
    "  - {id: s2, role: assistant, model: s}\n  - {id: fuse, role: fuser, model: s}\nedges: ['s1, s2 -> fuse']\n"
)


def chain(model: str, depth: int, role: str = "assistant") -> SimGraph:
    """One assistant followed by depth-1 refining nodes of `role`."""
    nodes: list[tuple[str, str | None]] = [("assistant", model)] + [(role, model)] * (depth - 1)
    return SimGraph.build(nodes, [(), *((i,) for i in range(depth - 1))])


def parallel(model: str, width: int, depth: int = 1, sink: str = "vote", role: str = "assistant") -> SimGraph:
    """`width` chains of `depth` nodes merged by a `sink` node (vote: no model)."""
    nodes: list[tuple[str, str | None]] = []
    preds: list[tuple[int, ...]] = []
    ends = []
    for _ in range(width):
        for level in range(depth):
            nodes.append(("assistant" if level == 0 else role, model))
            preds.append(() if level == 0 else (len(nodes) - 2,))
        ends.append(len(nodes) - 1)
    if width == 1 and sink == "vote":
        return SimGraph.build(nodes, preds)
    nodes.append((sink, None if sink == "vote" else model))
    preds.append(tuple(ends))
    return SimGraph.build(nodes, preds)
