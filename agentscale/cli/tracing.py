"""`--trace otlp|console|off`: OpenTelemetry spans of a CLI run (run → [evaluation →] item → node → model call).

The exporter's own settings are OpenTelemetry's environment variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_SERVICE_NAME`, ...); `AGENTSCALE_TRACE` is the flag's setting for every command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from agentscale.tracing.hooks import span

TRACE_ENV = "AGENTSCALE_TRACE"

TraceOption = Annotated[
    str | None,
    typer.Option(
        "--trace",
        help="OpenTelemetry spans (needs agentscale\\[otel]): otlp (to OTEL_EXPORTER_OTLP_ENDPOINT, e.g. Jaeger, "
        "Phoenix, Langfuse), console (stderr) or off (default; env AGENTSCALE_TRACE). Prompts and answers "
        "only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.",
        show_default=False,
    ),
]


def _exporter(trace: str | None) -> str:
    return (trace or os.environ.get(TRACE_ENV) or "off").strip().lower()


def check_tracing(trace: str | None) -> None:
    """Refuse a `--trace` (or AGENTSCALE_TRACE) that cannot work before the command creates its run."""
    exporter = _exporter(trace)
    if exporter != "off":
        from agentscale.errors import AgentScaleError
        from agentscale.tracing.otel import check_exporter

        try:
            check_exporter(exporter)
        except AgentScaleError as exc:
            if trace:  # the flag's own
                raise
            raise AgentScaleError(f"{TRACE_ENV}={os.environ.get(TRACE_ENV)}: {exc}") from None  # where it came from


@contextmanager
def traced_run(trace: str | None, kind: str, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
    """The command's work inside one root span, exported when tracing is on; nothing otherwise."""
    exporter = _exporter(trace)
    if exporter == "off":
        yield
        return
    from agentscale.cli._console import warn_if
    from agentscale.tracing.delivery import Delivery
    from agentscale.tracing.otel import delivery_warning, exporting

    delivery = Delivery()
    try:
        with exporting(exporter, delivery), span("run", name, {"kind": kind, **attributes}) as traced:
            try:
                yield
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the root span ended with no word of it
                traced.set({"interrupted": True})
                raise
    finally:  # after the last spans were flushed: a collector lost mid-run was said only in retry lines
        warn_if(delivery_warning(exporter, delivery))
