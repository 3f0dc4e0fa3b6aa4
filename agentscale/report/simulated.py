"""Whether a run's figures are SIMULATED: any of its models is a `sim/` route.

The simulated population serves optimizer benchmarks and tests; its accuracies say how a search
behaves, never how a real model answers, so every view of such a run says so where it shows them.
"""

from __future__ import annotations

import json

from agentscale.graphs.simulated import is_simulated, spec_is_simulated
from agentscale.graphs.validate import load_spec_text
from agentscale.optimize.space import stored_space
from agentscale.storage.tables import Run


def simulated_label(figure: str, simulated: bool) -> str:
    """A figure's label, `SIMULATED <figure>` for a run of simulated models (every view says it the same way)."""
    return f"SIMULATED {figure}" if simulated else figure


def run_is_simulated(run: Run) -> bool:
    """From what the run stored: its search space's models, its graph's, or a handbook build's model."""
    if run.kind == "optimize":
        return is_simulated(m.model for m in stored_space(run).models.values())
    if run.kind == "handbook":
        return is_simulated([json.loads(run.config_json).get("model")])
    if run.graph_yaml:
        return spec_is_simulated(load_spec_text(run.graph_yaml, f"run {run.id}", stored=True))
    return False
