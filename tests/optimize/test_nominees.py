"""Agent-REINFORCE nominates for the crown only the pilot graphs of models still in the singles' race."""

from __future__ import annotations

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import resolve_models
from agentscale.optimize.methods.agent_reinforce import AgentReinforce
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import single
from agentscale.optimize.problem import SearchProblem

MODELS = resolve_models(
    {
        "big": ModelSpec(model="sim/llama-8b", params_b=8.0),
        "mid": ModelSpec(model="sim/llama-3b", params_b=3.0),
        "small": ModelSpec(model="sim/llama-1b", params_b=1.0),
    }
)


def _single(alias: str, accuracy: float, n_items: int) -> Observation:
    return Observation(single(alias), accuracy, 1.0, 1.0, n_items, reward=accuracy)


def _pilot_models(method: AgentReinforce, singles: list[Observation]) -> list[set[str]]:
    method.learn_from_singles(singles)
    method.propose(3)  # the pilot: each of the three models' self-consistency
    return [{n.model for n in c.nodes if n.model} for c in method.nominees()]


def test_a_model_the_singles_race_dropped_is_not_nominated() -> None:
    problem = SearchProblem(MODELS, ("assistant", "vote"), 8, 40.0, 202.0, 275.0)
    race = [_single("big", 0.6, 64), _single("mid", 0.5, 64), _single("small", 0.1, 16)]
    assert _pilot_models(AgentReinforce(problem), race) == [{"big"}, {"mid"}]


def test_every_pilot_graph_is_nominated_when_every_single_finished() -> None:
    problem = SearchProblem(MODELS, ("assistant", "vote"), 8, 40.0, 202.0, 275.0)
    race = [_single("big", 0.6, 64), _single("mid", 0.5, 64), _single("small", 0.1, 64)]
    assert _pilot_models(AgentReinforce(problem), race) == [{"big"}, {"mid"}, {"small"}]
