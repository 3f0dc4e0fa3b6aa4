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
from agentscale.sim.population import MODELS, sim_model
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


# docs/sim.md, 'The population': layers, width, KV width, GPUs
ARCHITECTURE = {
    "llama-1b": (1.0, 16, 2048, 512, 1),
    "llama-3b": (3.0, 28, 3072, 1024, 1),
    "llama-8b": (8.0, 32, 4096, 1024, 1),
    "llama-70b": (70.0, 80, 8192, 1024, 2),
    "gemma-1b": (1.0, 26, 1152, 256, 1),
    "gemma-2b": (2.0, 18, 2048, 256, 1),
    "gemma-7b": (7.0, 28, 3072, 4096, 1),
}


def _roofline(name: str, prompt: float, completion: float) -> float:
    """docs/sim.md, 'Tokens and latency', written out independently: A100 312 TFLOP/s, 2.04 TB/s;
    prefill FLOPs at 50% of peak, decode reading weights + KV cache at 75% of bandwidth, each phase
    the larger of compute and memory time, BF16, 20 ms per call, GPUs scale ideally."""
    params_b, layers, width, kv, gpus = ARCHITECTURE[name]
    p, n = params_b * 1e9, prompt
    flops, bandwidth = gpus * 312e12 * 0.5, gpus * 2.039e12 * 0.75
    kv_bytes = 2 * layers * kv * 2  # keys and values, per cached token
    prefill = max((2 * p * n + 2 * layers * width * n * (n + 1)) / flops, (2 * p + kv_bytes * n) / bandwidth)
    decode_flops = 2 * p * completion + 2 * layers * width * completion * (2 * n + completion + 1)
    decode_bytes = completion * 2 * p + kv_bytes * (completion * n + completion * (completion - 1) / 2)
    return 0.02 + prefill + max(decode_flops / flops, decode_bytes / bandwidth)


def test_the_roofline_is_the_documented_one_for_every_model() -> None:
    assert set(ARCHITECTURE) == set(MODELS)
    for name in MODELS:
        for prompt, completion in ((202, 275), (1200, 60), (90, 900)):
            assert float(call_latency(sim_model(name), prompt, completion)) == pytest.approx(
                _roofline(name, prompt, completion), rel=1e-9
            ), (name, prompt, completion)
    # and the documented MATH-length figures: ~0.4 s, ~1.1 s, ~3 s, ~13 s
    seconds = [float(call_latency(sim_model(f"llama-{s}"), 202, 275)) for s in ("1b", "3b", "8b", "70b")]
    assert seconds == pytest.approx([0.4, 1.1, 3.0, 13.0], rel=0.1)


ROLES_GRAPH = """
name: roles
models: {s: {model: sim/llama-1b}}
nodes:
  - {id: a, role: assistant, model: s}
  - {id: b, role: assistant, model: s}
  - {id: c, role: critic, model: s}
  - {id: f, role: fuser, model: s}
  - {id: r, role: assistant, model: s}
  - {id: v, role: verifier, model: s}
edges: ["a -> c", "a, b -> f", "c, f -> r", "c, f, r -> v"]
answer_format: number
"""


def test_each_role_writes_its_documented_completion_length() -> None:
    """docs/sim.md: completion = item completion x 1.0 (assistant, refine), 1.2 (critic), 0.9 (fuser),
    0.4 (verifier); prompt = item prompt + d x item completion."""
    factor = {"a": 1.0, "b": 1.0, "c": 1.2, "f": 0.9, "r": 1.0, "v": 0.4}
    inputs = {"a": 0, "b": 0, "c": 1, "f": 2, "r": 2, "v": 3}
    graph = Graph.from_yaml(ROLES_GRAPH, store=None)
    for index in (3, 17):
        item = make_item("math", 0, index)
        result = graph.run(item.question)
        assert {t.node_id for t in result.trace} == set(factor)
        for trace in result.trace:
            assert trace.completion_tokens == max(1, round(item.completion_tokens * factor[trace.node_id])), trace
            assert trace.prompt_tokens == item.prompt_tokens + inputs[trace.node_id] * item.completion_tokens
