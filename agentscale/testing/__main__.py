"""`python -m agentscale.testing --port 8123 --latency 0.2` serves the scripted OpenAI-compatible server."""

from agentscale.testing.scripted_server import main

main()
