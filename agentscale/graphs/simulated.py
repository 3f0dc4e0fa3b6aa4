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
    return is_simulated(spec_routes(spec))


def spec_routes(spec: GraphSpec) -> list[str | None]:
    """The routes a graph names: its aliases' and those written on its nodes (and their aliases)."""
    return [m.model for m in spec.models.values()] + [n.model for n in spec.nodes]


SIM_TASK_PREFIX = "sim:"


def sim_models_on_another_task(routes: Iterable[str | None], task: str) -> str | None:
    """What to say when simulated models are to answer a task that is no `sim:` task: they answer
    each question as a made-up MATH-like item (`sim.items.item_for_text`), so every answer is scored
    wrong, and a whole search ran to 0.0% everywhere without a word (a new user's walk)."""
    if not is_simulated(routes) or task.startswith(SIM_TASK_PREFIX):
        return None
    return (
        f"sim/ models answer only the sim: tasks' items (sim:math, sim:mmlu, sim:humaneval); on {task!r} "
        "each question gets a made-up item's answer, so expect every answer to be scored wrong"
    )
