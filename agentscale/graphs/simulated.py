"""Whether a graph's models are the simulated population: any `sim/` route.

The simulated population serves optimizer benchmarks and tests; its accuracies say how a search
behaves, never how a real model answers, so whatever shows or writes its figures says so (reports,
tables, JSON, the graph files an optimization writes, a served graph's replies). Here, below every
layer that does, so each can ask.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentscale.graphs.spec import GraphSpec

SIM_PREFIX = "sim/"


def is_simulated(routes: Iterable[str | None]) -> bool:
    return any(route is not None and route.startswith(SIM_PREFIX) for route in routes)


def spec_is_simulated(spec: GraphSpec) -> bool:
    """A graph whose models (aliases' routes, or routes named on nodes) include a sim/ route."""
    return is_simulated([m.model for m in spec.models.values()] + [n.model for n in spec.nodes])
