"""Tracing: the runtime's hook (:mod:`hooks`, no dependencies) and an OpenTelemetry backend
(:mod:`otel`, extra `agentscale[otel]`), off unless `--trace` or `AGENTSCALE_TRACE` turns it on."""
