"""The simulated CEO and evaluator: real coordinator prompts in, parseable decisions out, and a
judgement that depends on the judge's skill (SIMULATED behaviour, not a real model's)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from agentscale import Graph
from agentscale.agents.coordinator import (
    Decision,
    Limits,
    ceo_messages,
    evaluator_messages,
    parse_decision,
    parse_verdict,
)
from agentscale.graphs.validate import load_spec_text
from agentscale.models.gateway import Gateway
from agentscale.sim.ceo import judge_kind, judge_reply
from agentscale.sim.items import make_item
from agentscale.sim.population import sim_model, skill
from agentscale.storage.db import Store

LIMITS = Limits(min_agents=1, max_agents=5, min_tokens=16, max_tokens=512)
CURRENT = Decision("continue", 3, "", 512, "initial")
ITEMS = [make_item("math", 0, index) for index in range(400)]


def _ceo(model: str, solution: str | None, feedback: str | None = None, item_index: int = 0) -> dict[str, object]:
    item = ITEMS[item_index]
    messages = ceo_messages(item.question, solution, feedback, "- rounds: 1 done of 3", CURRENT, LIMITS)
    assert judge_kind(messages[0]["content"]) == "ceo"
    return parse_decision(judge_reply("ceo", sim_model(model), messages).text).model_dump()


def _stop_rates(model: str) -> tuple[float, float]:
    """How often the CEO stops on the right answer, and on the item's first distractor."""
    right = sum(_ceo(model, str(item.answer), item_index=i)["decision"] == "stop" for i, item in enumerate(ITEMS))
    wrong = sum(
        _ceo(model, str(item.distractors[0]), item_index=i)["decision"] == "stop" for i, item in enumerate(ITEMS)
    )
    return right / len(ITEMS), wrong / len(ITEMS)


def test_the_ceo_writes_a_valid_decision_within_the_offered_range() -> None:
    for index in range(20):
        decision = _ceo("llama-8b", None, item_index=index)
        assert decision["decision"] == "continue"  # no solution yet: nothing to stop on
        assert isinstance(decision["agents"], int) and 1 <= decision["agents"] <= 5
        assert decision["max_tokens"] == 512  # keeps the current depth


def test_a_stronger_ceo_tells_right_from_wrong_better() -> None:
    strong_right, strong_wrong = _stop_rates("llama-70b")
    weak_right, weak_wrong = _stop_rates("llama-1b")
    assert strong_right > strong_wrong + 0.4
    assert weak_right > weak_wrong  # still better than chance
    assert strong_right - strong_wrong > (weak_right - weak_wrong) + 0.15


def test_the_ceo_mostly_follows_the_evaluator() -> None:
    item_answers = [(i, str(item.answer)) for i, item in enumerate(ITEMS[:200])]
    told_wrong = sum(
        _ceo("llama-1b", answer, "Evaluator: the solution is incorrect. Advice: recheck.", i)["decision"] == "stop"
        for i, answer in item_answers
    )
    told_right = sum(
        _ceo("llama-1b", answer, "Evaluator: the solution is correct. Advice: none.", i)["decision"] == "stop"
        for i, answer in item_answers
    )
    assert told_right > told_wrong + 100  # 0.7 of the draws follow the verdict


def test_the_evaluator_judges_with_its_skill() -> None:
    def verdicts(model: str, pick: int) -> float:
        correct = 0
        for item in ITEMS[:200]:
            solution = str(item.answer if pick == 0 else item.distractors[0])
            messages = evaluator_messages(item.question, solution)
            assert judge_kind(messages[0]["content"]) == "evaluator"
            verdict = parse_verdict(judge_reply("evaluator", sim_model(model), messages).text)
            assert verdict.correct is not None and verdict.advice
            correct += bool(verdict.correct)
        return correct / 200

    assert verdicts("llama-70b", 0) > 0.8 > verdicts("llama-70b", 1) + 0.5


GRAPH = """\
name: discussion
models: {w: {model: sim/llama-3b}, ceo: {model: sim/llama-70b}}
nodes:
  - {id: s1, role: assistant, model: w}
  - {id: s2, role: assistant, model: w}
  - {id: f, role: fuser, model: w}
edges: ["s1, s2 -> f"]
coordinator: {model: ceo, max_rounds: 3}
"""


def test_a_discussion_on_sim_models_is_steered_by_the_ceo(tmp_path: Path) -> None:
    graph = Graph(load_spec_text(GRAPH, "g.yaml"), gateway=Gateway(store=Store(tmp_path / "d.db")))

    async def run_all() -> list:  # type: ignore[type-arg]
        return [await graph.arun(item.question) for item in ITEMS[:12]]

    results = asyncio.run(run_all())
    decisions = [r.decision for result in results for r in result.rounds]
    assert decisions and all(d["source"] == "ceo" for d in decisions)  # never the fallback
    rounds_run = [sum(r.ran for r in result.rounds) for result in results]
    assert min(rounds_run) >= 1 and any(n < 3 for n in rounds_run)  # some runs stopped early
    assert any(result.rounds[-1].decision["decision"] == "stop" for result in results)


def _q(model: str, item) -> float:  # type: ignore[no-untyped-def]
    """docs/sim.md: the judge's competence q = σ(skill + 0.3 − b)."""
    return 1.0 / (1.0 + math.exp(-(skill(model, "math") + 0.3 - item.difficulty)))


def test_the_ceo_asks_for_more_agents_on_harder_items_and_keeps_the_current_max_tokens() -> None:
    current = Decision("continue", 2, "", 200, "initial")  # below the offered range's top (512)
    for item in ITEMS[:60]:
        messages = ceo_messages(item.question, None, None, "- rounds: 0 done of 3", current, LIMITS)
        decision = parse_decision(judge_reply("ceo", sim_model("llama-3b"), messages).text)
        assert decision.agents == 1 + round((1 - _q("llama-3b", item)) * 4), item.index
        assert decision.max_tokens == 200


def test_the_judges_verdicts_have_the_documented_rates() -> None:
    """A right solution is called right with probability q + (1 − q)/2, a wrong one with (1 − q)/2."""
    for model in ("llama-1b", "llama-70b"):
        for pick in (0, 1):
            said_right, expected = 0, 0.0
            for item in ITEMS:
                q = _q(model, item)
                solution = str(item.answer if pick == 0 else item.distractors[0])
                verdict = parse_verdict(
                    judge_reply("evaluator", sim_model(model), evaluator_messages(item.question, solution)).text
                )
                said_right += bool(verdict.correct)
                expected += q + (1 - q) / 2 if pick == 0 else (1 - q) / 2
            sd = math.sqrt(len(ITEMS) * 0.25)
            assert abs(said_right - expected) < 4 * sd, (model, pick, said_right, expected)


def test_the_ceo_follows_an_evaluators_verdict_seven_times_in_ten() -> None:
    """P(stop | told correct) − P(stop | told incorrect) = EVALUATOR_TRUST = 0.7 whatever its own view."""
    current = Decision("continue", 3, "", 512, "initial")
    stops = {}
    for verdict in ("correct", "incorrect"):
        feedback = f"Evaluator: the solution is {verdict}. Advice: none."
        stops[verdict] = sum(
            parse_decision(
                judge_reply(
                    "ceo",
                    sim_model("llama-3b"),
                    ceo_messages(item.question, str(item.answer), feedback, "- rounds: 1 done of 3", current, LIMITS),
                ).text
            ).decision
            == "stop"
            for item in ITEMS
        )
    assert (stops["correct"] - stops["incorrect"]) / len(ITEMS) == pytest.approx(0.7, abs=0.08)
