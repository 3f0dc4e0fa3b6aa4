"""Running graphs against the scripted server over real HTTP: order, concurrency, answers, cache,
failures and budgets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from agentscale import Graph, SpecError, Store
from agentscale.graphs.result import NodeTrace
from agentscale.runtime.execute import usable_candidates, why_no_inputs
from agentscale.storage.db import Row
from agentscale.storage.tables import Run
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml

WIDTH_8 = (
    "name: wide\nnodes:\n"
    + "".join(f"  - {{id: s{i}, role: assistant, model: m}}\n" for i in range(8))
    + "  - {id: v, role: vote}\nedges:\n  - "
    + ", ".join(f"s{i}" for i in range(8))
    + " -> v\nanswer_format: number\n"
)


def test_single_node_answers_and_traces(make_graph, scripted: ScriptedServer) -> None:
    graph: Graph = make_graph("name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n")
    result = graph.run("What is 17 + 25?")
    assert result.answer == "42"
    assert [t.node_id for t in result.trace] == ["a"]
    node = result.trace[0]
    assert node.status == "ok" and node.route == "hosted_vllm/scripted"
    assert node.prompt_tokens > 0 and node.completion_tokens > 0 and node.latency_s > 0
    assert result.usage.calls == 1 and result.usage.cached_calls == 0
    assert scripted.completion_requests[0]["model"] == "scripted"


def test_width_8_runs_concurrently(make_graph, scripted: ScriptedServer) -> None:
    scripted.latency_s = 1.0  # long enough for all eight to be sent before the first answer, on a loaded machine too
    graph: Graph = make_graph(WIDTH_8)
    graph.run("What is 1 + 1?")  # warm litellm's import and client
    scripted.reset()
    result = graph.run("What is 2 + 3?")
    assert result.answer == "5"
    assert scripted.peak_concurrency == 8  # all eight requests were in flight at once
    # the critical path is the slowest branch, not the sum of the calls (no wall-clock bound: CI machines are loaded)
    latency = {t.node_id: t.latency_s for t in result.trace}
    slowest = max(latency[f"s{i}"] for i in range(8))
    assert result.usage.critical_path_s == pytest.approx(slowest + latency["v"])
    assert result.usage.critical_path_s < sum(latency.values())


def test_node_starts_as_soon_as_its_own_predecessors_finish(make_graph, scripted: ScriptedServer) -> None:
    """fast -> follow must not wait for the slow sibling (LangGraph's superstep barrier)."""
    scripted.add_rule(Rule(pattern="SLOW", replies=["Final answer: 1"], latency_s=0.6))
    scripted.add_rule(Rule(pattern="Candidate 1", replies=["Final answer: 2"], latency_s=0.05))
    scripted.add_rule(Rule(replies=["Final answer: 3"], latency_s=0.05))
    graph: Graph = make_graph(
        "name: asap\nroles:\n  slow: {system: be slow, user: 'SLOW {question}'}\nnodes:\n"
        "  - {id: fast, role: assistant, model: m}\n  - {id: follow, role: assistant, model: m}\n"
        "  - {id: slow, role: slow, model: m}\n  - {id: join, role: fuser, model: m}\n"
        "edges:\n  - fast -> follow\n  - follow, slow -> join\n"
    )
    result = graph.run("q?")
    by_id = {t.node_id: t for t in result.trace}
    assert by_id["follow"].finish_order < by_id["slow"].finish_order
    times = {r["messages"][-1]["content"].split("\n")[0]: r["_received"] for r in scripted.completion_requests}
    follow_sent = [
        r["_received"]
        for r in scripted.completion_requests
        if "Answers from other solvers" in r["messages"][-1]["content"]
    ]
    slow_sent = [t for text, t in times.items() if text.startswith("SLOW")]
    assert follow_sent and follow_sent[0] - slow_sent[0] < 0.4


def test_predecessor_answers_reach_successors(make_graph, scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(model="a", replies=["reasoning...\nFinal answer: 11"]))
    scripted.add_rule(Rule(model="b", replies=["Final answer: 13"]))
    scripted.add_rule(Rule(model="c", replies=["The first is right.\nFinal answer: 11"]))
    text = (
        "models:\n"
        f'  a: {{model: hosted_vllm/a, api_base: "{scripted.api_base}"}}\n'
        f'  b: {{model: hosted_vllm/b, api_base: "{scripted.api_base}"}}\n'
        f'  c: {{model: hosted_vllm/c, api_base: "{scripted.api_base}"}}\n'
        "name: pass\nnodes:\n  - {id: x, role: assistant, model: a}\n  - {id: y, role: assistant, model: b}\n"
        "  - {id: f, role: fuser, model: c}\nedges: ['x, y -> f']\nanswer_format: number\n"
    )
    graph = Graph.from_yaml(text, store=None)
    result = graph.run("Pick a number")
    fuser_prompt = next(r for r in scripted.completion_requests if r["model"] == "c")["messages"][-1]["content"]
    assert "Candidate 1:\n11" in fuser_prompt or "Candidate 2:\n11" in fuser_prompt
    assert "13" in fuser_prompt
    assert "reasoning..." not in fuser_prompt  # answers, not transcripts
    assert "Pick a number" in fuser_prompt
    assert result.answer == "11"


def test_a_node_without_a_model_call_adds_nothing_to_the_modelled_clock() -> None:
    """A tester's sandbox runs take wall time a replay would not reproduce; only calls count."""
    from agentscale.graphs.result import NodeTrace
    from agentscale.runtime.execute import modelled_finish

    first = NodeTrace("a", "assistant", model="m", latency_s=0.5, finished_at_s=0.5)
    second = NodeTrace("b", "assistant", model="m", latency_s=0.25, finished_at_s=0.25)
    tester = NodeTrace("t", "tester", latency_s=3.0)
    assert modelled_finish(tester, [first, second]) == 0.5
    assert modelled_finish(NodeTrace("c", "critic", model="m", latency_s=0.25), [first]) == 0.75


def test_vote_is_majority(make_graph, scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 4", "Final answer: 5", "Final answer: 5.0"]))
    three: Graph = make_graph(
        "name: v\nnodes:\n"
        + "".join(f"  - {{id: {n}, role: assistant, model: m}}\n" for n in "abc")
        + "  - {id: v, role: vote}\nedges: ['a, b, c -> v']\nanswer_format: number\n"
    )
    assert three.run("majority").answer in ("5", "5.0")


def test_vote_ties_go_to_the_first_finished_live_and_in_a_cached_replay(make_graph, scripted: ScriptedServer) -> None:
    """Cache hits return at once, in node order; the tie must still go to the call that finished first live."""
    scripted.add_rule(Rule(pattern="SLOW", replies=["Final answer: 7"], latency_s=0.5))
    scripted.add_rule(Rule(replies=["Final answer: 9"]))
    graph: Graph = make_graph(
        "name: v\nroles:\n  slow: {system: be slow, user: 'SLOW {question}'}\nnodes:\n"
        "  - {id: a, role: slow, model: m}\n  - {id: b, role: assistant, model: m}\n"
        "  - {id: v, role: vote}\nedges: ['a, b -> v']\nanswer_format: number\n"
    )
    live = graph.run("tie")
    assert live.answer == "9" and live.usage.calls == 2  # 7 and 9 tie; b's 9 came back first
    replay = graph.run("tie")
    assert replay.usage.cached_calls == 2 and replay.usage.calls == 0
    assert replay.answer == "9"
    by_id = {t.node_id: t for t in replay.trace}
    assert by_id["b"].finished_at_s < by_id["a"].finished_at_s


def test_verifier_passes_on_best_scored_candidate(make_graph, scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(pattern="Candidate N: S", replies=["Candidate 1: 2\nCandidate 2: 9"]))
    scripted.add_rule(Rule(replies=["Final answer: 10", "Final answer: 12"]))
    graph: Graph = make_graph(
        "name: ver\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
        "  - {id: judge, role: verifier, model: m}\nedges: ['a, b -> judge']\nanswer_format: number\n"
        "defaults: {temperature: 0}\n"
    )
    result = graph.run("which?")
    # the candidates in the order the verifier saw them: the modelled clock's (see usable_candidates)
    candidates = sorted((t for t in result.trace if t.role == "assistant"), key=lambda t: t.finished_at_s)
    assert result.answer == candidates[1].answer


def test_rerun_with_cache_makes_zero_calls(make_graph, scripted: ScriptedServer) -> None:
    graph: Graph = make_graph(WIDTH_8)
    first = graph.run("What is 3 + 4?")
    assert first.usage.calls == 8 and len(scripted.completion_requests) == 8
    seeds = [r["seed"] for r in scripted.completion_requests]
    assert len(set(seeds)) == 8  # one sample slot each
    # identical sampled prompts got distinct cache slots (sample index), so all 8 were real calls
    scripted.reset()
    second = graph.run("What is 3 + 4?")
    assert scripted.completion_requests == []
    assert second.usage.calls == 0 and second.usage.cached_calls == 8
    assert second.answer == first.answer
    assert second.usage.prompt_tokens == first.usage.prompt_tokens  # cost does not depend on the cache


def test_cache_can_be_disabled(scripted: ScriptedServer, store) -> None:  # type: ignore[no-untyped-def]
    from agentscale import Gateway, GatewaySettings
    from tests.conftest import graph_yaml

    gateway = Gateway(store, GatewaySettings(cache=False))
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: n\nnodes:\n  - {id: a, role: assistant, model: m}\n"), gateway=gateway
    )
    graph.run("hi")
    graph.run("hi")
    assert len(scripted.completion_requests) == 2


def test_each_questions_samples_get_seeds_of_their_own_and_again_the_same(scripted: ScriptedServer, store) -> None:  # type: ignore[no-untyped-def]
    """Sample k of every question was seeded k: vLLM then drew every question's sample 0 from one
    random stream (Qwen 0.5B's sample 0 skipped its reasoning on 12 of 12 questions, samples 1 and 2
    on none), so a model's samples erred together across an eval. Seeds are now the request's own,
    and the same request asked again (a cache miss) gets the same seed. The simulator, which
    hashes the prompt into its draws itself, keeps the sample index (its figures stay as documented)."""
    from agentscale import Gateway, GatewaySettings
    from agentscale.models.gateway import CallRequest
    from agentscale.models.registry import resolve
    from tests.conftest import graph_yaml

    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, WIDTH_8), gateway=Gateway(store, GatewaySettings(cache=False))
    )

    def seeds(question: str) -> list[int]:
        scripted.reset()
        graph.run(question)
        return sorted(r["seed"] for r in scripted.completion_requests)

    first, second, again = seeds("What is 3 + 4?"), seeds("What is 5 + 6?"), seeds("What is 3 + 4?")
    assert len(set(first)) == 8 and first == again
    assert not set(first) & set(second)
    simulated = resolve("sim/llama-1b", None)
    assert [
        CallRequest(simulated, [{"role": "user", "content": "q"}], 0.7, 64, sample_index=i).seed for i in range(3)
    ] == [0, 1, 2]


def test_transient_failures_are_retried(make_graph, scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(status=503, times=1))
    scripted.add_rule(Rule(status=429, times=1))
    graph: Graph = make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n")
    result = graph.run("What is 2 + 2?")
    assert result.answer == "4"
    assert len(scripted.completion_requests) == 3


def test_persistent_failure_names_node_and_endpoint_and_keeps_other_branches(
    make_graph, scripted: ScriptedServer
) -> None:
    scripted.add_rule(Rule(pattern="BROKEN", status=500))
    graph: Graph = make_graph(
        "name: f\nroles:\n  broken: {system: s, user: 'BROKEN {question}'}\nnodes:\n"
        "  - {id: good, role: assistant, model: m}\n  - {id: bad, role: broken, model: m}\n"
        "  - {id: v, role: vote}\nedges: ['good, bad -> v']\nanswer_format: number\n"
    )
    result = graph.run("What is 5 + 5?")
    bad = next(t for t in result.trace if t.node_id == "bad")
    assert bad.status == "failed"
    assert "node 'bad'" in (bad.error or "") and scripted.api_base in (bad.error or "") and "500" in (bad.error or "")
    assert (
        len([r for r in scripted.completion_requests if "BROKEN" in r["messages"][-1]["content"]]) == 3
    )  # 1 + 2 retries
    assert result.answer == "10"
    assert result.errors and result.errors[0].startswith("bad:")


def test_client_errors_are_not_retried(make_graph, scripted: ScriptedServer) -> None:
    scripted.add_rule(Rule(status=400))
    graph: Graph = make_graph("name: c\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    result = graph.run("x")
    assert result.trace[0].status == "failed" and result.answer is None
    assert len(scripted.completion_requests) == 1
    assert result.stopped_reason and "output node 'a' failed" in result.stopped_reason


def test_token_budget_stops_before_the_call_that_would_exceed(make_graph, scripted: ScriptedServer) -> None:
    graph: Graph = make_graph(
        "name: b\ndefaults: {max_tokens: 100, temperature: 0}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
        "  - {id: b, role: critic, model: m}\n  - {id: c, role: fuser, model: m}\n"
        "edges: ['a -> b -> c']\nbudget: {max_tokens: 250}\nanswer_format: number\n"
    )
    result = graph.run("What is 20 + 22?")
    statuses = {t.node_id: t.status for t in result.trace}
    assert statuses["a"] == "ok"
    assert "skipped" in statuses.values()
    assert result.stopped_reason and "max_tokens" in result.stopped_reason
    assert result.answer == "42"  # best answer so far
    assert result.usage.tokens <= 250
    assert len(scripted.completion_requests) == sum(1 for s in statuses.values() if s == "ok")


def test_concurrent_calls_cannot_jointly_exceed_the_budget(make_graph, scripted: ScriptedServer) -> None:
    graph: Graph = make_graph(
        WIDTH_8.replace(
            "answer_format: number\n", "answer_format: number\ndefaults: {max_tokens: 200}\nbudget: {max_tokens: 900}\n"
        )
    )
    result = graph.run("What is 1 + 2?")
    made = len(scripted.completion_requests)
    assert 0 < made < 8
    assert result.answer == "3"
    assert result.usage.tokens <= 900


@pytest.mark.parametrize("latency_s", [0.0, 0.1])
def test_a_capped_question_asked_again_replays_its_first_run(
    make_graph, scripted: ScriptedServer, latency_s: float
) -> None:  # type: ignore[no-untyped-def]
    """Samples side by side count each other at their worst case even once answered: a cache hit
    answers before its siblings reserve, and the re-run of five samples under a 200-token cap made 2
    calls, one of them paid, where its first run had made 1 (an API walk)."""
    scripted.latency_s = latency_s
    caps = "answer_format: number\ndefaults: {max_tokens: 100, temperature: 0.7}\nbudget: {max_tokens: 400}\n"
    graph: Graph = make_graph(WIDTH_8.replace("answer_format: number\n", caps))
    first = graph.run("What is 1 + 2?")
    paid = len(scripted.completion_requests)
    assert 0 < first.usage.calls == paid < 8
    again = graph.run("What is 1 + 2?")
    assert [t.status for t in again.trace] == [t.status for t in first.trace]
    assert again.usage.cached_calls == paid and len(scripted.completion_requests) == paid  # nothing new paid


def test_a_refusal_after_an_overrun_says_both(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """Node a's usage passes the cap (its prompt estimated short), node b is then refused: the run said
    only that b "would be exceeded", as if the run had kept within its caps (the budget audit)."""
    from agentscale.models.budget import is_overrun

    body = "name: two\nnodes:\n  - {id: a, role: assistant, model: m, max_tokens: 16}\n"
    body += "  - {id: b, role: critic, model: m, max_tokens: 16}\nedges: [a -> b]\nbudget: {max_tokens: 2400}\n"
    result = make_graph(body).run("Sum these digits: " + "7 " * 3000)
    assert [t.status for t in result.trace] == ["ok", "skipped"]
    reason = str(result.stopped_reason)
    assert reason.startswith("budget max_tokens=2400 would be exceeded (projected")
    assert "the calls had already passed a cap: budget max_tokens=2,400 exceeded by the calls' actual usage" in reason
    assert not is_overrun(reason)  # b was cut: the item did not run to its end


def test_a_cap_passed_by_the_calls_actual_usage_is_reported(make_graph, scripted: ScriptedServer) -> None:
    """A reservation estimates the prompt (characters/3); digits separated by blanks are one token
    each (the scripted server counts words, as a tokenizer counts ` 7`): the call fits the estimate,
    its usage passes the cap, and the run said nothing (stopped_reason None, within its caps)."""
    body = "name: one\nnodes:\n  - {id: a, role: assistant, model: m, max_tokens: 16}\nbudget: {max_tokens: 2400}\n"
    graph: Graph = make_graph(body)
    within = graph.run("What is 20 + 22?")
    assert within.stopped_reason is None
    over = graph.run("Sum these digits: " + "7 " * 3000)
    assert over.usage.tokens > 2400 and over.trace[0].status == "ok"
    assert "budget max_tokens=2,400 exceeded by the calls' actual usage (3,0" in str(over.stopped_reason)


def test_flops_are_computed_from_params(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    text = (
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}", params_b: 1.0}}\n'
        "name: fl\nnodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_flops: 1.0e15}\n"
    )
    result = Graph.from_yaml(text, gateway=gateway).run("hi")
    assert result.usage.flops and result.usage.flops > 2e9 * result.usage.tokens


def test_flops_budget_without_model_size_is_refused_up_front(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    text = f'models:\n  m: {{model: hosted_vllm/mystery, api_base: "{scripted.api_base}"}}\n'
    text += "name: fl\nnodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_flops: 1.0e15}\n"
    with pytest.raises(SpecError, match="unknown size: set params_b"):
        Graph.from_yaml(text, gateway=gateway)


def test_a_token_cap_below_every_calls_completion_cap_is_refused_up_front(tmp_path: Path) -> None:
    """`budget: {max_tokens: 100}` with calls capped at 512 refused every call (each reserves its cap
    and its prompt first): validate passed the graph and every run failed "would be exceeded". The
    smallest call decides (a node may cap itself lower)."""
    from agentscale.cli.app import main

    base = 'models:\n  m: {model: hosted_vllm/x, api_base: "http://127.0.0.1:9/v1"}\nname: t\n'
    one = base + "nodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_tokens: 100}\n"
    with pytest.raises(
        SpecError, match=r"budget.max_tokens.*100 is below the smallest call's reservation \(max_tokens 512"
    ):
        Graph.from_yaml(one, store=None)
    (tmp_path / "g.yaml").write_text(one)
    assert main(["validate", str(tmp_path / "g.yaml")]) == 1
    low = "defaults: {max_tokens: 300}\nnodes:\n  - {id: b, role: assistant, model: m, max_tokens: 64}\n"
    Graph.from_yaml(
        base + low + "  - {id: a, role: critic, model: m}\nedges: ['b -> a']\nbudget: {max_tokens: 160}\n", store=None
    )
    with pytest.raises(SpecError, match=r"reservation \(max_tokens 300"):
        Graph.from_yaml(one.replace("nodes:\n", "defaults: {max_tokens: 300}\nnodes:\n"), store=None)


@pytest.mark.parametrize(
    ("budget", "extra", "refused"),
    [
        # the input audit: validate passed these, and every call of every run was refused
        ("{max_tokens: 120}", "", "120 is below the smallest call's reservation (max_tokens 100 and a prompt of"),
        ("{max_flops: 1}", "", "1 is below the smallest call's reservation (3.5e+11 FLOPs)"),
        ("{max_usd: 0.1}", "", "0.1 is below the smallest call's reservation ($0.17)"),
        ("{max_tokens: 1}", "coordinator: {model: m, max_rounds: 2}\n", "1 is below the smallest call's reservation"),
    ],
)
def test_a_cap_below_what_any_call_reserves_with_its_prompt_is_refused_up_front(
    budget: str, extra: str, refused: str
) -> None:
    """Each call reserves its completion cap and its prompt: a cap between the completion cap and the
    two together (120 over calls of 100 tokens, whose prompt made 178) passed validate; so did FLOPs
    and USD caps no call fits, and any cap on a coordinator graph."""
    priced = "params_b: 1, price: {input_per_mtok: 1000, output_per_mtok: 1000}"
    base = f'models:\n  m: {{model: hosted_vllm/x, api_base: "http://127.0.0.1:9/v1", {priced}}}\nname: t\n'
    text = base + "defaults: {max_tokens: 100}\nnodes:\n  - {id: a, role: assistant, model: m}\n" + extra
    with pytest.raises(SpecError) as error:
        Graph.from_yaml(text + f"budget: {budget}\n", store=None)
    assert refused in str(error.value)
    Graph.from_yaml(text + "budget: {max_tokens: 200, max_flops: 1.0e+12, max_usd: 1}\n", store=None)


def test_unknown_price_is_reported_as_unknown(make_graph) -> None:
    result = make_graph("name: p\nnodes:\n  - {id: a, role: assistant, model: m}\n").run("hi")
    assert result.usage.usd is None


def test_price_override_gives_usd(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    text = (
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}", '
        "price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}\n"
        "name: usd\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    )
    result = Graph.from_yaml(text, gateway=gateway).run("hi")
    expected = (result.usage.prompt_tokens * 1.0 + result.usage.completion_tokens * 2.0) / 1e6
    assert result.usage.usd == pytest.approx(expected)


def test_run_is_recorded_in_the_store(make_graph, store) -> None:  # type: ignore[no-untyped-def]
    result = make_graph("name: rec\nnodes:\n  - {id: a, role: assistant, model: m}\n").run("What is 1 + 1?")
    run = store.get_run(result.run_id)
    assert run.status == "done" and run.graph_name == "rec"
    calls = store.node_calls(run.id)
    assert [c.node_id for c in calls] == ["a"] and calls[0].completion
    items = store.run_items(run.id)
    assert items[0].answer == result.answer


async def test_arun_inside_a_running_loop(make_graph) -> None:
    graph: Graph = make_graph("name: as\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n")
    result = await graph.arun("What is 6 + 7?")
    assert result.answer == "13"


async def test_astream_yields_node_events_then_final(make_graph) -> None:
    graph: Graph = make_graph(
        "name: st\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: m}\n"
        "edges: ['a -> b']\nanswer_format: number\n"
    )
    events = [event async for event in graph.astream("What is 4 + 4?")]
    kinds = [(e.kind, e.node_id) for e in events]
    assert kinds == [
        ("node_started", "a"),
        ("node_finished", "a"),
        ("node_started", "b"),
        ("node_finished", "b"),
        ("final", None),
    ]
    assert events[1].trace is not None and events[1].trace.answer == "8"
    assert events[-1].result is not None and events[-1].result.answer == "8"


async def test_a_stream_its_consumer_leaves_leaves_no_task_behind(make_graph, scripted: ScriptedServer) -> None:
    """An SSE client gone (the consumer cancelled mid-stream) left astream's pending queue reader
    behind: 15 pending tasks after 20 timed-out streams, "Task was destroyed but it is pending"."""
    from agentscale.testing import Rule

    scripted.add_rule(Rule(replies=["Final answer: 2"], latency_s=0.3))
    graph: Graph = make_graph("name: st\nnodes:\n  - {id: a, role: assistant, model: m}\n")

    async def consume(question: str) -> None:
        async for _ in graph.astream(question):
            pass

    before = len(asyncio.all_tasks())
    for index in range(5):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(consume(f"What is {index} + 1?"), 0.05)
    await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) == before


def test_spend_ledger_records_real_calls_only(make_graph, store) -> None:  # type: ignore[no-untyped-def]
    graph: Graph = make_graph(WIDTH_8)
    first = graph.run("What is 9 + 9?")
    spent = store.spend(first.run_id)
    assert spent["calls"] == 8 and spent["tokens"] == first.usage.tokens
    second = graph.run("What is 9 + 9?")
    assert store.spend(second.run_id)["calls"] == 0  # all cache hits: nothing paid


def test_cached_nodes_report_the_original_call_latency(make_graph, scripted: ScriptedServer) -> None:
    scripted.latency_s = 0.1
    graph: Graph = make_graph("name: lat\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    first = graph.run("What is 1 + 1?")
    again = graph.run("What is 1 + 1?")
    assert again.trace[0].cached and again.usage.calls == 0
    assert again.trace[0].latency_s == pytest.approx(first.trace[0].latency_s)
    assert again.usage.critical_path_s >= 0.1 > again.usage.latency_s


async def test_a_run_that_fails_is_stored_failed_with_its_error(make_graph, store) -> None:  # type: ignore[no-untyped-def]
    """Any error ended a single-question run "interrupted", and `runs show` said "the same command
    again goes on" (the diff review)."""
    graph: Graph = make_graph("name: bad\nnodes:\n  - {id: a, role: assistant, model: m}\n")

    def broken(event) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("bug in my callback")

    with pytest.raises(ValueError, match="bug in my callback"):
        await graph.arun("What is 4 + 4?", on_event=broken)
    (run,) = store.list_runs()
    assert (run.status, run.error) == ("failed", "bug in my callback")


async def test_an_interrupted_run_keeps_its_row_and_its_paid_calls(make_graph, scripted: ScriptedServer, store) -> None:  # type: ignore[no-untyped-def]
    """Cancelled mid-graph: the run row says interrupted, the call that returned is in the spend
    ledger and the cache as soon as it returned, and with the run as its node call (it was dropped:
    `runs show` said "no items recorded" beside a ledger that counted it); a re-run pays only for the
    rest."""
    scripted.add_rule(Rule(pattern="Answers from other solvers", replies=["Final answer: 8"], latency_s=5))
    graph: Graph = make_graph(
        "name: cut\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
        "edges: ['a -> b']\nanswer_format: number\n"
    )
    task = asyncio.ensure_future(graph.arun("What is 4 + 4?"))
    for _ in range(500):  # until b's request is at the server (a has answered)
        if len(scripted.completion_requests) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (run,) = store.list_runs()
    assert run.status == "interrupted" and run.graph_name == "cut"
    assert store.spend(run.id)["calls"] == 1
    assert [(c.node_id, c.status, c.answer) for c in store.node_calls(run.id)] == [("a", "ok", "8")]
    assert json.loads(run.summary_json) == {"question": "What is 4 + 4?"}  # no item row holds it (a walk)
    scripted.reset()
    again = await graph.arun("What is 4 + 4?")
    assert again.answer == "8" and again.usage.calls == 1 and again.usage.cached_calls == 1
    assert json.loads(store.get_run(again.run_id).summary_json)["n"] == 1  # a finished run's summary, as before


class _CancelsOnceDone(Store):
    """A store that cancels the run's task as soon as a run row is written done: a cancel (a timeout,
    Ctrl-C) landing between the answer's rows and the graph's return."""

    run: asyncio.Future[object] | None = None

    def insert(self, rows: Sequence[Row], **options: bool) -> None:
        super().insert(rows, **options)
        if self.run is not None and any(table is Run and values.get("status") == "done" for table, values in rows):
            self.run.cancel()


async def test_a_cancel_after_the_answer_was_recorded_is_a_cancel_and_the_run_stays_done(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    """The interrupted run's row was inserted again: sqlite3.IntegrityError (UNIQUE constraint failed:
    run.id) replaced the CancelledError, so `asyncio.wait_for` raised it instead of TimeoutError."""
    store = _CancelsOnceDone(tmp_path / "c.db")
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: late\nnodes:\n  - {id: a, role: assistant, model: m}\n"), store=store
    )
    store.run = asyncio.ensure_future(graph.arun("What is 4 + 4?"))
    with pytest.raises(asyncio.CancelledError):
        await store.run
    (run,) = store.list_runs()
    assert run.status == "done" and len(store.run_items(run.id)) == 1 and len(store.node_calls(run.id)) == 1


def test_inputs_finishing_at_the_same_modelled_time_keep_their_listed_order() -> None:
    """Two calls of one simulated model take the same modelled time; which came back first on the
    wall clock must not decide a vote (it changed answers between runs, and between a live run and
    its replay from the cache): the inputs keep the order they are listed in."""
    first = NodeTrace("a", "assistant", answer="789", latency_s=0.545, finished_at_s=0.545, finish_order=2)
    second = NodeTrace("b", "assistant", answer="790", latency_s=0.545, finished_at_s=0.545, finish_order=1)
    earlier = NodeTrace("c", "assistant", answer="791", latency_s=0.5, finished_at_s=0.5, finish_order=3)
    assert [c.node_id for c in usable_candidates([first, second, earlier])] == ["c", "a", "b"]


CHAIN_OF_THREE = (
    "name: late\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: m}\n"
    "  - {id: c, role: critic, model: m}\nedges: ['a -> b -> c']\nanswer_format: number\nbudget: {max_latency_s: 0.8}\n"
)


def test_a_latency_cap_holds_on_a_replay_from_the_cache(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """The cap was checked on the wall clock only: in the live run c starts at 0.6 s with 0.2 s left and
    times out; its replay from the cache, which takes no time for a and b, gave c the whole 0.8 s,
    and c answered: a replay that differs from its run, and pays."""
    graph: Graph = make_graph(CHAIN_OF_THREE)
    graph.run("What is 1 + 1?")  # litellm's first call sets up its client: not what is measured here
    scripted.latency_s = 0.3
    live = graph.run("What is 2 + 2?")
    replay = graph.run("What is 2 + 2?")
    assert [t.status for t in live.trace] == ["ok", "ok", "failed"]
    assert [t.status for t in replay.trace] == ["ok", "ok", "failed"] and replay.answer == live.answer
    # the run says its cap stopped it (it said "output node 'c' skipped", naming no budget)
    assert live.answer == "4" and "budget max_latency_s=0.8 would be exceeded" in str(live.stopped_reason)


def test_a_latency_cap_bites_on_simulated_models(tmp_path: Path) -> None:
    """Simulated calls take their modelled latency (llama-70b: ≈ 13 s) and no wall time: a 20 s cap
    never stopped a chain of three (`critical_path_s` 49.6)."""
    text = CHAIN_OF_THREE.replace("model: m", "model: sim/llama-70b").replace("0.8}", "20}")
    result = Graph.from_yaml(text, store=None).run("[sim:math#0007] q")
    assert [t.status for t in result.trace] == ["ok", "ok", "skipped"]
    assert "budget max_latency_s=20 would be exceeded" in str(result.stopped_reason)


def test_a_refusal_under_a_latency_cap_is_not_blamed_on_the_cap(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """A 400 is not retried whatever the time left; reported as the time budget's stop, it read as
    "a budget stopped it" (serve-graph's 500, an eval's finished item) instead of the node's failure."""
    graph: Graph = make_graph(
        "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_latency_s: 1.0}\n"
    )
    graph.run("What is 1 + 1?")  # litellm's first call sets up its client: not what is measured here
    scripted.add_rule(Rule(status=400, latency_s=0.8))
    result = graph.run("What is 2 + 2?")
    assert result.trace[0].status == "failed" and "HTTP 400" in str(result.trace[0].error)
    assert "budget" not in str(result.stopped_reason) and "failed" in str(result.stopped_reason)


def test_a_call_ending_past_the_latency_cap_is_reported() -> None:
    """A simulated call starts in time and takes its modelled latency (≈ 3 s for llama-8b) at once:
    the run ended 3 s into a 0.05 s cap and said nothing (the token, FLOP and USD caps said so)."""
    text = "name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\nbudget: {max_latency_s: 0.05}\n"
    result = Graph.from_yaml(text, store=None).run("[sim:math#0003] q")
    assert result.trace[0].status == "ok"
    assert "budget max_latency_s=0.05 exceeded by the calls' actual usage (the call ended at" in str(
        result.stopped_reason
    )


def test_a_latency_cap_bounds_the_retries_of_a_call(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """Each retry of a call that timed out got the whole clipped timeout again: a 1 s cap on a server
    taking 1.5 s made three requests (the gateway's two retries) and ran ≈ 3 s. The time left bounds
    the attempts and the backoff: one request, and the node fails naming the budget."""
    graph: Graph = make_graph(
        "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_latency_s: 1.0}\n"
    )
    graph.run("What is 1 + 1?")  # litellm's first call sets up its client: not what is measured here
    scripted.latency_s = 1.5
    before = len(scripted.completion_requests)
    result = graph.run("What is 2 + 2?")
    assert len(scripted.completion_requests) - before == 1
    assert result.trace[0].status == "failed" and "time budget" in str(result.trace[0].error)


def test_a_latency_cap_bounds_a_call_to_a_replica_set(store: Store) -> None:
    """The Router of a replica set tried each endpoint for the whole time left: two slow replicas ran
    ≈ 4 s of a 2 s cap. A correctness bound, not a speed figure: the cap is the contract."""
    with ScriptedServer() as first, ScriptedServer() as second:
        endpoints = f"['{first.api_base}', '{second.api_base}']"
        graph = Graph.from_yaml(
            f"name: rep\nmodels:\n  m: {{model: hosted_vllm/scripted, api_base: {endpoints}}}\n"
            "nodes:\n  - {id: a, role: assistant, model: m}\nbudget: {max_latency_s: 2.0}\n",
            store=store,
        )
        graph.run("What is 1 + 1?")  # litellm's first call sets up its clients: not what is measured
        first.latency_s = second.latency_s = 3.0
        started = time.perf_counter()
        result = graph.run("What is 2 + 2?")
        assert time.perf_counter() - started < 3.2
        assert result.trace[0].status == "failed" and "time budget" in str(result.trace[0].error)


def _three_models(api_base: str, extra: str = "") -> str:
    """Aliases m, m2, m3 on the scripted server under model names one, two, three (rules can tell the nodes apart)."""
    return "models:\n" + "".join(
        f'  {alias}: {{model: hosted_vllm/{name}, api_base: "{api_base}"{extra}}}\n'
        for alias, name in (("m", "one"), ("m2", "two"), ("m3", "three"))
    )


CHAIN_FOR_CAPS = (
    "name: caps\ndefaults: {max_tokens: 1000, temperature: 0}\n"
    "nodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: m}\nedges: ['a -> b']\n"
)


@pytest.mark.parametrize("cap", ["max_flops: 2.4e12", "max_usd: 0.0011"])
def test_flops_and_usd_caps_refuse_the_call_that_would_pass_them(
    scripted: ScriptedServer,
    gateway,  # type: ignore[no-untyped-def]
    cap: str,
) -> None:
    """The first call's worst case (≈ 1,040 tokens at 2 GFLOPs and $1e-6 each) fits; the second's, beside
    the first's actual use, passes the cap: it is refused, the run says which cap, and spends within it."""
    model = "params_b: 1.0, price: {input_per_mtok: 1.0, output_per_mtok: 1.0}"
    text = _three_models(scripted.api_base, f", {model}") + CHAIN_FOR_CAPS + f"budget: {{{cap}}}\n"
    result = Graph.from_yaml(text, gateway=gateway).run("What is 2 + 3?")
    assert [(t.node_id, t.status) for t in result.trace] == [("a", "ok"), ("b", "skipped")]
    name, value = cap.split(": ")
    assert result.stopped_reason and f"budget {name}=" in result.stopped_reason
    assert result.usage.flops is not None and result.usage.usd is not None
    assert (result.usage.flops if name == "max_flops" else result.usage.usd) <= float(value)
    assert len(scripted.completion_requests) == 1
    unlimited = Graph.from_yaml(text.replace(cap, f"{name}: 1.0e15"), gateway=gateway).run("What is 2 + 3?")
    assert [t.status for t in unlimited.trace] == ["ok", "ok"]  # the same graph without the cap runs both


def test_flops_of_a_model_of_unknown_size_are_unknown_not_zero(make_graph) -> None:
    result = make_graph("name: p\nnodes:\n  - {id: a, role: assistant, model: m}\n").run("hi")
    assert result.usage.flops is None and result.trace[0].flops is None


def test_a_nodes_own_sampling_settings_win_over_the_graphs_defaults(make_graph, scripted: ScriptedServer) -> None:
    graph: Graph = make_graph(
        "name: d\ndefaults: {temperature: 0.7, max_tokens: 300, top_p: 0.9}\n"
        "nodes:\n  - {id: own, role: assistant, model: m, temperature: 0.0, max_tokens: 17, top_p: 0.5}\n"
        "  - {id: inherits, role: assistant, model: m}\n  - {id: v, role: vote}\nedges: ['own, inherits -> v']\n"
    )
    graph.run("What is 2 + 3?")
    sent = {(r["temperature"], r["max_tokens"], r.get("top_p")) for r in scripted.completion_requests}
    assert sent == {(0.0, 17, 0.5), (0.7, 300, 0.9)}


def test_a_node_whose_inputs_all_failed_is_skipped_not_asked(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    scripted.add_rule(Rule(model="two", status=400))
    text = _three_models(scripted.api_base) + (
        "name: f\nnodes:\n  - {id: s1, role: assistant, model: m2}\n  - {id: s2, role: assistant, model: m2}\n"
        "  - {id: fuse, role: fuser, model: m}\nedges: ['s1, s2 -> fuse']\n"
    )
    result = Graph.from_yaml(text, gateway=gateway).run("What is 2 + 3?")
    fuse = next(t for t in result.trace if t.node_id == "fuse")
    assert fuse.status == "skipped" and fuse.error is not None
    # the cause is named where a user reads it (an eval's "first:" line quotes the stopped reason)
    assert fuse.error.startswith("no usable answers from predecessors (node 's1', endpoint ")
    assert "HTTP 400" in fuse.error and fuse.error.endswith(")") and fuse.error.count("node 's1'") == 1
    assert result.stopped_reason == f"output node 'fuse' skipped: {fuse.error}"
    assert result.answer is None
    assert [r["model"] for r in scripted.completion_requests] == ["two", "two"]  # the fuser was never asked


def test_a_chain_names_the_failed_call_behind_its_skipped_nodes_once(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    """Down a chain the cause is passed on, not nested: the output two nodes below the failed call
    says what failed, as its direct successor does; an input that answered nothing readable
    (no error of its own) leaves the plain reason."""
    scripted.add_rule(Rule(model="two", status=400))
    text = _three_models(scripted.api_base) + (
        "name: c\nnodes:\n  - {id: a, role: assistant, model: m2}\n  - {id: b, role: critic, model: m}\n"
        "  - {id: c, role: fuser, model: m3}\nedges: ['a -> b', 'b -> c']\n"
    )
    result = Graph.from_yaml(text, gateway=gateway).run("What is 2 + 3?")
    b, c = (next(t for t in result.trace if t.node_id == n) for n in "bc")
    assert b.error is not None and b.error.startswith("no usable answers from predecessors (node 'a', endpoint ")
    assert c.error == b.error and (b.status, c.status) == ("skipped", "skipped")
    assert why_no_inputs([NodeTrace("x", "assistant", answer=None)]) == "no usable answers from predecessors"
    budget = NodeTrace("y", "assistant", status="skipped", error="budget: max_calls 1 reached")
    assert why_no_inputs([budget]) == "no usable answers from predecessors (y skipped: budget: max_calls 1 reached)"


def test_a_failed_output_falls_back_to_the_answers_closest_to_it(scripted: ScriptedServer, gateway) -> None:  # type: ignore[no-untyped-def]
    scripted.add_rule(Rule(model="one", replies=["Final answer: 3"]))
    scripted.add_rule(Rule(model="two", replies=["Final answer: 4"]))
    scripted.add_rule(Rule(model="three", status=400))
    text = _three_models(scripted.api_base) + (
        "name: c\nanswer_format: number\nnodes:\n  - {id: a, role: assistant, model: m}\n"
        "  - {id: b, role: critic, model: m2}\n  - {id: c, role: critic, model: m3}\nedges: ['a -> b -> c']\n"
    )
    result = Graph.from_yaml(text, gateway=gateway).run("What is 2 + 2?")
    assert result.answer == "4"  # b's, one step from the output, not a's draft
    assert result.stopped_reason and "output node 'c' failed" in result.stopped_reason


TIE_GRAPH = (
    "name: tie\nmodels: {s: {model: sim/llama-3b}}\nnodes:\n  - {id: a, role: assistant, model: s}\n"
    "  - {id: b, role: assistant, model: s}\n  - {id: v, role: vote}\nedges: ['EDGE']\n"
)


def test_a_vote_tie_between_inputs_finishing_together_goes_to_the_first_listed_node_whatever_the_edge_order() -> None:
    """(A mutation audit.) Mutant `tuple(sorted(predecessors, key=position.__getitem__))` -> `tuple(predecessors)`
    (the order the edge lists them in) survived tests/runtime/test_execute.py: the only test of the ordering
    calls `usable_candidates` directly. On simulated models two calls of one model finish at the same
    modelled time, so a vote's tie goes to whichever input comes first: `b, a -> v` must break it as `a, b
    -> v` does."""
    listed = Graph.from_yaml(TIE_GRAPH.replace("EDGE", "a, b -> v"), store=None)
    reversed_edge = Graph.from_yaml(TIE_GRAPH.replace("EDGE", "b, a -> v"), store=None)
    ties = 0
    for item in range(12):
        question = f"[sim:math#{item:04d}] q"
        one, other = listed.run(question), reversed_edge.run(question)
        by_id = {t.node_id: t for t in other.trace}
        a, b = by_id["a"], by_id["b"]
        assert a.finished_at_s == b.finished_at_s  # the same model: the same modelled time
        if a.answer != b.answer:  # a tie of one vote each
            ties += 1
            assert other.answer == a.answer == one.answer
    assert ties >= 3  # the items above do split (else this test could not fail)


def test_a_result_says_why_it_has_no_answer_and_whether_sim_models_gave_it(
    make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """A one-node graph whose reply held no number returned no answer, no stop and no error (an API
    walk); and `to_dict()` lacked the `simulated` every JSON output of agentscale carries."""
    scripted.add_rule(Rule(replies=["I cannot say."]))
    result = make_graph("name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n").run(
        "2+2?"
    )
    assert result.answer is None and result.stopped_reason is None and result.errors == []
    assert result.why_no_answer == "no reply held an answer in the graph's format"
    assert result.to_dict()["simulated"] is False
    sim = Graph.from_yaml("name: s\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n", store=None)
    answered = sim.run("[sim:math#0001] Solve problem 1.")
    assert answered.to_dict()["simulated"] is True and answered.why_no_answer is None
