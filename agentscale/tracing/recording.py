"""Spans recorded as plain data in one process and replayed as real spans in another.

The Ray executor answers items in worker processes that have no tracing backend and need none. When
the driver traces (an observer is installed), it asks the worker to record the item: the worker's
process-wide :class:`Recorder` keeps each span the runtime opens as a :class:`RecordedSpan` (kind,
name, the neutral attributes, start and end in Unix nanoseconds, the index of its parent, an error),
the spans travel back with the item's result, and :func:`replay` hands them to the driver's
observer, which makes them real spans with the recorded times under whatever span is current there
(the run's). Content keys (:data:`~agentscale.tracing.hooks.CONTENT_KEYS`) are recorded only when the
driver's observer captures content, so by default no prompt or answer text travels; call sites pass
no API key, and an endpoint is recorded as scheme, host and port only (no user, path or query).

Times come from the worker's clock. On one machine that is the driver's clock; across machines the
clocks may differ by their skew, so :func:`replay` can be given the window in which the driver
knows the work happened (sent → returned) and moves a recording that falls outside it just inside,
noting the shift on its root spans (`clock_shift_ns`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from agentscale.tracing.hooks import (
    CONTENT_KEYS,
    Observer,
    SpanKind,
    active_observer,
    installed_observer,
    safe_endpoint,
    set_observer,
)


@dataclass(frozen=True)
class RecordRequest:
    """What a process answering an item for a tracing driver records (sent with the item)."""

    content: bool  # prompt and answer text too (the driver's observer captures content)


@dataclass(frozen=True)
class RecordedSpan:
    """One span as plain data; `parent` indexes the same recording (None: a root, parented on replay)."""

    kind: SpanKind
    name: str
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int
    parent: int | None = None
    error_type: str | None = None  # an exception left the span (its status is ERROR)
    error: str | None = None


def record_request() -> RecordRequest | None:
    """What to ask of another process answering an item for this one: None while nothing is traced."""
    observer = active_observer()
    if observer is None:
        return None
    return RecordRequest(content=bool(getattr(observer, "capture_content", True)))


@dataclass
class _Open:
    """A span being recorded (the handle the runtime's `set` calls reach)."""

    kind: SpanKind
    name: str
    parent: int | None
    content: bool
    start_ns: int = field(default_factory=time.time_ns)
    end_ns: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error_type: str | None = None
    error: str | None = None

    def set(self, attributes: Mapping[str, Any]) -> None:
        for key, value in attributes.items():
            if value is None or (key in CONTENT_KEYS and not self.content):
                continue
            self.attributes[key] = safe_endpoint(value) if key == "endpoint" else value

    def closed(self, stopped_ns: int) -> RecordedSpan:
        end = self.end_ns if self.end_ns is not None else stopped_ns  # left open: ends with the recording
        return RecordedSpan(
            self.kind, self.name, self.attributes, self.start_ns, end, self.parent, self.error_type, self.error
        )


class Recording:
    """The spans of one piece of work (an item), in the order they opened: parents before children."""

    def __init__(self, content: bool) -> None:
        self.content = content
        self._spans: list[_Open] = []
        self._stopped_ns: int | None = None

    def stop(self) -> None:
        """The work is over: spans still open end now."""
        self._stopped_ns = time.time_ns()

    def spans(self) -> list[RecordedSpan]:
        stopped = self._stopped_ns if self._stopped_ns is not None else time.time_ns()
        return [span.closed(stopped) for span in self._spans]

    def open_span(self, kind: SpanKind, name: str, parent: int | None) -> tuple[int, _Open]:
        """A new span under `parent` (an index into this recording); its index and the span."""
        opened = _Open(kind, name, parent, self.content)
        self._spans.append(opened)
        return len(self._spans) - 1, opened


# the recording of the work in this task and the index of its current span (the parent of new ones)
_CURRENT: ContextVar[tuple[Recording, int | None] | None] = ContextVar("agentscale_recording", default=None)


class _NotRecorded:
    def set(self, attributes: Mapping[str, Any]) -> None:
        return None


class Recorder:
    """An observer that records the spans of work inside :func:`recording` and ignores the rest."""

    @contextmanager
    def span(self, kind: SpanKind, name: str, attributes: Mapping[str, Any]) -> Iterator[_Open | _NotRecorded]:
        current = _CURRENT.get()
        if current is None:  # work nobody asked to record (an item of a driver that does not trace)
            yield _NotRecorded()
            return
        recording, parent = current
        index, opened = recording.open_span(kind, name, parent)
        opened.set(attributes)
        token = _CURRENT.set((recording, index))
        try:
            yield opened
        except Exception as exc:  # what OpenTelemetry records for an exception leaving a span
            opened.error_type, opened.error = type(exc).__name__, str(exc)
            raise
        finally:
            _CURRENT.reset(token)
            opened.end_ns = time.time_ns()


@contextmanager
def recording(request: RecordRequest) -> Iterator[Recording]:
    """Record the spans of the work inside the block (this task and those it starts).

    Installs a :class:`Recorder` as this process's observer unless one is there already; a process
    with an observer of its own (its own tracing backend) keeps it, and then nothing is recorded.
    """
    if installed_observer() is None:
        set_observer(Recorder())
    work = Recording(request.content)
    token = _CURRENT.set((work, None))
    try:
        yield work
    finally:
        _CURRENT.reset(token)
        work.stop()


def replay(
    spans: Sequence[RecordedSpan],
    *,
    window: tuple[int, int] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> int:
    """Hand recorded spans to this process's observer; returns the clock shift applied (ns).

    `window` (Unix ns): when the recorded work must have happened by this process's clock; a
    recording outside it (another machine's clock) is moved just inside, durations unchanged.
    `attributes` go on the root spans (e.g. which worker answered). An observer with a
    `replay(spans)` method (the OpenTelemetry one) gets the spans with their times; any other gets the
    same tree opened now. A no-op without an observer.
    """
    observer = active_observer()
    if observer is None or not spans:
        return 0
    shift = _shift(spans, window) if window is not None else 0
    extra = dict(attributes or {})
    if shift:
        extra["clock_shift_ns"] = shift
    placed = [
        replace(
            span,
            start_ns=span.start_ns + shift,
            end_ns=span.end_ns + shift,
            attributes={**span.attributes, **extra} if span.parent is None else span.attributes,
        )
        for span in spans
    ]
    replayer = getattr(observer, "replay", None)
    if callable(replayer):
        replayer(placed)
    else:
        _replay_nested(observer, placed)
    return shift


def _shift(spans: Sequence[RecordedSpan], window: tuple[int, int]) -> int:
    low, high = window
    start = min(span.start_ns for span in spans)
    end = max(span.end_ns for span in spans)
    if start < low:
        return low - start
    if end > high:
        return max(high - end, low - start)  # never before the window's start
    return 0


def _replay_nested(observer: Observer, spans: Sequence[RecordedSpan]) -> None:
    """For an observer without `replay`: the same tree, opened now (times are the replay's)."""
    children: dict[int | None, list[int]] = {}
    for index, span in enumerate(spans):
        children.setdefault(span.parent, []).append(index)

    def open_span(index: int) -> None:
        span = spans[index]
        with observer.span(span.kind, span.name, span.attributes) as handle:
            for child in children.get(index, []):
                open_span(child)
            if span.error is not None:
                handle.set({"error": f"{span.error_type}: {span.error}"})

    for root in children.get(None, []):
        open_span(root)
