"""What agentscale knows about a model route: size (for FLOPs), context length and price.

A graph's `models:` entry overrides the registry; the registry fills what the entry leaves out.
The bundled local models are registered here; other routes (the simulated population, a plug-in
imported on the first lookup: `agentscale.plugins`) add themselves with :func:`register`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from agentscale.graphs.spec import AnswerStyle, ModelSpec
from agentscale.models.catalog import BUNDLED
from agentscale.plugins import load_plugins


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a route. Prices are USD per million tokens; None means unknown."""

    route: str
    params_b: float | None = None
    n_layers: int | None = None
    d_model: int | None = None
    context_length: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    description: str = ""
    answer_style: AnswerStyle | None = None  # None: by family, from the route's name
    # its provider draws each sample from a hash of the prompt and the seed (the simulator), so the
    # sample index alone may be its seed; a server such as vLLM seeds one random stream with it,
    # the same stream for every prompt
    hashes_prompt_into_samples: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo, *, replace: bool = True) -> None:
    """Add a route's facts; `replace=False` (plug-ins) keeps an entry registered before."""
    if replace or info.route not in _REGISTRY:
        _REGISTRY[info.route] = info


def registered() -> list[ModelInfo]:
    load_plugins()
    return sorted(_REGISTRY.values(), key=lambda info: info.route)


for _bundled in BUNDLED.values():
    register(
        ModelInfo(
            _bundled.route,
            params_b=_bundled.params_b,
            n_layers=_bundled.n_layers,
            d_model=_bundled.d_model,
            context_length=_bundled.context_length,
            input_per_mtok=0.0,
            output_per_mtok=0.0,
            description=_bundled.description,
            answer_style=_bundled.answer_style,
        )
    )

_SIZE_IN_NAME = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def params_from_name(route: str) -> float | None:
    """Parameter count in billions read off names like 'Qwen2.5-7B-Instruct' or 'smollm2-135m'."""
    name = route.rsplit("/", 1)[-1]
    matches = _SIZE_IN_NAME.findall(name.replace("_", "-"))
    if not matches:
        return None
    number, unit = matches[-1]
    value = float(number)
    return value / 1000.0 if unit.lower() == "m" else value


# Families trained to put their final answer in \\boxed{} (their own prompts ask for it).
_BOXED_FAMILIES = re.compile(r"qwen|deepseek-r1|qwq", re.IGNORECASE)


def family_answer_style(route: str) -> AnswerStyle:
    """The answer convention of a route's model family, read off its name."""
    return "boxed" if _BOXED_FAMILIES.search(route.rsplit("/", 1)[-1]) else "final_line"


def lookup(route: str) -> ModelInfo:
    """Registry entry for a route, or one with the size guessed from the name."""
    load_plugins()
    if route in _REGISTRY:
        return _REGISTRY[route]
    return ModelInfo(route, params_b=params_from_name(route))


@dataclass(frozen=True)
class ResolvedModel:
    """A node's model with every fact the gateway and the cost model need."""

    name: str  # alias or route, as written in the graph
    route: str
    api_base: str | tuple[str, ...] | None = None  # a tuple: replicas behind one route
    api_key_env: str | None = None
    params_b: float | None = None
    n_layers: int | None = None
    d_model: int | None = None
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    max_concurrency: int | None = None
    answer_style: AnswerStyle = "final_line"
    hashes_prompt_into_samples: bool = False  # `ModelInfo`'s: which seed its sampled calls get

    @property
    def endpoint(self) -> str:
        if isinstance(self.api_base, tuple):
            return ", ".join(self.api_base)
        return self.api_base or self.route.split("/", 1)[0]

    @property
    def endpoint_count(self) -> int:
        """How many endpoints serve the route (the gateway's concurrency limit applies to each)."""
        return len(self.api_base) if isinstance(self.api_base, tuple) else 1


def resolve(name: str, spec: ModelSpec | None) -> ResolvedModel:
    """Merge a graph's alias entry (if any) over the registry entry of its route."""
    route = spec.model if spec is not None else name
    info = lookup(route)
    resolved = ResolvedModel(
        name=name,
        route=route,
        params_b=info.params_b,
        n_layers=info.n_layers,
        d_model=info.d_model,
        input_per_mtok=info.input_per_mtok,
        output_per_mtok=info.output_per_mtok,
        answer_style=info.answer_style or family_answer_style(route),
        hashes_prompt_into_samples=info.hashes_prompt_into_samples,
    )
    if spec is None:
        return resolved
    return replace(
        resolved,
        api_base=spec.api_base,
        api_key_env=spec.api_key_env,
        params_b=spec.params_b or resolved.params_b,
        n_layers=spec.n_layers or resolved.n_layers,
        d_model=spec.d_model or resolved.d_model,
        input_per_mtok=spec.price.input_per_mtok if spec.price else resolved.input_per_mtok,
        output_per_mtok=spec.price.output_per_mtok if spec.price else resolved.output_per_mtok,
        max_concurrency=spec.max_concurrency,
        answer_style=spec.answer_style or resolved.answer_style,
    )
