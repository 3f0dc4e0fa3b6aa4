"""Serving a graph behind an OpenAI-compatible HTTP API (`agentscale serve-graph`)."""
