"""The generative model of one call: copies of an answer are not more evidence than the answer once.

A long search on the exact truth once found, as its best graph, one answer routed through two
one-input votes into a critic: free nodes whose copies bought the critic recognition and diluted its
lure. These tests keep that trick closed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from agentscale.sim import behavior
from agentscale.sim.behavior import ROLES, call_distribution
from agentscale.sim.items import ItemBank, bank, make_item
from agentscale.sim.population import sim_model, skill
from agentscale.sim.profiles import profile
from agentscale.sim.truth import SimGraph, TruthEngine

L1, L8, G7 = "sim/llama-1b", "sim/llama-8b", "sim/gemma-7b"


def test_without_a_majority_pull_one_answer_shown_twice_reads_like_it_shown_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recognition (contrast) and the lure count different answers; only the majority pull and the
    prompt length count the copies. With both switched off, [a, a] and [a, a, a] must read like [a]."""
    monkeypatch.setitem(ROLES, "probe", dataclasses.replace(ROLES["critic"], name="probe", conformity=0.0))
    monkeypatch.setattr(behavior, "CONTEXT_PENALTY", 0.0)
    monkeypatch.setattr(behavior, "CONFUSION", 0.0)
    items = bank("math", 0, size=60)
    model = sim_model(L1)
    m = profile("math").n_categories
    for answer in range(m):
        once = call_distribution(items, model, "probe", np.eye(m, dtype=np.int64)[answer][None])
        for copies in (2, 3):
            shown = call_distribution(items, model, "probe", copies * np.eye(m, dtype=np.int64)[answer][None])
            np.testing.assert_allclose(shown, once, atol=1e-12)


@pytest.mark.parametrize("task", ["math", "mmlu", "humaneval"])
def test_copying_an_answer_through_votes_buys_nothing(task: str, engines: dict[str, TruthEngine]) -> None:
    engine = engines[task]
    for model in (L8, G7):
        for role in ("critic", "fuser", "verifier"):
            chain = engine.accuracy(SimGraph.build([("assistant", model), (role, model)], [(), (0,)]))
            for copies in (2, 3):
                nodes = [("assistant", model), *[("vote", None)] * copies, (role, model)]
                preds = [(), *[(0,)] * copies, tuple(range(1, copies + 1))]
                copied = engine.accuracy(SimGraph.build(nodes, preds))
                assert copied <= chain + 1e-9, (task, model, role, copies, copied, chain)


# docs/sim.md, 'The generative model of a call': boost, recognition, trust, conformity
ROLE_TABLE = {
    "refine": (0.0, 0.3, 0.0, 1.0),
    "critic": (0.2, 0.6, 0.5, 0.5),
    "fuser": (0.1, 1.2, -0.3, 1.2),
    "verifier": (0.3, 1.2, 0.5, 0.3),
}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def documented(item, model: str, role: str, counts: tuple[int, ...]) -> list[float]:  # type: ignore[no-untyped-def]
    """The answer distribution of one call, as docs/sim.md describes it."""
    sim = sim_model(model)
    boost, recognition, trust, conformity = ROLE_TABLE[role]
    d, m = sum(counts), len(counts)
    n_distractors = m - 1
    prompt = item.prompt_tokens + d * item.completion_tokens
    doublings = max(0.0, math.log2(prompt / sim.context_comfort))
    theta = skill(sim.name, item.task) + boost - 0.55 * doublings
    shown = [a for a in range(m) if counts[a] > 0]
    k = len(shown)
    theta_own = theta + recognition * (k - 1) / k * (counts[0] > 0)
    right = _sigmoid(theta_own - item.difficulty)
    weights = item.family_weights[sim.family]
    own = [right] + [(1 - right) * w for w in weights]
    q = _sigmoid(theta - item.difficulty)
    blur = 1 + 0.5 * doublings
    result = [0.0] * m
    for o in range(m):
        utility = {}
        for a in shown:
            u = conformity * math.log(counts[a])
            if a == 0:
                u += 2.0 * q
            else:
                u += 3.0 / k * (1 - q) * (n_distractors * item.plausibility[a - 1] - 1)
            utility[a] = u + (trust if a == o else 0.0)
        if o not in utility and role != "verifier":  # its own view, shown by no input: only trust
            utility[o] = trust
        top = max(utility.values())
        exp = {a: math.exp((u - top) / blur) for a, u in utility.items()}
        total = sum(exp.values())
        for a, e in exp.items():
            result[a] += own[o] * e / total
    return result


def test_call_distribution_is_the_documented_formula() -> None:
    items = [make_item("math", 0, i) for i in (0, 7, 31)] + [make_item("mmlu", 0, i) for i in (2, 40)]
    for item in items:
        one = ItemBank.of([item])
        m = len(item.distractors) + 1
        vectors = [
            (1,) + (0,) * (m - 1),
            (0, 1) + (0,) * (m - 2),
            (1, 1) + (0,) * (m - 2),
            (2, 0, 1) + (0,) * (m - 3),
            (0, 2, 1) + (0,) * (m - 3),
            (1, 1, 1) + (0,) * (m - 3),
            (3, 3, 2) + (0,) * (m - 3),
        ]
        for model in ("llama-1b", "llama-8b", "gemma-2b"):
            for role in ROLE_TABLE:
                for counts in vectors:
                    got = call_distribution(one, sim_model(model), role, np.array([counts]))[0, 0]
                    np.testing.assert_allclose(
                        got,
                        documented(item, model, role, counts),
                        atol=1e-12,
                        err_msg=f"{item.tag} {model} {role} {counts}",
                    )


def test_a_lone_assistant_is_exactly_calibrated() -> None:
    """d = 0: right with probability σ(skill − b), no boost and no penalty."""
    for index in (0, 5, 99):
        item = make_item("humaneval", 0, index)
        for model in ("llama-3b", "gemma-7b"):
            got = call_distribution(
                ItemBank.of([item]), sim_model(model), "assistant", np.zeros((1, 4), dtype=np.int64)
            )[0, 0]
            right = _sigmoid(skill(model, "humaneval") - item.difficulty)
            weights = item.family_weights[sim_model(model).family]
            np.testing.assert_allclose(got, [right, *((1 - right) * np.array(weights))], atol=1e-12)
