"""Agent-REINFORCE nominates for the crown only the pilot graphs of models still in the singles' race."""

from __future__ import annotations

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import resolve_models
from agentscale.optimize.methods.agent_reinforce import AgentReinforce
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import single
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.race import RaceOutcome

MODELS = resolve_models(
    {
        "big": ModelSpec(model="sim/llama-8b", params_b=8.0),
        "mid": ModelSpec(model="sim/llama-3b", params_b=3.0),
        "small": ModelSpec(model="sim/llama-1b", params_b=1.0),
    }
)


def _single(alias: str, accuracy: float, n_items: int) -> Observation:
    return Observation(single(alias), accuracy, 1.0, 1.0, n_items, reward=accuracy)


def _pilot_models(method: AgentReinforce, singles: RaceOutcome) -> list[set[str]]:
    method.learn_from_singles(singles)
    method.propose(3)  # the pilot: each of the three models' self-consistency
    return [{n.model for n in c.nodes if n.model} for c in method.nominees()]


def test_a_model_the_singles_race_dropped_is_not_nominated() -> None:
    problem = SearchProblem(MODELS, ("assistant", "vote"), 8, 40.0, 202.0, 275.0)
    race = RaceOutcome([_single("big", 0.6, 64), _single("mid", 0.5, 64)], [_single("small", 0.1, 16)], capped=False)
    assert _pilot_models(AgentReinforce(problem), race) == [{"big"}, {"mid"}]


def test_every_pilot_graph_is_nominated_when_every_single_finished() -> None:
    problem = SearchProblem(MODELS, ("assistant", "vote"), 8, 40.0, 202.0, 275.0)
    race = RaceOutcome([_single("big", 0.6, 64), _single("mid", 0.5, 64), _single("small", 0.1, 64)], [], capped=False)
    assert _pilot_models(AgentReinforce(problem), race) == [{"big"}, {"mid"}, {"small"}]


def test_a_model_the_spend_cap_stopped_a_step_short_is_still_a_finalist() -> None:
    """The cap reached the last step with two models answered: the third, waiting on 48 items, was
    never dropped by the race, so its self-consistency is nominated like theirs."""
    problem = SearchProblem(MODELS, ("assistant", "vote"), 8, 40.0, 202.0, 275.0)
    race = RaceOutcome([_single("big", 0.6, 64), _single("mid", 0.5, 64), _single("small", 0.4, 48)], [], capped=True)
    assert _pilot_models(AgentReinforce(problem), race) == [{"big"}, {"mid"}, {"small"}]
