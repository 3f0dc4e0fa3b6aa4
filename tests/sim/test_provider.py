"""The simulated provider: determinism, sampling, role recognition, and the gateway path (cache,
modelled usage and latency, errors)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agentscale import Gateway, GatewaySettings, Graph, SpecError, Store
from agentscale.agents.roles import Candidate, builtin_roles, pick_verified
from agentscale.sim.items import make_item
from agentscale.sim.parse import read_request
from agentscale.sim.population import sim_model
from agentscale.sim.provider import answer_distribution, respond
from agentscale.sim.roofline import call_latency
from agentscale.sim.tasks import load_sim_task

ROLES = builtin_roles()
CHAIN = """
name: chain
models: {small: {model: sim/llama-1b}, gem: {model: sim/gemma-1b}}
nodes:
  - {id: a, role: assistant, model: small}
  - {id: b, role: critic, model: gem}
  - {id: out, role: fuser, model: small}
edges: [a -> b -> out]
answer_format: number
"""


def _ask(question: str, role: str = "assistant", inputs: tuple[str, ...] = ()) -> list[dict[str, str]]:
    candidates = [Candidate(f"n{i}", answer) for i, answer in enumerate(inputs)]
    return ROLES[role].messages(question, candidates, "number")


def test_same_request_same_reply_and_seeds_give_independent_samples() -> None:
    items = load_sim_task("math", size=300).items
    first = [respond("llama-3b", _ask(i.question), {"temperature": 0.7, "seed": 0}) for i in items]
    again = [respond("llama-3b", _ask(i.question), {"temperature": 0.7, "seed": 0}) for i in items]
    other = [respond("llama-3b", _ask(i.question), {"temperature": 0.7, "seed": 1}) for i in items]
    assert first == again
    changed = sum(a.answer != b.answer for a, b in zip(first, other, strict=True))
    assert 0.2 * len(items) < changed < 0.8 * len(items)
    right = [sum(str(r.answer) == i.reference for r, i in zip(rs, items, strict=True)) for rs in (first, other)]
    assert abs(right[0] - right[1]) < 0.1 * len(items)


def test_temperature_zero_is_greedy_and_ignores_the_seed() -> None:
    item = load_sim_task("mmlu", size=3).items[2]
    replies = {respond("llama-8b", _ask(item.question), {"temperature": 0.0, "seed": s}).answer for s in range(5)}
    request = read_request(_ask(item.question))
    best = int(np.argmax(answer_distribution(request, sim_model("llama-8b"))))
    assert replies == {request.item.value(best)}


def test_roles_are_recognised_from_the_system_prompt() -> None:
    question = make_item("math", 0, 7).question
    assert read_request(_ask(question)).behaviour == "assistant"
    assert read_request(_ask(question, "assistant", ("3",))).behaviour == "refine"
    for role in ("critic", "fuser", "verifier"):
        assert read_request(_ask(question, role, ("3", "4"))).behaviour == role
    custom = [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": question}]
    assert read_request(custom).role == "assistant"


def test_verifier_scores_put_its_choice_first() -> None:
    item = make_item("math", 0, 11)
    shown = (str(item.value(2)), str(item.value(0)), str(item.value(2)), "123456789")
    for seed in range(20):
        reply = respond("llama-8b", _ask(item.question, "verifier", shown), {"temperature": 1.0, "seed": seed})
        picked = pick_verified(reply.text, [Candidate(str(i), s) for i, s in enumerate(shown)])
        assert picked == str(reply.answer) and reply.category in (0, 2)


def test_untagged_questions_get_a_deterministic_answer() -> None:
    one = respond("gemma-2b", _ask("What is 2 + 2?"), {"temperature": 0.7, "seed": 0})
    assert one == respond("gemma-2b", _ask("What is 2 + 2?"), {"temperature": 0.7, "seed": 0})
    assert "Final answer:" in one.text


def test_runs_through_the_gateway_record_modelled_usage_latency_and_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gateway = Gateway(Store(tmp_path / "sim.db"), GatewaySettings(max_retries=0))
    graph = Graph.from_yaml(CHAIN, gateway=gateway)
    item = make_item("math", 0, 5)
    first = graph.run(item.question)
    assert first.usage.calls == 3 and first.usage.cached_calls == 0
    for trace, inputs in zip(first.trace, (0, 1, 1), strict=True):
        model = sim_model(graph.runtime.models[trace.node_id].route)
        assert trace.prompt_tokens == item.prompt_tokens + inputs * item.completion_tokens
        assert trace.latency_s == pytest.approx(
            float(call_latency(model, trace.prompt_tokens, trace.completion_tokens))
        )
    assert first.usage.critical_path_s == pytest.approx(sum(t.latency_s for t in first.trace))
    again = graph.run(item.question)
    assert again.usage.cached_calls == 3 and again.usage.calls == 0
    assert [t.answer for t in again.trace] == [t.answer for t in first.trace]


def test_same_seed_same_answers_without_a_cache() -> None:
    graph = Graph.from_yaml(CHAIN, store=None)
    questions = [item.question for item in load_sim_task("humaneval", size=8).items]
    assert [graph.run(q).answer for q in questions] == [graph.run(q).answer for q in questions]


def test_unknown_sim_model_is_refused_when_the_graph_loads() -> None:
    """It used to load, fail every call and answer nothing (a run that exited 0)."""
    with pytest.raises(
        SpecError, match=r"nodes\[0\]\.model \(line 3\): unknown simulated model 'sim/llama-2b'; valid: sim/"
    ):
        Graph.from_yaml("name: bad\nnodes:\n  - {id: a, role: assistant, model: sim/llama-2b}\n", store=None)


def test_a_run_cut_short_leaves_no_coroutine_unawaited(tmp_path: Path) -> None:
    """Breaking out of `astream` (or a timeout) while litellm's worker thread ran the provider printed
    "RuntimeWarning: coroutine 'SimProvider.acompletion' was never awaited"."""
    script = tmp_path / "cut.py"
    script.write_text(
        "import asyncio, agentscale\n"
        "g = agentscale.Graph.from_yaml('name: b\\nnodes:\\n  - {id: a, role: assistant, model: sim/llama-8b}\\n"
        "  - {id: b, role: assistant, model: sim/llama-8b}\\n  - {id: f, role: fuser, model: sim/llama-8b}\\n"
        'edges: ["a, b -> f"]\\n\', store=None)\n'
        "async def main():\n"
        "    for i in range(5):\n"
        "        async for event in g.astream(f'What is {i} + 4?'):\n"
        "            break\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and "never awaited" not in done.stderr, done.stderr
