"""Tracing with the `ray` executor: items answered by worker actors give the same span tree as the
local executor — item → node → model call under the driver's run span, with the workers' real times
and the same GenAI attributes, no prompt text and no key — and the driver's cache probe adds none.

In a module of its own: the OpenTelemetry observer lives in the driver only (the workers record
plain data), and the key must be in the environment before Ray starts its workers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.evaluate.engine import EvalConfig, EvalSummary, Evaluation
from agentscale.executors import LocalExecutor
from agentscale.executors.ray_executor import RayExecutor
from agentscale.testing import ScriptedServer
from agentscale.tracing import hooks
from tests.tracing.test_otel import GRAPH, SECRET, everything
from tests.tracing.test_recording import otel_exporting, shape

ITEMS = 3
CALL = "chat hosted_vllm/scripted"


@pytest.fixture(scope="module", autouse=True)
def _key_for_the_workers() -> Iterator[None]:
    """The graph's `api_key_env`: workers read it from their own environment, inherited when Ray starts."""
    previous = os.environ.get("TRACE_TEST_KEY")
    os.environ["TRACE_TEST_KEY"] = SECRET
    yield
    if previous is None:
        os.environ.pop("TRACE_TEST_KEY", None)
    else:
        os.environ["TRACE_TEST_KEY"] = previous


@pytest.fixture(autouse=True)
def _no_observer() -> Iterator[None]:
    previous = hooks.set_observer(None)
    yield
    hooks.set_observer(previous)


def _questions(path: Path) -> Path:
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + 20?", "answer": str(i + 20)}) for i in range(ITEMS)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _gateway(path: Path) -> Gateway:
    return Gateway(Store(path), GatewaySettings(max_retries=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=20))


async def _traced_eval(
    text: str, task: Path, gateway: Gateway, executor: Any
) -> tuple[EvalSummary, tuple[ReadableSpan, ...]]:
    """An eval inside a run span, as `agentscale eval --trace` runs it."""
    with otel_exporting(capture=False) as exporter:
        evaluation = Evaluation(Graph.from_yaml(text, gateway=gateway), EvalConfig(task=str(task)), executor=executor)
        with hooks.span("run", "eval", {"kind": "eval"}):
            summary = await evaluation.run()
        return summary, exporter.get_finished_spans()


def _inside(child: ReadableSpan, parent: ReadableSpan) -> bool:
    assert child.start_time is not None and child.end_time is not None
    assert parent.start_time is not None and parent.end_time is not None
    return parent.start_time <= child.start_time <= child.end_time <= parent.end_time


async def test_items_on_ray_workers_give_the_local_span_tree_with_real_times(
    tmp_path: Path, scripted: ScriptedServer, ray_executor: RayExecutor
) -> None:
    task = _questions(tmp_path / "q.jsonl")
    text = GRAPH.format(api_base=scripted.api_base)  # s1, s2 -> out (a fuser), key from TRACE_TEST_KEY
    scripted.latency_s = 0.05  # every model call takes at least this long, on the worker
    _, local = await _traced_eval(text, task, _gateway(tmp_path / "local.db"), LocalExecutor())
    ray_gateway = _gateway(tmp_path / "ray.db")
    results, in_driver = ray_executor.stats.results, ray_executor.stats.in_driver
    summary, spans = await _traced_eval(text, task, ray_gateway, ray_executor)
    assert summary.n == ITEMS and ray_executor.stats.results - results == ITEMS
    assert ray_executor.stats.in_driver == in_driver  # every item was answered by a worker

    # the same tree with the same attributes as the local executor's: 1 run, per item 1 + 3 + 3 spans
    assert shape(spans) == shape(local) and len(spans) == 1 + 7 * ITEMS
    (run,) = [s for s in spans if s.name == "agentscale.run eval"]
    by_id = {s.context.span_id: s for s in spans}
    assert len({s.context.trace_id for s in spans}) == 1
    pids = set(ray_executor.worker_pids())
    stored = {(c.item_key, c.node_id): c for c in ray_gateway.store.node_calls(summary.run_id)}  # type: ignore[union-attr]
    for i in range(ITEMS):
        (item,) = [s for s in spans if s.name == f"agentscale.item q{i}"]
        attributes = item.attributes or {}
        assert item.parent is not None and item.parent.span_id == run.context.span_id and _inside(item, run)
        assert attributes["agentscale.worker_pid"] in pids and "agentscale.clock_shift_ns" not in attributes
        nodes = [s for s in spans if s.parent is not None and s.parent.span_id == item.context.span_id]
        assert sorted(s.name for s in nodes) == ["invoke_agent out", "invoke_agent s1", "invoke_agent s2"]
        node_spans = {s.context.span_id: s for s in nodes}
        calls = [s for s in spans if s.parent is not None and s.parent.span_id in node_spans]
        assert len(calls) == 3 and all(c.name == CALL for c in calls)
        for call in calls:
            node = node_spans[call.parent.span_id]  # type: ignore[union-attr]
            row = stored[(f"q{i}", (node.attributes or {})["gen_ai.agent.name"])]
            call_attributes = call.attributes or {}
            assert call_attributes["gen_ai.usage.input_tokens"] == row.prompt_tokens > 0
            assert call_attributes["gen_ai.usage.output_tokens"] == row.completion_tokens > 0
            assert call_attributes["gen_ai.request.model"] == "hosted_vllm/scripted"
            assert call_attributes["server.address"] == "127.0.0.1" and call_attributes["agentscale.cached"] is False
            # the worker's times: the call really took the server's latency, inside its node and item
            assert _inside(call, node) and _inside(node, item)
            assert call.end_time - call.start_time >= 0.05e9  # type: ignore[operator]
        out = next(s for s in nodes if s.name == "invoke_agent out")
        firsts = [s for s in nodes if s is not out]
        assert all(s.end_time <= out.start_time for s in firsts)  # type: ignore[operator]  # the fuser waited
    assert all(by_id[s.parent.span_id] for s in spans if s.parent is not None)  # no span points outside the trace
    dump = everything(spans)
    assert SECRET not in dump and "TRACE_TEST_KEY" not in dump
    assert "What is 1 + 20?" not in dump and "Final answer" not in dump  # no content unless asked for


async def test_the_cache_probe_adds_no_spans(
    tmp_path: Path, scripted: ScriptedServer, ray_executor: RayExecutor
) -> None:
    task = _questions(tmp_path / "q.jsonl")
    gateway = _gateway(tmp_path / "c.db")
    # one node like the graph's first ones, run locally: its answers are cached, so the executor probes
    # each item in the driver (a dry run of the graph) before shipping it with the entry it may replay
    first = (
        GRAPH.format(api_base=scripted.api_base).split("nodes:")[0]
        + "nodes:\n  - {id: s1, role: assistant, model: m}\n"
    )
    await Evaluation(Graph.from_yaml(first, gateway=gateway), EvalConfig(task=str(task))).run()
    in_driver = ray_executor.stats.in_driver
    probes = ray_executor.stats.probe_s
    summary, spans = await _traced_eval(GRAPH.format(api_base=scripted.api_base), task, gateway, ray_executor)
    assert ray_executor.stats.probe_s > probes and ray_executor.stats.in_driver == in_driver  # probed, then shipped
    assert all(i.usage.cached_calls == 1 and i.usage.calls == 2 for i in summary.items)
    items = [s for s in spans if s.name.startswith("agentscale.item ")]
    assert sorted(s.name for s in items) == [f"agentscale.item q{i}" for i in range(ITEMS)]  # one each, not two
    assert all("agentscale.worker_pid" in (s.attributes or {}) for s in items)
    assert len([s for s in spans if s.name.startswith("invoke_agent ")]) == 3 * ITEMS
    calls = [s for s in spans if s.name == CALL]
    assert sorted(bool((s.attributes or {})["agentscale.cached"]) for s in calls) == [False] * 6 + [True] * 3
