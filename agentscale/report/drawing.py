"""What a graph drawing shows, independent of where the graph came from.

A graph file (:class:`GraphSpec`) and an optimizer's candidate (:class:`CandidateGraph`) are both
turned into one small :class:`GraphPicture` (nodes with role and model alias, edges, the output,
the coordinator), so `agentscale draw`, `runs show` and the HTML report draw them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.graphs.spec import GraphSpec
from agentscale.graphs.topology import Topology
from agentscale.optimize.candidate import CandidateGraph


@dataclass(frozen=True)
class PictureNode:
    id: str
    role: str
    model: str | None  # the alias (or route) the node names; None for model-free roles (vote, tester)
    route: str | None = None  # the litellm route behind the alias, shown as a tooltip


@dataclass(frozen=True)
class GraphPicture:
    name: str
    nodes: tuple[PictureNode, ...]
    edges: tuple[tuple[str, str], ...]
    output: str
    coordinator: str | None = None  # e.g. "CEO big · up to 3 rounds"

    @property
    def topology(self) -> Topology:
        return Topology.build([n.id for n in self.nodes], self.edges)


def picture_from_spec(spec: GraphSpec) -> GraphPicture:
    """A graph file as drawn: aliases as written, routes as tooltips."""
    edges = tuple(spec.edge_pairs())
    output = spec.output or Topology.build([n.id for n in spec.nodes], edges).sinks[0]
    nodes = tuple(
        PictureNode(
            n.id,
            n.role,
            n.model,
            spec.models[n.model].model if n.model is not None and n.model in spec.models else n.model,
        )
        for n in spec.nodes
    )
    coordinator = None
    if spec.coordinator is not None:
        coordinator = f"CEO {spec.coordinator.model} · up to {spec.coordinator.max_rounds} rounds"
        if spec.coordinator.evaluator is not None:
            coordinator += f" · evaluator {spec.coordinator.evaluator}"
    return GraphPicture(spec.name, nodes, edges, output, coordinator)


def picture_from_candidate(candidate: CandidateGraph, name: str = "candidate") -> GraphPicture:
    """An optimizer's candidate, with the node ids its runnable YAML would get (`best.yaml`)."""
    nodes = tuple(
        PictureNode(candidate.node_id(i), choice.role, choice.model) for i, choice in enumerate(candidate.nodes)
    )
    edges = tuple(
        (candidate.node_id(p), candidate.node_id(i)) for i in range(candidate.size) for p in candidate.predecessors[i]
    )
    coordinator = None
    if candidate.ceo is not None:
        coordinator = f"CEO {candidate.ceo.model} · up to {candidate.ceo.max_rounds} rounds"
    return GraphPicture(name, nodes, edges, candidate.node_id(candidate.output), coordinator)
