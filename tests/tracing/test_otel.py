"""OpenTelemetry spans: run → item → node → model call with the GenAI convention's attributes, no key,
no prompt text unless content capture is asked for; `--trace otlp` delivers them to a real OTLP/HTTP
endpoint configured by the standard OTEL_* variables."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.graphs.located import load_located
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import space_from_data
from agentscale.testing import Rule, ScriptedServer
from agentscale.tracing import hooks, otel
from tests.optimize.test_cli_sim import SPACE

SECRET = "sk-test-0123456789abcdef-never-in-a-span"
GRAPH = """\
name: trio
models:
  m: {{model: hosted_vllm/scripted, api_base: "{api_base}", api_key_env: TRACE_TEST_KEY}}
nodes:
  - {{id: s1, role: assistant, model: m}}
  - {{id: s2, role: assistant, model: m}}
  - {{id: out, role: fuser, model: m}}
edges:
  - s1, s2 -> out
"""


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    monkeypatch.setenv("TRACE_TEST_KEY", SECRET)
    previous = hooks.set_observer(None)
    yield InMemorySpanExporter()
    hooks.set_observer(previous)


def by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans}


def everything(spans: tuple[ReadableSpan, ...]) -> str:
    return json.dumps([{**dict(s.attributes or {}), "name": s.name} for s in spans], default=str)


async def run_trio(scripted: ScriptedServer, gateway: Gateway, exporter: InMemorySpanExporter, *, capture: bool):  # type: ignore[no-untyped-def]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider, capture_content=capture)
    graph = Graph.from_yaml(GRAPH.format(api_base=scripted.api_base), gateway=gateway)
    result = await graph.arun("What is 2 + 3?")
    hooks.set_observer(None)
    return result, exporter.get_finished_spans()


async def test_a_three_node_graph_gives_one_span_tree_with_tokens_and_no_key(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    result, spans = await run_trio(scripted, gateway, exporter, capture=False)
    assert result.answer == "5"
    named = by_name(spans)
    item = named["agentscale.item 0"]
    nodes = [named[f"invoke_agent {n}"] for n in ("s1", "s2", "out")]
    calls = [s for s in spans if s.name == "chat hosted_vllm/scripted"]
    assert len(spans) == 7 and len(calls) == 3
    assert all(n.parent is not None and n.parent.span_id == item.context.span_id for n in nodes)
    node_ids = {n.context.span_id: n.attributes["gen_ai.agent.name"] for n in nodes}  # type: ignore[index]
    assert sorted(node_ids[c.parent.span_id] for c in calls) == ["out", "s1", "s2"]  # type: ignore[union-attr]
    assert all(s.context.trace_id == item.context.trace_id for s in spans)
    by_node = {t.node_id: t for t in result.trace}
    for call in calls:
        attributes = call.attributes or {}
        node = node_ids[call.parent.span_id]  # type: ignore[union-attr]
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.request.model"] == "hosted_vllm/scripted"
        assert attributes["gen_ai.provider.name"] == "hosted_vllm"
        assert attributes["gen_ai.usage.input_tokens"] == by_node[node].prompt_tokens > 0
        assert attributes["gen_ai.usage.output_tokens"] == by_node[node].completion_tokens > 0
        assert attributes["openinference.span.kind"] == "LLM" and attributes["server.address"] == "127.0.0.1"
        assert attributes["agentscale.cached"] is False
    assert item.attributes["agentscale.prompt_tokens"] == result.usage.prompt_tokens  # type: ignore[index]
    dump = everything(spans)
    assert SECRET not in dump and "TRACE_TEST_KEY" not in dump
    assert "What is 2 + 3?" not in dump and "Final answer" not in dump  # no content unless asked


async def test_a_failed_calls_span_names_its_endpoint_and_attempts(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    """A call that failed (HTTP 503, after its retries) had an error span without `server.address`,
    `server.port` or `agentscale.attempts`: an answered call's span names them, and a failed one is
    when a user most needs to know which endpoint it was (a new user's walk)."""
    scripted.add_rule(Rule(model="scripted", status=503))
    _, spans = await run_trio(scripted, gateway, exporter, capture=False)
    failed = [s for s in spans if s.name == "chat hosted_vllm/scripted"]
    assert failed and all(not s.status.is_ok for s in failed)
    port = int(scripted.api_base.rsplit(":", 1)[1].split("/")[0])
    for call in failed:
        attributes = call.attributes or {}
        assert (attributes["server.address"], attributes["server.port"]) == ("127.0.0.1", port)
        assert attributes["agentscale.attempts"] == 3  # the gateway's 2 retries


async def test_content_capture_adds_prompts_and_completions(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    _, spans = await run_trio(scripted, gateway, exporter, capture=True)
    call = next(s for s in spans if s.name.startswith("chat "))
    messages = json.loads(str((call.attributes or {})["gen_ai.input.messages"]))
    assert any("What is 2 + 3?" in part["content"] for m in messages for part in m["parts"])
    assert "Final answer: 5" in str((call.attributes or {})["gen_ai.output.messages"])
    assert SECRET not in everything(spans)


async def test_cache_hits_are_spans_too(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    await run_trio(scripted, gateway, exporter, capture=False)
    exporter.clear()
    _, spans = await run_trio(scripted, gateway, exporter, capture=False)
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == 3 and all((s.attributes or {})["agentscale.cached"] is True for s in calls)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP trace endpoint: decodes each export request's protobuf body."""

    received: ClassVar[list[ExportTraceServiceRequest]]  # set per server by the fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        if self.path == "/v1/traces":
            self.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def collector() -> Iterator[tuple[str, list[ExportTraceServiceRequest]]]:
    received: list[ExportTraceServiceRequest] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_eval_trace_otlp_reaches_an_otlp_endpoint(  # type: ignore[no-untyped-def]
    tmp_path: Path, scripted: ScriptedServer, collector, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    endpoint, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentscale-test")
    monkeypatch.setenv("TRACE_TEST_KEY", SECRET)
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
    graph = tmp_path / "trio.yaml"
    graph.write_text(GRAPH.format(api_base=scripted.api_base))
    data = tmp_path / "items.jsonl"
    data.write_text(
        "\n".join(json.dumps({"id": f"i{i}", "question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(2))
    )
    assert main(["eval", str(graph), "--task", str(data), "--trace", "otlp", "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    spans = [
        (resource.resource, span)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = [span.name for _, span in spans]
    assert names.count(f"agentscale.run {run_id}") == 1
    (root,) = [span for _, span in spans if span.name == f"agentscale.run {run_id}"]
    flags = {a.key: a.value.bool_value for a in root.attributes if a.value.HasField("bool_value")}
    assert flags.get("agentscale.simulated") is False  # a collector's view says whether figures are real
    assert names.count("agentscale.item i0") == names.count("agentscale.item i1") == 1
    assert names.count("chat hosted_vllm/scripted") == 6 and names.count("invoke_agent out") == 2
    service = {a.value.string_value for resource, _ in spans for a in resource.attributes if a.key == "service.name"}
    assert service == {"agentscale-test"}
    assert len({span.trace_id for _, span in spans}) == 1  # one trace per run
    assert SECRET.encode() not in b"".join(r.SerializeToString() for r in received)


def test_trace_otlp_over_grpc_reaches_a_grpc_collector(  # type: ignore[no-untyped-def]
    tmp_path: Path, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """`OTEL_EXPORTER_OTLP_PROTOCOL=grpc` was ignored: spans went over HTTP to the gRPC port (the
    connection check passed) and were dropped with exit 0 (the tracing audit). An unknown protocol
    is refused before the run."""
    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[ExportTraceServiceRequest] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request, context):  # type: ignore[no-untyped-def]  # gRPC's name
            received.append(request)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        monkeypatch.setenv("TRACE_TEST_KEY", SECRET)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
        graph = tmp_path / "trio.yaml"
        graph.write_text(GRAPH.format(api_base=scripted.api_base))
        assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 0
    finally:
        server.stop(None)
    names = [
        span.name for request in received for r in request.resource_spans for s in r.scope_spans for span in s.spans
    ]
    assert names.count("chat hosted_vllm/scripted") == 3 and any(name.startswith("agentscale.run ") for name in names)
    capsys.readouterr()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not a protocol agentscale exports" in err


def test_trace_otlp_with_nothing_listening_stops_before_the_run(  # type: ignore[no-untyped-def]
    tmp_path: Path, scripted: ScriptedServer, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run went on, the exporter retried for 10 s printing transient errors, and the spans were
    dropped with exit 0."""
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
    graph = tmp_path / "trio.yaml"
    graph.write_text(GRAPH.format(api_base=scripted.api_base))
    assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"--trace otlp: nothing answers at http://127.0.0.1:{port}/v1/traces" in err and "Traceback" not in err
    assert not scripted.completion_requests  # refused before any call was paid
    for endpoint in ("localhost:4318", "http://localhost:notaport", "http://[::1"):  # port 80; tracebacks
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 1
        err = " ".join(capsys.readouterr().err.split())
        assert f"the traces endpoint '{endpoint}/v1/traces' is not an http(s) URL" in err and "Traceback" not in err
    # a password or a token in the endpoint went into the message, and so into CI logs (a walk)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://user:sekrit@127.0.0.1:{port}")
    assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"nothing answers at http://***@127.0.0.1:{port}/v1/traces" in err and "sekrit" not in err
    # the traces variable decided where spans go: the message named the other one to set
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{port}/v1/traces?token=sekrit")
    assert main(["run", str(graph), "-q", "What is 1 + 1?", "--trace", "otlp"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "or set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" in err and "sekrit" not in err and "/v1/traces?***" in err


def test_trace_option_refuses_unknown_exporters(tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: openai/gpt-4o-mini}\n")
    assert main(["run", str(graph), "-q", "hi", "--trace", "zipkin"]) == 1
    err = capsys.readouterr().err
    assert "unknown trace exporter 'zipkin'" in err and "otlp" in err and "Traceback" not in err


CEO_GRAPH = """\
name: led
models:
  m: {{model: hosted_vllm/scripted, api_base: "{api_base}"}}
  boss: {{model: hosted_vllm/ceo, api_base: "{api_base}"}}
nodes:
  - {{id: s1, role: assistant, model: m}}
  - {{id: s2, role: assistant, model: m}}
  - {{id: out, role: vote}}
edges:
  - s1, s2 -> out
answer_format: number
coordinator: {{model: boss, max_rounds: 2}}
"""


async def test_a_ceo_led_discussion_gives_a_node_span_per_worker_and_ceo_call(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    decision = {"decision": "stop", "agents": 2, "direction": "", "max_tokens": 64}
    scripted.add_rule(Rule(model="ceo", replies=[json.dumps(decision)]))
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider, capture_content=False)
    result = await Graph.from_yaml(CEO_GRAPH.format(api_base=scripted.api_base), gateway=gateway).arun("What is 2 + 3?")
    hooks.set_observer(None)
    spans = exporter.get_finished_spans()
    item = by_name(spans)["agentscale.item 0"]
    nodes = {s.attributes["gen_ai.agent.name"]: s for s in spans if s.name.startswith("invoke_agent ")}  # type: ignore[index]
    assert set(nodes) == {t.node_id for t in result.trace} == {"r1.ceo", "r1.s1", "r1.s2", "r1.out", "r2.ceo"}
    assert all(s.parent is not None and s.parent.span_id == item.context.span_id for s in nodes.values())
    by_node = {t.node_id: t for t in result.trace}
    for node_id in ("r1.ceo", "r2.ceo", "r1.s1"):
        assert nodes[node_id].attributes["agentscale.completion_tokens"] == by_node[node_id].completion_tokens > 0  # type: ignore[index]
    calls = [s for s in spans if s.name.startswith("chat ")]
    assert len(calls) == 4 and all(c.parent is not None and c.parent.span_id != item.context.span_id for c in calls)


async def test_unusable_ceo_replies_are_error_spans_that_name_their_attempt(scripted, gateway, exporter) -> None:  # type: ignore[no-untyped-def]
    """The CEO's reply was read after its span had closed: three unusable replies were three
    identical spans, status OK, and the decision and the workers' answers were never on a span (the
    tracing audit)."""
    from opentelemetry.trace import StatusCode

    scripted.add_rule(Rule(model="ceo", replies=["I think we should go on."]))
    otel.install(_in_memory(exporter), capture_content=True)
    events = []
    graph = Graph.from_yaml(CEO_GRAPH.format(api_base=scripted.api_base), gateway=gateway)
    async for event in graph.astream("What is 2 + 3?"):
        events.append(event)
    hooks.set_observer(None)
    spans = exporter.get_finished_spans()
    ceo = [s for s in spans if s.name == "invoke_agent r1.ceo"]
    assert [s.status.status_code for s in ceo] == [StatusCode.ERROR] * 3
    errors = [str(s.attributes["agentscale.error"]) for s in ceo]  # type: ignore[index]
    assert [e.split(":")[0] for e in errors] == ["attempt 1", "attempt 2", "attempt 3"]
    finished = [e.trace for e in events if getattr(e, "kind", None) == "node_finished" and e.node_id == "r1.ceo"]
    assert [t.error.split(":")[0] for t in finished] == ["attempt 1", "attempt 2", "attempt 3"]
    worker = next(s for s in spans if s.name == "invoke_agent r1.s1")
    assert any("5" in str(value) for key, value in worker.attributes.items() if "output" in key or "answer" in key)  # type: ignore[union-attr]


def _in_memory(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def test_a_skipped_node_is_not_an_error_and_a_failed_one_is(exporter: InMemorySpanExporter) -> None:
    """A node skipped by its budget or a failed input is the graph working as configured: marked ERROR,
    every budgeted run would show red in Jaeger or Phoenix beside the real failures."""
    from opentelemetry.trace import StatusCode

    otel.install(_in_memory(exporter), capture_content=False)
    with hooks.span("node", "skipped", {"role": "critic"}) as handle:
        handle.set({"status": "skipped", "error": "budget: max_tokens"})
    with hooks.span("node", "failed", {"role": "critic"}) as handle:
        handle.set({"status": "failed", "error": "timeout"})
    with hooks.span("node", "done", {"role": "critic"}) as handle:
        handle.set({"status": "ok"})
    hooks.set_observer(None)
    status = {s.name: (s.status.status_code, s.status.description) for s in exporter.get_finished_spans()}
    assert status == {
        "invoke_agent skipped": (StatusCode.UNSET, None),
        "invoke_agent failed": (StatusCode.ERROR, "timeout"),
        "invoke_agent done": (StatusCode.UNSET, None),
    }


def test_model_calls_are_client_spans_and_the_rest_internal(exporter: InMemorySpanExporter) -> None:
    """The GenAI convention makes a model call a CLIENT span (backends draw it as a remote call and
    compute its service map from it); nodes, items and runs are work inside the process."""
    from opentelemetry.trace import SpanKind

    otel.install(_in_memory(exporter), capture_content=False)
    with hooks.span("item", "0", {}), hooks.span("node", "a", {}), hooks.span("call", "m", {"route": "openai/x"}):
        pass
    hooks.set_observer(None)
    kinds = {s.name: s.kind for s in exporter.get_finished_spans()}
    assert kinds == {
        "chat openai/x": SpanKind.CLIENT,
        "invoke_agent a": SpanKind.INTERNAL,
        "agentscale.item 0": SpanKind.INTERNAL,
    }


@pytest.mark.parametrize(
    ("endpoint", "attributes"),
    [
        ("http://127.0.0.1:8000/v1", {"server.address": "127.0.0.1", "server.port": 8000}),
        ("http://[::1]:8000/v1", {"server.address": "::1", "server.port": 8000}),
        ("http://a:8000/v1, http://b:8001/v1", {"agentscale.endpoint": "http://a:8000, http://b:8001"}),
        ("https://sk-secret@proxy.internal/v1?key=sk-secret", {"server.address": "proxy.internal"}),
        ("sk-secret@proxy.internal", {"agentscale.endpoint": "<endpoint>"}),
        ("cache", {"agentscale.endpoint": "cache"}),
    ],
)
def test_a_calls_endpoint_becomes_its_server_and_never_carries_a_key(
    exporter: InMemorySpanExporter, endpoint: str, attributes: dict[str, object]
) -> None:
    """One URL is the span's server; a replica set's list (a failed call no replica answered) is named
    whole. A key an api_base holds in its user part or query stays out, as in the recorded spans a
    Ray worker ships: in-process tracing exported "sk-secret@proxy.internal" as it was."""
    otel.install(_in_memory(exporter), capture_content=False)
    with hooks.span("call", "m", {"route": "openai/x", "endpoint": endpoint}):
        pass
    hooks.set_observer(None)
    (call,) = exporter.get_finished_spans()
    found = {k: v for k, v in call.attributes.items() if k.startswith("server.") or k == "agentscale.endpoint"}  # type: ignore[union-attr]
    assert found == attributes
    assert "sk-secret" not in everything(exporter.get_finished_spans())


@pytest.mark.parametrize(
    ("value", "captured"),
    [("true", True), ("TRUE", True), (" 1 ", True), ("yes", True), ("on", True), ("false", False), ("", False)],
)
def test_content_capture_follows_the_genai_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, captured: bool
) -> None:
    """`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` is how the GenAI instrumentations are
    told to record prompts: a user setting it (the documented spelling) and seeing none was lost."""
    monkeypatch.setenv(otel.CAPTURE_CONTENT_ENV, value)
    assert otel.capture_content_requested() is captured
    assert otel.OTelObserver(TracerProvider().get_tracer("t")).capture_content is captured


def test_exporting_restores_the_observer_it_replaced_and_names_the_service(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--trace console` inside a process that already traces (a notebook with its own observer) must
    give that observer back when the command ends; and spans without OTEL_SERVICE_NAME are filed
    under `agentscale`, not OpenTelemetry's `unknown_service`, where nobody looks for them."""
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    own = otel.OTelObserver(_in_memory(exporter).get_tracer("mine"))
    hooks.set_observer(own)
    with otel.exporting("console") as provider:
        assert hooks.installed_observer() is not own
        assert provider.resource.attributes["service.name"] == "agentscale"
    assert hooks.installed_observer() is own
    monkeypatch.setenv("OTEL_SERVICE_NAME", "my-app")
    with otel.exporting("console") as provider:
        assert provider.resource.attributes["service.name"] == "my-app"


_OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_traces_variables_win_over_the_general_ones(collector, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """OpenTelemetry's rule: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as given) and
    ..._TRACES_PROTOCOL override the general variables. Probing the general endpoint refused a
    run whose traces go to a collector that is listening; reading the general protocol first
    refused (or sent over the wrong protocol) what the traces variable set right."""
    endpoint, _ = collector
    for variable in _OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{_dead_port()}")  # e.g. for metrics
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{endpoint}/v1/traces")
    otel.check_exporter("otlp")  # the traces endpoint answers: no refusal
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")  # not one agentscale exports...
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")  # ...but the traces one is
    otel.check_exporter("otlp")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    with pytest.raises(AgentScaleError, match="is not a protocol agentscale exports"):
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        otel.check_exporter("otlp")


def test_grpc_without_an_endpoint_goes_to_the_grpc_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTLP/gRPC's default endpoint is localhost:4317 (4318 is OTLP/HTTP's): a user with a gRPC
    collector on its default port and only OTEL_EXPORTER_OTLP_PROTOCOL=grpc set must not be told
    that nothing answers at 4318 (or have the check pass because an HTTP collector listens there)."""
    for variable in _OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert otel._otlp_traces_endpoint("grpc") == "http://localhost:4317"
    assert otel._otlp_traces_endpoint("http/protobuf") == "http://localhost:4318/v1/traces"


def test_node_and_call_spans_carry_the_kinds_backends_group_by(exporter: InMemorySpanExporter) -> None:
    """Phoenix files spans by `openinference.span.kind` (AGENT for a node, LLM for a call) and reads
    token counts from `llm.token_count.*`; GenAI backends read `gen_ai.operation.name`."""
    hooks.set_observer(None)
    otel.install(_in_memory(exporter), capture_content=False)
    with hooks.span("node", "a", {"role": "assistant"}), hooks.span("call", "m/x", {"route": "m/x"}) as call:
        call.set({"prompt_tokens": 11, "completion_tokens": 3})
    hooks.set_observer(None)
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    node, chat = spans["invoke_agent a"], spans["chat m/x"]
    assert (node["openinference.span.kind"], node["gen_ai.operation.name"]) == ("AGENT", "invoke_agent")
    assert (chat["openinference.span.kind"], chat["gen_ai.operation.name"]) == ("LLM", "chat")
    assert (chat["llm.token_count.prompt"], chat["llm.token_count.completion"]) == (11, 3)
    assert (chat["gen_ai.usage.input_tokens"], chat["gen_ai.usage.output_tokens"]) == (11, 3)


async def test_an_optimizations_items_sit_under_an_evaluation_span_naming_its_trial_and_stage(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    """A researcher reading an optimization's trace must tell the pilot's items from the crowning
    race's: each scored graph is an evaluation span (trial, stage, graph) over its items (SIMULATED)."""
    otel.install(_in_memory(exporter), capture_content=False)
    space = space_from_data(load_located(SPACE, "space.yaml"), "space.yaml")
    store = Store(tmp_path / "o.db")
    try:
        await Optimization(space, Gateway(store, GatewaySettings(max_retries=0)), space_text=SPACE).run()
    finally:
        hooks.set_observer(None)
        store.close()
    spans = exporter.get_finished_spans()
    evaluations = {s.context.span_id: s for s in spans if s.name.startswith("agentscale.evaluation ")}
    stages = {str((s.attributes or {})["agentscale.stage"]) for s in evaluations.values()}
    assert stages == {"single calls", "pilot", "search", "crowning", "test"}
    for evaluation in evaluations.values():
        attributes = dict(evaluation.attributes or {})
        assert evaluation.name == f"agentscale.evaluation t{attributes['agentscale.trial']}"
        assert attributes["openinference.span.kind"] == "CHAIN" and attributes["agentscale.graph.name"]
    items = [s for s in spans if s.name.startswith("agentscale.item ")]
    assert items and all(s.parent is not None and s.parent.span_id in evaluations for s in items)
    for span_id, evaluation in evaluations.items():  # its items and its correct count agree
        attributes = dict(evaluation.attributes or {})
        own = [s for s in items if s.parent is not None and s.parent.span_id == span_id]
        assert len(own) == attributes["agentscale.items"] >= attributes["agentscale.correct"], evaluation.name


class _RefusingCollector(BaseHTTPRequestHandler):
    """A collector that has gone wrong: it answers every export with 501."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(501)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_spans_a_collector_refused_are_counted_and_said_at_the_end(  # type: ignore[no-untyped-def]
    tmp_path: Path, scripted: ScriptedServer, collector, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """A collector that died mid-run lost the spans with exit 0 and only OpenTelemetry's retry lines
    (15 of about 1,051 spans arrived); the run's results were fine, its trace silently not."""
    for variable in _OTEL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingCollector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "t.db"))
        monkeypatch.setenv("TRACE_TEST_KEY", SECRET)
        graph = tmp_path / "trio.yaml"
        graph.write_text(GRAPH.format(api_base=scripted.api_base))
        assert main(["run", str(graph), "-q", "What is 2 + 3?", "--trace", "otlp", "--json"]) == 0
    finally:
        server.shutdown()
        server.server_close()
    captured = capsys.readouterr()
    assert json.loads(captured.out)["answer"] == "5"  # the run itself is whole
    # run, item, 3 nodes, 3 calls: 8 spans, none delivered
    assert "8 of 8 trace spans did not reach the collector at http://127.0.0.1:" in " ".join(captured.err.split())
    endpoint, received = collector  # a collector that answers: nothing to say
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    assert main(["run", str(graph), "-q", "What is 2 + 3?", "--trace", "otlp", "--json"]) == 0
    assert received and "did not reach the collector" not in capsys.readouterr().err


def test_an_interrupted_commands_root_span_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """A Ctrl-C'd optimization's root span ended with status UNSET and no word of the stop (the
    sim/tracing walk's F2); it carries `agentscale.interrupted` now, and the run's simulated flag."""
    from agentscale.cli.tracing import traced_run

    with pytest.raises(KeyboardInterrupt), traced_run("console", "optimize", "r1", {"simulated": True}):
        raise KeyboardInterrupt
    (root,) = [s for s in _console_spans(capsys.readouterr().err) if s["name"] == "agentscale.run r1"]
    assert root["attributes"]["agentscale.interrupted"] is True and root["attributes"]["agentscale.simulated"] is True


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The spans OpenTelemetry's console exporter wrote (one JSON object each)."""
    decoder, spans, position = json.JSONDecoder(), [], text.find("{")
    while position != -1:
        span, end = decoder.raw_decode(text, position)
        spans.append(span)
        position = text.find("{", end)
    return spans
