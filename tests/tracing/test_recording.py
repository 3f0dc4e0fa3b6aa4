"""Spans recorded as plain data (what a Ray worker ships back) and replayed into the driver's observer:
the same tree and attributes as spans made in place, with the recorded times, no text unless content
is captured, never a key; a recording from a skewed clock is moved inside the window it ran in."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentscale import Gateway, Graph, Store
from agentscale.testing import ScriptedServer
from agentscale.tracing import hooks, otel
from agentscale.tracing.recording import RecordedSpan, Recorder, RecordRequest, record_request, recording, replay
from tests.tracing.test_otel import GRAPH, SECRET, everything

QUESTION = "What is 2 + 3?"
VARYING = {"agentscale.latency_s", "agentscale.run.id", "agentscale.clock_shift_ns", "agentscale.worker_pid"}


def shape(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[tuple[str, str | None, tuple[str, ...]]]:
    """Each span's name, its parent's name and its attribute keys (what must not depend on where it ran)."""
    names = {span.context.span_id: span.name for span in spans}
    return sorted(
        (
            span.name,
            names.get(span.parent.span_id) if span.parent is not None else None,
            tuple(sorted(set(span.attributes or {}) - VARYING)),
        )
        for span in spans
    )


@pytest.fixture
def no_observer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TRACE_TEST_KEY", SECRET)
    previous = hooks.set_observer(None)
    yield
    hooks.set_observer(previous)


@contextmanager
def otel_exporting(capture: bool = False) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel.install(provider, capture_content=capture)
    try:
        yield exporter
    finally:
        hooks.set_observer(None)


async def _recorded_trio(scripted: ScriptedServer, gateway: Gateway, *, content: bool) -> list[RecordedSpan]:
    graph = Graph.from_yaml(GRAPH.format(api_base=scripted.api_base), gateway=gateway)
    with recording(RecordRequest(content=content)) as work:
        result = await graph.arun(QUESTION, item_key="i0")
    assert result.answer == "5"
    return pickle.loads(pickle.dumps(work.spans()))  # plain data: what Ray ships


async def test_replayed_spans_are_the_tree_made_in_place_with_the_recorded_times(  # type: ignore[no-untyped-def]
    scripted, gateway, no_observer, tmp_path
) -> None:
    recorded = await _recorded_trio(scripted, gateway, content=False)
    assert [s.kind for s in recorded].count("call") == 3 and recorded[0].kind == "item" and recorded[0].parent is None
    assert all(s.parent is not None and s.parent < i for i, s in enumerate(recorded) if i > 0)
    assert all(s.start_ns <= s.end_ns for s in recorded)
    text = repr(recorded)
    assert QUESTION not in text and "Final answer" not in text and SECRET not in text  # no content, no key
    hooks.set_observer(None)  # the recorder `recording` installed: the driver process has none

    with otel_exporting() as exporter:  # the driver: its run span, then the worker's spans replayed under it
        with hooks.span("run", "r1", {"kind": "eval"}):
            assert replay(recorded, attributes={"worker_pid": 1234}) == 0
        replayed = exporter.get_finished_spans()
    fresh = Gateway(Store(tmp_path / "in-place.db"), gateway.settings)  # not answered from the first run's cache
    with otel_exporting() as exporter:  # the same item run in place (the local executor)
        with hooks.span("run", "r1", {"kind": "eval"}):
            await Graph.from_yaml(GRAPH.format(api_base=scripted.api_base), gateway=fresh).arun(QUESTION, item_key="i0")
        in_place = exporter.get_finished_spans()

    assert shape(replayed) == shape(in_place) and len(replayed) == 8
    run = next(s for s in replayed if s.name == "agentscale.run r1")
    item = next(s for s in replayed if s.name == "agentscale.item i0")
    assert item.parent is not None and item.parent.span_id == run.context.span_id
    assert len({s.context.trace_id for s in replayed}) == 1
    assert (item.attributes or {})["agentscale.worker_pid"] == 1234
    by_name = {s.name: s for s in replayed if s.name != "chat hosted_vllm/scripted"}
    for record in recorded:  # the recorded times, to the nanosecond
        if record.kind != "call":
            made = by_name[f"invoke_agent {record.name}" if record.kind == "node" else f"agentscale.item {record.name}"]
            assert (made.start_time, made.end_time) == (record.start_ns, record.end_ns)
    calls = [s for s in replayed if s.name == "chat hosted_vllm/scripted"]
    in_place_calls = [s for s in in_place if s.name == "chat hosted_vllm/scripted"]
    for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "server.address", "server.port"):
        assert sorted(str((c.attributes or {})[key]) for c in calls) == sorted(
            str((c.attributes or {})[key]) for c in in_place_calls
        )


async def test_content_travels_only_when_captured_and_the_replay_applies_its_own_policy(  # type: ignore[no-untyped-def]
    scripted, gateway, no_observer
) -> None:
    recorded = await _recorded_trio(scripted, gateway, content=True)
    hooks.set_observer(None)
    assert QUESTION in repr(recorded) and SECRET not in repr(recorded)
    with otel_exporting(capture=True) as exporter:
        replay(recorded)
        assert QUESTION in everything(exporter.get_finished_spans())
    with otel_exporting(capture=False) as exporter:  # shipped with content, but this driver does not capture
        replay(recorded)
        assert QUESTION not in everything(exporter.get_finished_spans())
        assert len(exporter.get_finished_spans()) == 7


def test_what_a_driver_asks_workers_to_record(no_observer) -> None:  # type: ignore[no-untyped-def]
    assert record_request() is None  # tracing off: workers record nothing
    with otel_exporting(capture=False):
        assert record_request() == RecordRequest(content=False)
        with hooks.muted():
            assert record_request() is None
    with otel_exporting(capture=True):
        assert record_request() == RecordRequest(content=True)


def _span(kind: Any, name: str, start: int, end: int, parent: int | None, **attributes: Any) -> RecordedSpan:
    return RecordedSpan(kind, name, dict(attributes), start, end, parent)


def test_a_recording_from_a_skewed_clock_is_moved_inside_its_window(no_observer) -> None:  # type: ignore[no-untyped-def]
    s = 1_000_000_000
    ahead = [_span("item", "i0", 110 * s, 112 * s, None), _span("node", "a", 110 * s + 5, 111 * s, 0)]
    with otel_exporting() as exporter:
        shift = replay(ahead, window=(100 * s, 104 * s))  # the worker's clock is ~10 s ahead
        item, node = sorted(exporter.get_finished_spans(), key=lambda x: x.name)
    assert shift == 104 * s - 112 * s  # just inside: ends when the driver got the result
    assert (item.start_time, item.end_time) == (102 * s, 104 * s) and node.start_time == 102 * s + 5
    assert (item.attributes or {})["agentscale.clock_shift_ns"] == shift and "agentscale.clock_shift_ns" not in (
        node.attributes or {}
    )
    behind = [_span("item", "i1", 90 * s, 91 * s, None)]
    with otel_exporting() as exporter:
        assert replay(behind, window=(100 * s, 104 * s)) == 10 * s
        assert exporter.get_finished_spans()[0].start_time == 100 * s
    inside = [_span("item", "i2", 101 * s, 102 * s, None)]
    with otel_exporting():
        assert replay(inside, window=(100 * s, 104 * s)) == 0  # one clock: nothing moves


def test_an_exception_leaving_a_span_replays_as_an_error(no_observer) -> None:  # type: ignore[no-untyped-def]
    endpoint = "https://u:pw@api.example:8443/v1?key=sk-1"
    with (
        recording(RecordRequest(content=False)) as work,
        hooks.span("item", "i0", {"item": "i0"}),  # the item span closes normally
        pytest.raises(ValueError),
        hooks.span("call", "m/x", {"route": "m/x", "endpoint": endpoint}),
    ):
        raise ValueError("boom")
    hooks.set_observer(None)
    recorded = work.spans()
    assert recorded[1].attributes["endpoint"] == "https://api.example:8443"  # no user, password, path or query
    assert (recorded[1].error_type, recorded[1].error) == ("ValueError", "boom")
    with otel_exporting() as exporter:
        replay(recorded)
        call = next(s for s in exporter.get_finished_spans() if s.name == "chat m/x")
    assert call.status.status_code is StatusCode.ERROR and call.status.description == "ValueError: boom"
    assert [e.name for e in call.events] == ["exception"] and (call.attributes or {})["server.port"] == 8443


def test_work_outside_a_recording_is_not_recorded_and_muted_work_is_not_traced(no_observer) -> None:  # type: ignore[no-untyped-def]
    hooks.set_observer(Recorder())
    with hooks.span("item", "i0", {}) as handle:  # another item of the worker, for a driver that does not trace
        handle.set({"prompt_tokens": 3})
    with otel_exporting() as exporter:
        with hooks.muted(), hooks.span("item", "probe", {}):
            pass
        assert exporter.get_finished_spans() == ()


class _ListObserver:
    """An observer without `replay`: gets the tree opened again."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, str, Mapping[str, Any]]] = []
        self.depth = 0

    @contextmanager
    def span(self, kind: Any, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
        self.opened.append(("  " * self.depth + kind, name, dict(attributes)))
        self.depth += 1
        try:
            yield self
        finally:
            self.depth -= 1

    def set(self, attributes: Mapping[str, Any]) -> None:
        return None


def test_an_observer_without_replay_gets_the_same_tree(no_observer) -> None:  # type: ignore[no-untyped-def]
    observer = _ListObserver()
    hooks.set_observer(observer)
    spans = [_span("item", "i0", 1, 9, None), _span("node", "a", 2, 4, 0), _span("call", "m", 2, 3, 1, route="m")]
    replay(spans)
    assert [(k, n) for k, n, _ in observer.opened] == [("item", "i0"), ("  node", "a"), ("    call", "m")]


def test_a_recording_longer_than_its_window_starts_at_the_windows_start(no_observer) -> None:  # type: ignore[no-untyped-def]
    """A worker clock 10 s ahead recorded 10 s of work the driver saw take 4 s (the two clocks also
    run at their own pace): moved to end at the window's end it would start 6 s before the driver
    sent the item; the trace must never show work before it was asked for."""
    s = 1_000_000_000
    long = [_span("item", "i0", 110 * s, 120 * s, None)]
    with otel_exporting() as exporter:
        shift = replay(long, window=(100 * s, 104 * s))
        (item,) = exporter.get_finished_spans()
    assert shift == -10 * s and item.start_time == 100 * s and item.end_time == 110 * s


def test_a_span_left_open_ends_when_its_recording_stops() -> None:
    """A worker's item that ends with a span still open (an interrupted call) ships the span ending
    when the work stopped, not as a zero-length span at its start: its duration is the time it took."""
    from agentscale.tracing.recording import Recording

    work = Recording(content=False)
    work.open_span("item", "i0", None)
    time.sleep(0.02)
    work.stop()
    (span,) = work.spans()
    assert span.end_ns - span.start_ns >= 20_000_000
    assert work.spans() == [span]  # stopped: re-reading gives the same end


def test_a_process_with_its_own_observer_keeps_it_while_recording(no_observer) -> None:  # type: ignore[no-untyped-def]
    """A worker that traces itself (its own OpenTelemetry backend) must keep sending its spans there;
    a recording replacing its observer silently cut that process's own tracing off."""
    with otel_exporting() as exporter:
        own = hooks.installed_observer()
        with recording(RecordRequest(content=False)) as work, hooks.span("item", "i0", {"item": "i0"}):
            pass
        assert hooks.installed_observer() is own
        assert [s.name for s in exporter.get_finished_spans()] == ["agentscale.item i0"]
    assert work.spans() == []


@pytest.mark.parametrize("endpoint", ["sk-secret@proxy.internal", "proxy.internal?key=sk-secret"])
def test_an_endpoint_that_is_no_url_is_recorded_only_when_it_cannot_hold_a_key(no_observer, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    """An endpoint written without a scheme is no URL to strip down to its host: one with a user part
    (`key@host`) or a query may carry a key, which must not travel in the recorded spans."""
    with recording(RecordRequest(content=False)) as work, hooks.span("call", "m/x", {"endpoint": endpoint}):
        pass
    hooks.set_observer(None)
    assert work.spans()[0].attributes["endpoint"] == "<endpoint>"
    with recording(RecordRequest(content=False)) as work, hooks.span("call", "m/x", {"endpoint": "proxy.internal"}):
        pass
    assert work.spans()[0].attributes["endpoint"] == "proxy.internal"


def test_a_call_to_replicas_replays_as_a_span_naming_every_replica(no_observer) -> None:  # type: ignore[no-untyped-def]
    """A call of a replica set that no one replica answered (a failure) records "http://a:8000,
    http://b:8000"; replayed on the driver, OpenTelemetry's mapping read "8000, http:" as a port and
    raised ValueError out of the Ray executor's item (a mutation audit of tracing found it)."""
    endpoint = "http://10.0.0.1:8000/v1, http://10.0.0.2:8000/v1"
    with (
        recording(RecordRequest(content=False)) as work,
        hooks.span("call", "m/x", {"route": "m/x", "endpoint": endpoint}),
    ):
        pass
    hooks.set_observer(None)
    with otel_exporting() as exporter:
        replay(work.spans())
        (call,) = exporter.get_finished_spans()
    assert call.name == "chat m/x"
    assert call.attributes["agentscale.endpoint"] == "http://10.0.0.1:8000, http://10.0.0.2:8000"  # type: ignore[index]
    assert "server.address" not in call.attributes  # type: ignore[operator]


def test_replayed_children_end_before_their_parents(no_observer) -> None:  # type: ignore[no-untyped-def]
    """Spans made in place end innermost first, and exporters receive them in that order; a replay
    must hand them over the same way (a parent exported before its children is shown as incomplete)."""
    spans = [_span("item", "i0", 1, 9, None), _span("node", "a", 2, 8, 0), _span("call", "m", 3, 7, 1, route="m")]
    with otel_exporting() as exporter:
        replay(spans)
        assert [s.name for s in exporter.get_finished_spans()] == ["chat m", "invoke_agent a", "agentscale.item i0"]


async def test_an_items_span_opens_once_the_graph_is_warm(no_observer, scripted: ScriptedServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """litellm's import and the local servers' starts ran inside the first item's span: an eval's first
    items' spans lasted 6-11 s around 0.15-0.5 s of their own work (the tracing walk's F1)."""
    graph = Graph.from_yaml(GRAPH.format(api_base=scripted.api_base), gateway=Gateway(Store(tmp_path / "t.db")))
    warm_at_open: list[bool] = []

    class Watching(_ListObserver):
        @contextmanager
        def span(self, kind: Any, name: str, attributes: Mapping[str, Any]) -> Iterator[Any]:
            if kind == "item":
                warm_at_open.append(graph._endpoints_ready)
            with super().span(kind, name, attributes) as handle:
                yield handle

    hooks.set_observer(Watching())
    await graph.arun("What is 3 + 4?", item_key="i0")
    assert warm_at_open == [True]
