"""Route checks that need the models layer: a ``local/`` route must name something agentscale can serve.

Kept apart from :mod:`agentscale.graphs.validate`, whose rules need nothing beyond the file itself, so
that generated specs are validated without touching the disk.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentscale.errors import SpecIssue
from agentscale.graphs.located import LocatedData, PathPart
from agentscale.graphs.spec import GraphSpec, ModelSpec
from agentscale.models.local_names import local_route_problem


def model_route_issues(models: Mapping[str, ModelSpec], located: LocatedData | None = None) -> list[SpecIssue]:
    """Problems with the routes of a file's `models:` aliases (graph or search space)."""
    loc = located or LocatedData(None, {})
    issues = []
    for alias, spec in models.items():
        problem = local_route_problem(spec.model)
        if problem:
            issues.append(loc.issue(("models", alias, "model"), problem))
    return issues


def route_issues(spec: GraphSpec, located: LocatedData | None = None) -> list[SpecIssue]:
    """Problems with every route a graph names: its aliases, nodes and coordinator given a route."""
    loc = located or LocatedData(None, {})
    issues = model_route_issues(spec.models, located)
    direct: list[tuple[tuple[PathPart, ...], str]] = [
        (("nodes", index, "model"), node.model)
        for index, node in enumerate(spec.nodes)
        if node.model is not None and node.model not in spec.models
    ]
    if spec.coordinator is not None:
        direct.append((("coordinator", "model"), spec.coordinator.model))
        if spec.coordinator.evaluator is not None:
            direct.append((("coordinator", "evaluator"), spec.coordinator.evaluator))
    for path, route in direct:
        problem = route not in spec.models and local_route_problem(route)
        if problem:
            issues.append(loc.issue(path, problem))
    return issues
