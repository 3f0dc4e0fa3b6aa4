"""The cost model: FLOPs, USD and the optimizer's `compute` unit for one call.

FLOPs follow the Agent-REINFORCE formula, a dense-transformer count with the attention term
(P parameters, L layers, D model width, Np prompt and Nd completion tokens):

    prefill = 2·P·Np + 2·L·D·Np·(Np + 1)
    decode  = 2·P·Nd + 2·L·D·Nd·(2·Np + Nd + 1)

When L and D are unknown they are estimated from P with a typical aspect ratio (D ≈ 128·L, so
P ≈ 12·L·D² gives D = (32·P/3)^(1/3)). `compute` divides by one call of a 1B model (Llama-3.2-1B:
L = 16, D = 2048) on the task's mean prompt and completion lengths, so `compute: 18` reads
"eighteen 1B-calls' worth".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache

from agentscale.models.litellm_loader import get_litellm
from agentscale.models.registry import ResolvedModel

REFERENCE_PARAMS_B = 1.0
REFERENCE_LAYERS = 16
REFERENCE_D_MODEL = 2048


def known_total(values: Iterable[float | None]) -> float | None:
    """The sum, or None when any value is unknown: a USD or FLOPs total is never a partial sum."""
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _shape(params_b: float, n_layers: int | None, d_model: int | None) -> tuple[float, float]:
    params = params_b * 1e9
    if n_layers and d_model:
        return float(n_layers), float(d_model)
    width = float(d_model) if d_model else (32.0 * params / 3.0) ** (1.0 / 3.0)
    layers = float(n_layers) if n_layers else max(1.0, params / (12.0 * width * width))
    return layers, width


def call_flops(
    params_b: float,
    prompt_tokens: int,
    completion_tokens: int,
    *,
    n_layers: int | None = None,
    d_model: int | None = None,
) -> float:
    """FLOPs of one call (prefill + decode), see the module docstring."""
    params = params_b * 1e9
    layers, width = _shape(params_b, n_layers, d_model)
    np_, nd = float(prompt_tokens), float(completion_tokens)
    prefill = 2 * params * np_ + 2 * layers * width * np_ * (np_ + 1)
    decode = 2 * params * nd + 2 * layers * width * nd * (2 * np_ + nd + 1)
    return prefill + decode


def model_flops(model: ResolvedModel, prompt_tokens: int, completion_tokens: int) -> float | None:
    """FLOPs of a call to `model`, or None when its size is unknown."""
    if model.params_b is None:
        return None
    return call_flops(model.params_b, prompt_tokens, completion_tokens, n_layers=model.n_layers, d_model=model.d_model)


def compute_unit(mean_prompt_tokens: float, mean_completion_tokens: float) -> float:
    """FLOPs of the reference 1B call on a task's mean lengths: the `compute` budget unit."""
    return call_flops(
        REFERENCE_PARAMS_B,
        round(mean_prompt_tokens),
        round(mean_completion_tokens),
        n_layers=REFERENCE_LAYERS,
        d_model=REFERENCE_D_MODEL,
    )


@cache
def _litellm_price(route: str) -> tuple[float, float] | None:
    """USD per token (input, output) from litellm's price map, looked up once per route."""
    litellm = get_litellm()
    try:
        prompt_cost, completion_cost = litellm.cost_per_token(model=route, prompt_tokens=1, completion_tokens=0)
        _, completion_cost = litellm.cost_per_token(model=route, prompt_tokens=0, completion_tokens=1)
    except Exception:  # litellm raises assorted errors for unmapped models
        return None
    return float(prompt_cost), float(completion_cost)


def call_usd(model: ResolvedModel, prompt_tokens: int, completion_tokens: int) -> float | None:
    """USD of a call: the graph's price override, else the registry, else litellm's price map.

    Returns None when the price is unknown, so reports say "unknown" instead of a false 0.
    """
    if model.input_per_mtok is not None and model.output_per_mtok is not None:
        return (model.input_per_mtok * prompt_tokens + model.output_per_mtok * completion_tokens) / 1e6
    per_token = _litellm_price(model.route)
    if per_token is None:
        return None
    return per_token[0] * prompt_tokens + per_token[1] * completion_tokens


def price_is_known(model: ResolvedModel) -> bool:
    return call_usd(model, 1000, 1000) is not None


def estimate_prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A deliberately generous token estimate (3 characters a token) for budget projections."""
    chars = sum(len(message.get("content") or "") for message in messages)
    return chars // 3 + 8 * len(messages)


def usd_text(value: float) -> str:
    """Dollars as people read them: four decimals, or two significant digits below a hundredth of a
    cent ($0.000048), which four decimals showed as $0.0000, free."""
    if value == 0 or abs(value) >= 0.0001:
        return f"${value:,.4f}"
    digits = 1 - math.floor(math.log10(abs(value)))
    return f"${value:.{digits}f}"
