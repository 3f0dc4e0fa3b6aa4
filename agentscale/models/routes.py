"""Route checks that need the models layer: a ``local/`` route must name something agentscale can serve,
a route whose prefix a plug-in serves (``sim/``) one of the routes it knows (`register_route_check`),
and any other route a provider litellm knows (`providers`).

Kept apart from :mod:`agentscale.graphs.validate`, whose rules need nothing beyond the file itself, so
that generated specs are validated without touching the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from agentscale.errors import SpecError, SpecIssue
from agentscale.graphs.located import LocatedData, PathPart
from agentscale.graphs.spec import GraphSpec, ModelSpec
from agentscale.graphs.validate import spec_from_data
from agentscale.models.endpoints import has_resolver
from agentscale.models.local_names import local_route_problem
from agentscale.models.providers import provider_problem
from agentscale.plugins import load_plugins

RouteCheck = Callable[[str], str | None]  # a route's problem, or None
_CHECKS: dict[str, RouteCheck] = {"local/": local_route_problem}  # plug-ins add theirs (`sim/`)


def register_route_check(prefix: str, check: RouteCheck, *, replace: bool = True) -> None:
    """Check routes starting with `prefix` when a file is loaded (`sim/`: a simulated model that does
    not exist failed every call of a run that then reported 0% and exited 0); `replace=False`
    (plug-ins) keeps a check registered before."""
    if replace or prefix not in _CHECKS:
        _CHECKS[prefix] = check


def answered_in_process(route: str) -> bool:
    """Whether a plug-in answers `route` inside agentscale (`sim/`): no server serves it."""
    load_plugins()
    return any(route.startswith(prefix) for prefix in _CHECKS if prefix != "local/")


def route_problem(route: str, api_base: str | tuple[str, ...] | None = None) -> str | None:
    """What is wrong with a route (None: nothing known): one agentscale serves itself or through a
    plug-in is checked by them; any other must name a provider litellm knows (`providers`). Spaces
    around a route, a prefix of ours in other letters (`SIM/llama-8b`) or a misspelt provider each
    failed every call as "LLM Provider NOT provided"."""
    if route != route.strip():
        return f"route {route!r} has spaces around it"
    load_plugins()
    check = next((check for prefix, check in _CHECKS.items() if route.startswith(prefix)), None)
    if check is not None:
        return check(route)
    near = next((prefix for prefix in _CHECKS if route.lower().startswith(prefix)), None)
    if near:
        return f"unknown route {route!r}: did you mean {near}{route[len(near) :]}?"
    if has_resolver(route):
        return None
    return provider_problem(route, api_base[0] if isinstance(api_base, tuple) else api_base)


def model_route_issues(models: Mapping[str, ModelSpec], located: LocatedData | None = None) -> list[SpecIssue]:
    """Problems with the routes of a file's `models:` aliases (graph or search space)."""
    loc = located or LocatedData(None, {})
    issues = []
    for alias, spec in models.items():
        problem = route_problem(spec.model, spec.api_base)
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
        problem = route not in spec.models and route_problem(route)
        if problem:
            issues.append(loc.issue(path, problem))
    return issues


def checked_spec(located: LocatedData, source: str | None = None) -> GraphSpec:
    """A graph file's spec with its model routes checked too, each problem placed at its line (the
    graph rules alone cannot check routes: the models layer sits above them)."""
    spec = spec_from_data(located, source)
    issues = route_issues(spec, located)
    if issues:
        raise SpecError(issues, source)
    return spec
