"""The simulated model population: who the `sim/<family>-<size>` models are and how skilled they are.

Each model has an architecture (for FLOPs and the roofline latency model) and, per sim task, one
*skill* number on the item-response (logit) scale. Skills are not free parameters: for the Llama
family they are solved so that one call's expected accuracy over the task's difficulty distribution
equals the single-model figure Agent-REINFORCE reports in its pilot data (MATH 31/40/49/68, MMLU
31/43/64/84, HumanEval 31/48/60/68 percent for 1B/3B/8B/70B). The Gemma family has no published
figure in that paper, so a Gemma model gets the skill a Llama model of its size would have
(interpolated in log-parameters) plus a per-task *family offset*: Gemma is better than its size on
MATH, slightly better on MMLU and worse on HumanEval. That makes tasks prefer different families and
sizes (Agent-REINFORCE insight 1) without inventing numbers that pass for measurements.

Parameter counts are the nominal sizes (1B, 3B, 8B, 70B ...), as in the paper's cost code, so the
paper's budgets (18, 42, 80 compute units) mean the same thing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from agentscale.models.registry import ModelInfo, register
from agentscale.sim.profiles import profile

ROUTE_PREFIX = "sim/"

# Single-call accuracy (fraction) per task, Agent-REINFORCE pilot data (Llama 3.x 1B/3B/8B/70B).
PUBLISHED_ACCURACY: dict[str, dict[str, float]] = {
    "math": {"llama-1b": 0.31, "llama-3b": 0.40, "llama-8b": 0.49, "llama-70b": 0.68},
    "mmlu": {"llama-1b": 0.31, "llama-3b": 0.43, "llama-8b": 0.64, "llama-70b": 0.84},
    "humaneval": {"llama-1b": 0.31, "llama-3b": 0.48, "llama-8b": 0.60, "llama-70b": 0.68},
}

# Skill offset (logit units) of a family relative to a Llama model of the same size, per task.
# Chosen, not measured: they exist to make the best family task-dependent (insight 1).
FAMILY_OFFSETS: dict[str, dict[str, float]] = {
    "llama": {"math": 0.0, "mmlu": 0.0, "humaneval": 0.0},
    "gemma": {"math": 0.6, "mmlu": 0.35, "humaneval": -0.8},
}


@dataclass(frozen=True)
class SimModel:
    """One simulated model: architecture (cost, latency) and how it copes with long prompts.

    `kv_dim` is the width of the key/value cache per layer (heads × head size after grouped-query
    attention), which sets the memory traffic of decoding. `context_comfort` is the prompt length
    (tokens) up to which the model reads several inputs without losing track; beyond it its skill
    drops per doubling (see `behavior.context_penalty`). It grows with size because larger models
    tolerate longer context (a hint the Agent-REINFORCE code gives its optimizer agent).
    """

    name: str
    family: str
    params_b: float
    n_layers: int
    d_model: int
    kv_dim: int
    gpus: int
    context_comfort: int
    context_length: int
    description: str

    @property
    def route(self) -> str:
        return ROUTE_PREFIX + self.name


MODELS: dict[str, SimModel] = {
    m.name: m
    for m in (
        SimModel("llama-1b", "llama", 1.0, 16, 2048, 512, 1, 700, 131072, "simulated Llama-3.2-1B"),
        SimModel("llama-3b", "llama", 3.0, 28, 3072, 1024, 1, 1100, 131072, "simulated Llama-3.2-3B"),
        SimModel("llama-8b", "llama", 8.0, 32, 4096, 1024, 1, 1900, 131072, "simulated Llama-3.1-8B"),
        SimModel("llama-70b", "llama", 70.0, 80, 8192, 1024, 2, 6000, 131072, "simulated Llama-3.1-70B"),
        SimModel("gemma-1b", "gemma", 1.0, 26, 1152, 256, 1, 600, 32768, "simulated Gemma-3-1B"),
        SimModel("gemma-2b", "gemma", 2.0, 18, 2048, 256, 1, 800, 8192, "simulated Gemma-2B"),
        SimModel("gemma-7b", "gemma", 7.0, 28, 3072, 4096, 1, 1500, 8192, "simulated Gemma-7B"),
    )
}
FAMILIES = ("llama", "gemma")


def sim_model(route_or_name: str) -> SimModel:
    """The model behind `sim/llama-1b` (or the bare name `llama-1b`); ValueError lists valid ones."""
    name = route_or_name[len(ROUTE_PREFIX) :] if route_or_name.startswith(ROUTE_PREFIX) else route_or_name
    try:
        return MODELS[name]
    except KeyError:
        valid = ", ".join(ROUTE_PREFIX + n for n in MODELS)
        raise ValueError(f"unknown simulated model {route_or_name!r}; valid: {valid}") from None


def register_models() -> None:
    """Add every sim route to the model registry (size, context length, zero price).

    Layers and width are deliberately left out: registration happens when this module is first
    imported, and FLOPs must not depend on import order. Without them the cost model estimates the
    shape from the size, which the registry would also read off the name (`llama-1b` -> 1B) before
    this module is imported; the difference to the paper's layer counts is ~0.2% of a call's FLOPs.
    The roofline latency model uses the full architecture above.
    """
    for model in MODELS.values():
        register(
            ModelInfo(
                model.route,
                params_b=model.params_b,
                context_length=model.context_length,
                input_per_mtok=0.0,
                output_per_mtok=0.0,
                description=model.description + " (agentscale simulator; accuracies are simulated)",
                hashes_prompt_into_samples=True,  # its draws hash the messages with the seed (provider.py)
            ),
            replace=False,  # a plug-in: facts the user registered for a sim route before it loaded stay
        )


register_models()


# ---------------------------------------------------------------------------------------------
# skills


@cache
def _quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite (probabilists') nodes and weights for expectations over a standard normal."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return nodes, weights / weights.sum()


def expected_solo_accuracy(skill: float, difficulty_sd: float) -> float:
    """E[sigmoid(skill - b)] for b ~ Normal(0, difficulty_sd): one call's accuracy over a task."""
    nodes, weights = _quadrature()
    return float(np.sum(weights / (1.0 + np.exp(-(skill - difficulty_sd * nodes)))))


def solve_skill(target: float, difficulty_sd: float) -> float:
    """The skill whose expected single-call accuracy is `target` (bisection; monotone in skill)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target accuracy must be in (0, 1), got {target}")
    low, high = -20.0, 20.0
    for _ in range(80):
        mid = (low + high) / 2
        if expected_solo_accuracy(mid, difficulty_sd) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@cache
def skill(model_name: str, task: str) -> float:
    """A model's skill on a sim task (logit scale; item difficulty is subtracted from it)."""
    model = sim_model(model_name)
    sd = profile(task).difficulty_sd
    llama = PUBLISHED_ACCURACY[task]
    if model.name in llama:
        return solve_skill(llama[model.name], sd)
    # The Llama size curve, piecewise linear in log10(params), extrapolated at the ends.
    sizes = sorted((MODELS[name].params_b, solve_skill(acc, sd)) for name, acc in llama.items())
    xs = [math.log10(size) for size, _ in sizes]
    ys = [value for _, value in sizes]
    x = math.log10(model.params_b)
    if x <= xs[0]:
        base = ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (x - xs[0])
    elif x >= xs[-1]:
        base = ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (x - xs[-1])
    else:
        base = float(np.interp(x, xs, ys))
    return base + FAMILY_OFFSETS[model.family][task]


def single_call_accuracy(model_name: str, task: str) -> float:
    """Expected accuracy of one assistant call over the task's difficulty distribution."""
    return expected_solo_accuracy(skill(model_name, task), profile(task).difficulty_sd)
