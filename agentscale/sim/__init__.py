"""A simulated model population with known ground truth, for optimizer benchmarks and tests.

Graph search needs thousands of evaluations to compare optimizers fairly, and a landscape whose
optimum is known. This package provides both, calibrated to published single-model accuracies and
shaped to reproduce the Agent-REINFORCE insights (see docs/sim.md):

- `sim/<family>-<size>` routes (`sim/llama-1b` ... `sim/gemma-7b`) served in-process behind litellm
  (`provider`), so simulated calls go through the gateway's cache, retries, ledger and budgets;
- the generative model (`population`, `items`, `behavior`, `roofline`);
- sim tasks `sim:math`, `sim:mmlu`, `sim:humaneval` (`tasks`);
- exact expected accuracy of any graph without running it (`truth`, `evaluate`) and the exhaustive
  optimum of a small search space (`optimum`).

Every number it produces is *simulated*: it describes the simulated population, never a real model.

Attributes are imported lazily, so importing `agentscale.sim.provider` (the plug-in that registers
the `sim/` routes, `agentscale.plugins`) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "MODELS": "agentscale.sim.population",
    "SimModel": "agentscale.sim.population",
    "single_call_accuracy": "agentscale.sim.population",
    "load_sim_task": "agentscale.sim.tasks",
    "SimGraph": "agentscale.sim.truth",
    "TruthEngine": "agentscale.sim.truth",
    "Estimate": "agentscale.sim.truth",
    "SimGraphError": "agentscale.sim.truth",
    "SimOracle": "agentscale.sim.evaluate",
    "SimObservation": "agentscale.sim.evaluate",
    "expected_accuracy": "agentscale.sim.evaluate",
    "candidate_graph": "agentscale.sim.evaluate",
    "spec_graph": "agentscale.sim.evaluate",
    "engine_for": "agentscale.sim.evaluate",
    "Optimum": "agentscale.sim.optimum",
    "search_optimum": "agentscale.sim.optimum",
    "optimum_report": "agentscale.sim.optimum",
    "enumerate_candidates": "agentscale.sim.optimum",
    "respond": "agentscale.sim.provider",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentscale.sim' has no attribute {name!r}")
    return getattr(import_module(module), name)
