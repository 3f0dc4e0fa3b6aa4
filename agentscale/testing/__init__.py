"""Test helpers shipped with the package (used by the test suite, benchmarks and examples)."""

from agentscale.testing.scripted_server import Rule, ScriptedServer

__all__ = ["Rule", "ScriptedServer"]
