"""How many of a traced command's spans reached the collector.

A collector that dies mid-run, or answers errors, loses the spans sent after: OpenTelemetry's batch
processor logs a retry line or two and drops them (and drops the spans its queue cannot hold while
the exporter retries), and the command exited 0 with 15 of about 1,051 spans delivered. Counting the
spans the command ended against those its exporter delivered lets it say so at its end. Needs the
`otel` extra: imported only where spans are exported.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class Delivery:
    """Spans ended and spans delivered (thread-safe: the exporter runs on the batch thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ended = 0
        self.delivered = 0

    @property
    def lost(self) -> int:
        """Spans ended but never delivered (refused, unreachable collector, or dropped from the queue)."""
        return max(0, self.ended - self.delivered)

    def count(self, *, ended: int = 0, delivered: int = 0) -> None:
        """Add spans ended or delivered."""
        with self._lock:
            self.ended += ended
            self.delivered += delivered


class EndedSpans(SpanProcessor):
    """Counts each span as it ends (added to the provider before the batch processor)."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def on_end(self, span: ReadableSpan) -> None:
        self.delivery.count(ended=1)


class DeliveredSpans(SpanExporter):
    """The exporter that really sends, counting the spans of each export it reports a success for."""

    def __init__(self, exporter: SpanExporter, delivery: Delivery) -> None:
        self.exporter = exporter
        self.delivery = delivery

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.delivery.count(delivered=len(spans))
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)
