"""OpenTelemetry spans for runs, items, nodes and model calls (extra `agentscale[otel]`).

Model calls carry the GenAI semantic convention (`gen_ai.operation.name=chat`, `gen_ai.request.model`,
`gen_ai.usage.input_tokens`/`output_tokens`, ...), nodes are `invoke_agent` spans, and every span
also carries OpenInference's `openinference.span.kind` (LLM, AGENT, CHAIN), so Jaeger, Langfuse and
Phoenix show the tree with tokens and cost without glue. Where spans go is OpenTelemetry's own
configuration: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL`
(`http/protobuf`, the default, or `grpc`), `OTEL_EXPORTER_OTLP_HEADERS`,
`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`. Prompt and answer text are left out unless
`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` (the variable GenAI instrumentations use).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentscale.errors import AgentScaleError
from agentscale.tracing.hooks import CONTENT_KEYS, SpanKind, endpoint_hosts, safe_endpoint, set_observer

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.trace import SpanKind as OTelKind

    from agentscale.tracing.delivery import Delivery
    from agentscale.tracing.recording import RecordedSpan

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
EXPORTERS = ("otlp", "console")
INSTALL_HINT = "pip install 'agentscale[otel]'"
_DEFAULT_OTLP = "http://localhost:4318"  # OpenTelemetry's default OTLP/HTTP endpoint
_DEFAULT_OTLP_GRPC = "http://localhost:4317"  # and its default OTLP/gRPC one
# the OTLP protocols (OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL) and the exporter module of each
_OTLP_EXPORTERS = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}

_OPENINFERENCE_KIND = {"run": "CHAIN", "evaluation": "CHAIN", "item": "CHAIN", "node": "AGENT", "call": "LLM"}
# neutral key -> attribute, per span kind (keys not listed become `agentscale.<key>`)
_CALL_ATTRIBUTES = {
    "route": "gen_ai.request.model",
    "temperature": "gen_ai.request.temperature",
    "max_tokens": "gen_ai.request.max_tokens",
    "top_p": "gen_ai.request.top_p",
    "sample_index": "gen_ai.request.seed",
    "prompt_tokens": "gen_ai.usage.input_tokens",
    "completion_tokens": "gen_ai.usage.output_tokens",
    "usd": "gen_ai.usage.cost",
    "node": "agentscale.node.id",
    "run_id": "agentscale.run.id",
}
_NODE_ATTRIBUTES = {"node": "gen_ai.agent.name", "role": "agentscale.node.role", "run_id": "agentscale.run.id"}
_ITEM_ATTRIBUTES = {"run_id": "agentscale.run.id", "item": "agentscale.item.key", "graph": "agentscale.graph.name"}


def capture_content_requested() -> bool:
    return os.environ.get(CAPTURE_CONTENT_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class OTelObserver:
    """Maps the runtime's spans onto an OpenTelemetry tracer."""

    def __init__(self, tracer: Tracer, *, capture_content: bool | None = None) -> None:
        self.tracer = tracer
        self.capture_content = capture_content_requested() if capture_content is None else capture_content

    @contextmanager
    def span(self, kind: SpanKind, name: str, attributes: Mapping[str, Any]) -> Iterator[_Handle]:
        with self.tracer.start_as_current_span(_span_name(kind, name, attributes), kind=_otel_kind(kind)) as span:
            handle = _Handle(span, kind, self.capture_content)
            handle.set({"_kind": kind, **attributes})
            yield handle

    def replay(self, spans: Sequence[RecordedSpan]) -> None:
        """Spans recorded in another process (:mod:`agentscale.tracing.recording`) as real spans with
        their recorded times; roots go under the current span. The content policy is this observer's."""
        from opentelemetry.trace import Status, StatusCode, set_span_in_context

        made: list[Span] = []
        for record in spans:  # parents come before their children
            context = set_span_in_context(made[record.parent]) if record.parent is not None else None
            span = self.tracer.start_span(
                _span_name(record.kind, record.name, record.attributes),
                context=context,
                kind=_otel_kind(record.kind),
                start_time=record.start_ns,
            )
            _Handle(span, record.kind, self.capture_content).set({"_kind": record.kind, **record.attributes})
            if record.error is not None:
                event = {"exception.type": record.error_type or "Exception", "exception.message": record.error}
                span.add_event("exception", event, timestamp=record.end_ns)
                span.set_status(Status(StatusCode.ERROR, f"{record.error_type}: {record.error}"))
            made.append(span)
        for span, record in reversed(list(zip(made, spans, strict=True))):  # children end first
            span.end(end_time=record.end_ns)


class _Handle:
    def __init__(self, span: Span, kind: SpanKind, capture_content: bool) -> None:
        self.span = span
        self.kind = kind
        self.capture_content = capture_content

    def set(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            if value is None:
                continue
            if key in CONTENT_KEYS:
                if self.capture_content:
                    self._content(key, value)
                continue
            for name, converted in _translate(self.kind, key, value):
                self.span.set_attribute(name, converted)
        if attributes.get("status") in ("failed", "skipped") or attributes.get("error"):
            from opentelemetry.trace import Status, StatusCode

            if attributes.get("status") != "skipped":
                self.span.set_status(Status(StatusCode.ERROR, str(attributes.get("error") or "failed")))

    def _content(self, key: str, value: Any) -> None:
        """Prompts and answers, as the GenAI convention's message attributes and OpenInference's values."""
        if key == "messages":
            parts = [{"role": m.get("role"), "parts": [{"type": "text", "content": m.get("content")}]} for m in value]
            self.span.set_attribute("gen_ai.input.messages", json.dumps(parts))
            self.span.set_attribute("input.value", json.dumps(value))
        elif key == "completion":
            message = {"role": "assistant", "parts": [{"type": "text", "content": value}]}
            self.span.set_attribute("gen_ai.output.messages", json.dumps([message]))
            self.span.set_attribute("output.value", str(value))
        elif key == "question":
            self.span.set_attribute("input.value", str(value))
        else:
            self.span.set_attribute("output.value", str(value))


def _otel_kind(kind: SpanKind) -> OTelKind:
    from opentelemetry import trace

    return trace.SpanKind.CLIENT if kind == "call" else trace.SpanKind.INTERNAL


def _span_name(kind: SpanKind, name: str, attributes: Mapping[str, Any]) -> str:
    if kind == "call":
        return f"chat {attributes.get('route', name)}"
    if kind == "node":
        return f"invoke_agent {name}"
    return f"agentscale.{kind} {name}"


def _translate(kind: SpanKind, key: str, value: Any) -> list[tuple[str, Any]]:
    """One neutral key as span attributes (OpenTelemetry takes str, bool, int, float)."""
    if key == "_kind":
        pairs: list[tuple[str, Any]] = [("openinference.span.kind", _OPENINFERENCE_KIND[kind])]
        if kind == "call":
            pairs.append(("gen_ai.operation.name", "chat"))
        elif kind == "node":
            pairs.append(("gen_ai.operation.name", "invoke_agent"))
        return pairs
    if kind == "call":
        return _call_attribute(key, value)
    table = _NODE_ATTRIBUTES if kind == "node" else _ITEM_ATTRIBUTES
    return [(table.get(key, f"agentscale.{key}"), _plain(value))]


def _call_attribute(key: str, value: Any) -> list[tuple[str, Any]]:
    if key == "route":
        provider = str(value).split("/", 1)[0]
        return [
            ("gen_ai.request.model", value),
            ("gen_ai.response.model", value),
            ("gen_ai.provider.name", provider),
            ("gen_ai.system", provider),  # the older name some backends still read
            ("llm.model_name", value),
        ]
    if key == "endpoint":  # a URL, or a replica set's "a, b" when no one replica answered; never a key
        hosts = endpoint_hosts(value)
        if hosts is not None and len(hosts) == 1:
            _, host, port = hosts[0]
            return [("server.address", host)] + ([("server.port", port)] if port else [])
        return [("agentscale.endpoint", safe_endpoint(value))]
    pairs = [(_CALL_ATTRIBUTES.get(key, f"agentscale.{key}"), _plain(value))]
    if key == "prompt_tokens":
        pairs.append(("llm.token_count.prompt", value))
    elif key == "completion_tokens":
        pairs.append(("llm.token_count.completion", value))
    return pairs


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) else json.dumps(value, default=str)


def install(provider: TracerProvider | None = None, *, capture_content: bool | None = None) -> OTelObserver:
    """Send the runtime's spans to `provider` (default: the global one, e.g. set up by the user's app)."""
    from opentelemetry import trace

    tracer = (provider or trace.get_tracer_provider()).get_tracer("agentscale")
    observer = OTelObserver(tracer, capture_content=capture_content)
    set_observer(observer)
    return observer


def check_exporter(exporter_name: str) -> None:
    """Refuse an exporter that cannot work: an unknown name, OpenTelemetry (or its OTLP exporter) not
    installed, nothing listening where OTLP spans would go. A command checks before it creates its
    run (`optimize --trace bogus` left a run "created (not started)" behind)."""
    if exporter_name not in EXPORTERS:
        raise AgentScaleError(f"unknown trace exporter {exporter_name!r}: use {', '.join(EXPORTERS)} or off")
    if not _installed("opentelemetry.sdk.trace"):
        raise AgentScaleError(f"tracing needs OpenTelemetry: {INSTALL_HINT}")
    if exporter_name == "otlp":
        protocol = _otlp_protocol()
        if not _installed(_OTLP_EXPORTERS[protocol]):
            hint = INSTALL_HINT if protocol == "http/protobuf" else "pip install opentelemetry-exporter-otlp-proto-grpc"
            raise AgentScaleError(f"--trace otlp over {protocol} needs its OTLP exporter: {hint}")
        _require_a_listener(_otlp_traces_endpoint(protocol))


def _otlp_protocol() -> str:
    """The OTLP protocol OpenTelemetry's variables ask for (http/protobuf unless set). Why: with
    `grpc` set, spans went over HTTP to the gRPC port, which the connection check passed, and were
    dropped with exit 0."""
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(variable, "").strip()
        if protocol:
            if protocol not in _OTLP_EXPORTERS:
                raise AgentScaleError(
                    f"--trace otlp: {variable}={protocol!r} is not a protocol agentscale exports: "
                    f"use {' or '.join(_OTLP_EXPORTERS)}"
                )
            return protocol
    return "http/protobuf"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def exporting_provider(exporter_name: str, delivery: Delivery | None = None) -> TracerProvider:
    """A provider that batches spans to OTLP over HTTP or gRPC (configured by OTEL_* variables) or to
    stderr; with a `delivery`, counting the spans ended and those delivered."""
    check_exporter(exporter_name)
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    from agentscale.tracing.delivery import DeliveredSpans, EndedSpans

    exporter: SpanExporter
    if exporter_name == "otlp":
        exporter = importlib.import_module(_OTLP_EXPORTERS[_otlp_protocol()]).OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter(out=sys.stderr)
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "agentscale"}))
    provider = TracerProvider(resource=resource)
    if delivery is not None:
        provider.add_span_processor(EndedSpans(delivery))
        exporter = DeliveredSpans(exporter, delivery)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def delivery_warning(exporter_name: str, delivery: Delivery) -> str | None:
    """What to say when spans did not reach the collector (None when all did)."""
    if not delivery.lost:
        return None
    where = f" at {_shown_endpoint(_otlp_traces_endpoint(_otlp_protocol()))}" if exporter_name == "otlp" else ""
    return (
        f"{delivery.lost} of {delivery.ended} trace spans did not reach the collector{where} (it refused them, "
        "stopped answering, or fell behind); the run's results are stored, only its trace is incomplete"
    )


def _otlp_traces_endpoint(protocol: str) -> str:
    """Where OTLP spans go, as the OpenTelemetry specification resolves it: the traces variable as
    given, else the base variable (or the protocol's default port), over HTTP with /v1/traces."""
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    if protocol == "grpc":
        return os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_OTLP_GRPC
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or _DEFAULT_OTLP
    return base.rstrip("/") + "/v1/traces"


def _require_a_listener(endpoint: str) -> None:
    """Refuse to start when nothing listens where the spans would go: the run went on, the exporter
    retried for 10 s at the end printing transient errors, and the spans were dropped with exit 0."""
    try:  # `http://[::1` raised ValueError from urlsplit itself, a traceback
        parts = urlsplit(endpoint)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is no number, a bracket left open
        parts, port = urlsplit(""), None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise AgentScaleError(
            f"--trace otlp: the traces endpoint {_shown_endpoint(endpoint)!r} is not an http(s) URL such as "
            f"{_DEFAULT_OTLP!r}"
        )
    try:
        socket.create_connection((parts.hostname, port), timeout=3).close()
    except OSError as exc:
        variable = next((v for v in _ENDPOINT_VARIABLES if v in os.environ), None)  # the one that decided
        default = "" if variable else " (OTEL_EXPORTER_OTLP_ENDPOINT is not set: OpenTelemetry's default)"
        raise AgentScaleError(
            f"--trace otlp: nothing answers at {_shown_endpoint(endpoint)}{default}: {exc.strerror or exc}; start a "
            f"collector there (Jaeger, Phoenix, an OpenTelemetry Collector) or set {variable or _ENDPOINT_VARIABLES[1]}"
        ) from None


_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")  # the first set wins


def _shown_endpoint(endpoint: str) -> str:
    """An endpoint as an error may print it: a user and password, or a query (a token), hidden (they
    went into the message, and from there into CI logs)."""
    head, at, host = endpoint.partition("@")
    scheme, slashes, _ = head.partition("//")
    shown = f"{scheme}{slashes}***@{host}" if at and slashes else endpoint
    before, question, _ = shown.partition("?")
    return f"{before}?***" if question else shown


@contextmanager
def exporting(exporter_name: str, delivery: Delivery | None = None) -> Iterator[TracerProvider]:
    """Trace everything run inside the block, and flush the spans when it ends (even on errors);
    `delivery` counts what reached the collector once the block is over."""
    provider = exporting_provider(exporter_name, delivery)
    previous = set_observer(None)
    install(provider)
    try:
        yield provider
    finally:
        set_observer(previous)
        provider.shutdown()
