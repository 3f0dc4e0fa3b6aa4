"""Serving a graph behind an OpenAI-compatible HTTP API (`agentscale serve-graph`)."""

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""The largest request body a served graph takes, 1 MiB, from Python (`create_app`) and from
`serve-graph --max-body-kb` alike (they said 1,000,000 and 1,048,576 bytes)."""
