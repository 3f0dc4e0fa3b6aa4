"""Which graphs are simulated (`graphs/simulated.py`): their figures are labelled SIMULATED everywhere."""

from __future__ import annotations

from agentscale.graphs.simulated import spec_is_simulated
from agentscale.graphs.validate import load_spec_text


def test_a_sim_route_named_on_a_node_makes_the_graph_simulated() -> None:
    """Its figures must be labelled simulated whether the route is an alias's or written on the node."""
    direct = load_spec_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    aliased = load_spec_text(
        "name: g\nmodels:\n  m: {model: sim/llama-1b}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    real = load_spec_text("name: g\nnodes:\n  - {id: a, role: assistant, model: openai/gpt-4o-mini}\n")
    assert (spec_is_simulated(direct), spec_is_simulated(aliased), spec_is_simulated(real)) == (True, True, False)
