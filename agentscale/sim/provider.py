"""The simulated models as a litellm custom provider, so `sim/` calls take the real path.

Importing this module registers the `sim/` routes: their sizes and prices in the model registry
(`population`) and :func:`resolve_endpoint` with the gateway, which registers the provider with
litellm on the first call and routes each call to `agentscale-sim/<name>`. The
call then goes through litellm and the gateway like any other: response cache, retries, the spend
ledger and per-question budgets all see it. Nothing sleeps: the response carries the roofline
latency in `_hidden_params["agentscale_latency_s"]`, which the gateway records instead of the wall
clock, and the modelled token counts as its usage.

A call's answer is sampled from `behavior.call_distribution` with a uniform number that hashes the
route, the messages, the sampling parameters and the request seed (the gateway sends the sample
index as seed when temperature > 0). So a request always gets the same answer, identical sampled
nodes of one run get independent answers, and at temperature 0 (no seed) a call returns the most
likely answer (greedy decoding).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentscale.errors import ModelCallError
from agentscale.models.endpoints import Endpoint, register_endpoint_resolver
from agentscale.models.litellm_loader import get_litellm
from agentscale.models.registry import ResolvedModel
from agentscale.models.routes import register_route_check
from agentscale.sim.behavior import ROLES, call_distribution
from agentscale.sim.ceo import judge_kind, judge_reply
from agentscale.sim.items import ItemBank
from agentscale.sim.parse import SimRequest, read_request
from agentscale.sim.population import ROUTE_PREFIX, SimModel, sim_model
from agentscale.sim.profiles import profile
from agentscale.sim.roofline import call_latency
from agentscale.sim.seeding import unit_uniform

PROVIDER = "agentscale-sim"
_DEFAULT_TEMPERATURE = 0.7  # litellm passes no temperature when the caller gave none


@dataclass(frozen=True)
class SimReply:
    """One simulated completion with its modelled usage and latency."""

    text: str
    answer: int | None  # None for CEO and evaluator replies (they judge, they do not answer)
    category: int | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


def answer_distribution(request: SimRequest, model: SimModel) -> np.ndarray:
    """[M] probabilities of each answer category for this call (the simulator's whole model)."""
    m = profile(request.item.task).n_categories
    counts = np.zeros((1, m), dtype=np.int64)
    for category in request.categories:
        if category is not None:
            counts[0, category] += 1
    # Inputs the simulator does not recognise (not an answer to this item) are ignored.
    behaviour = request.behaviour if counts.sum() > 0 else "assistant"
    return np.asarray(call_distribution(ItemBank.of([request.item]), model, behaviour, counts)[0, 0])


def _sample(probabilities: np.ndarray, uniform: float | None) -> int:
    if uniform is None:  # greedy decoding: the most likely answer
        return int(np.argmax(probabilities))
    cumulative = np.cumsum(probabilities)
    return int(min(np.searchsorted(cumulative, uniform * cumulative[-1], side="right"), len(probabilities) - 1))


def respond(name: str, messages: list[dict[str, str]], params: Mapping[str, Any] | None = None) -> SimReply:
    """The simulated reply of model `name` (e.g. `llama-1b`) to a chat request.

    `params` are the sampling parameters litellm passes on (temperature, max_tokens, top_p, seed).
    """
    params = dict(params or {})
    model = sim_model(name)
    system = "\n".join(str(m.get("content") or "") for m in messages if m.get("role") == "system")
    kind = judge_kind(system)
    if kind is not None:  # the CEO coordinator or its evaluator: a JSON decision or verdict
        judged = judge_reply(kind, model, messages)
        latency = float(call_latency(model, judged.prompt_tokens, judged.completion_tokens))
        return SimReply(judged.text, None, None, judged.prompt_tokens, judged.completion_tokens, latency)
    request = read_request(messages)
    item = request.item
    temperature = params.get("temperature")
    temperature = _DEFAULT_TEMPERATURE if temperature is None else float(temperature)
    uniform = None
    if temperature > 0:
        key = json.dumps(
            {k: params.get(k) for k in ("temperature", "max_tokens", "top_p", "seed")}, sort_keys=True, default=str
        )
        uniform = unit_uniform("call", item.seed, model.name, json.dumps(messages, sort_keys=True), key)
    probabilities = answer_distribution(request, model)
    category = _sample(probabilities, uniform)
    answer = item.value(category)
    behaviour = ROLES[request.behaviour]
    prompt_tokens = item.prompt_tokens + len(request.answers) * item.completion_tokens
    completion_tokens = max(1, round(item.completion_tokens * behaviour.length_factor))
    text = _render(request, category, answer)
    latency = float(call_latency(model, prompt_tokens, completion_tokens))
    return SimReply(text, answer, category, prompt_tokens, completion_tokens, latency)


def _render(request: SimRequest, category: int, answer: int) -> str:
    """Completion text: a digit-free first line, then the answer in the form the extractors expect."""
    if request.behaviour == "verifier":
        lines = ["Simulated verification: each candidate was checked."]
        for number, (shown, seen) in enumerate(zip(request.answers, request.categories, strict=True), start=1):
            if seen == category:
                score = 9
            elif seen is None:
                score = 0
            else:
                score = 1 + int(unit_uniform("score", request.item.tag, shown, number) * 6)
            lines.append(f"Candidate {number}: {score}")
        return "\n".join(lines)
    what = {
        "assistant": "Simulated reasoning: worked through the problem.",
        "refine": "Simulated reasoning: solved it again, taking the other answers into account.",
        "critic": "Simulated review: checked the proposed answers, then solved it.",
        "fuser": "Simulated fusion: compared the candidate answers and kept the best supported one.",
    }[request.behaviour]
    return f"{what}\nFinal answer: {answer}"


# ---------------------------------------------------------------------------------------------
# litellm glue


def _base() -> type:
    from litellm.llms.custom_llm import CustomLLM

    return CustomLLM


def _fill(model: str, messages: list[dict[str, str]], params: Mapping[str, Any], response: Any) -> Any:
    litellm = get_litellm()
    reply = respond(model.rsplit("/", 1)[-1], messages, params)
    response.choices[0].message.content = reply.text
    response.choices[0].finish_reason = "stop"
    response.model = "sim/" + model.rsplit("/", 1)[-1]
    response.usage = litellm.Usage(
        prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens,
        total_tokens=reply.prompt_tokens + reply.completion_tokens,
    )
    response._hidden_params["agentscale_latency_s"] = reply.latency_s
    response._hidden_params["agentscale_simulated"] = True
    return response


_HANDLER: Any = None


def _handler() -> Any:
    """The provider instance (its class derives from litellm's CustomLLM, imported lazily)."""
    global _HANDLER
    if _HANDLER is None:

        class SimProvider(_base()):  # type: ignore[misc]
            """litellm custom provider serving the simulated population in-process."""

            def completion(self, *args: Any, **kwargs: Any) -> Any:
                return _fill(
                    kwargs["model"], kwargs["messages"], kwargs.get("optional_params") or {}, kwargs["model_response"]
                )

            def acompletion(self, *args: Any, **kwargs: Any) -> Any:
                """Not a coroutine: litellm calls it in a worker thread and awaits what it returns only
                when that is a coroutine, so a cancel while the thread ran left one never awaited (a
                RuntimeWarning on every interrupted run); the filled response is returned as it is."""
                return _fill(
                    kwargs["model"], kwargs["messages"], kwargs.get("optional_params") or {}, kwargs["model_response"]
                )

        _HANDLER = SimProvider()
    return _HANDLER


def register_provider() -> None:
    """Add the provider to `litellm.custom_provider_map` (once per process)."""
    litellm = get_litellm()
    if any(entry.get("provider") == PROVIDER for entry in litellm.custom_provider_map):
        return
    litellm.custom_provider_map = [*litellm.custom_provider_map, {"provider": PROVIDER, "custom_handler": _handler()}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()


async def resolve_endpoint(model: ResolvedModel) -> Endpoint:
    """Gateway hook for `sim/` routes: register the provider and name the litellm model."""
    try:
        sim = sim_model(model.route)
    except ValueError as exc:
        raise ModelCallError(str(exc), endpoint=model.route) from None
    register_provider()
    return Endpoint(litellm_model=f"{PROVIDER}/{sim.name}")


def route_problem(route: str) -> str | None:
    """A `sim/` route that names no simulated model (checked when a graph or space is loaded)."""
    try:
        sim_model(route)
    except ValueError as exc:
        return str(exc)
    return None


register_endpoint_resolver(ROUTE_PREFIX, resolve_endpoint, replace=False)
register_route_check(ROUTE_PREFIX, route_problem, replace=False)
