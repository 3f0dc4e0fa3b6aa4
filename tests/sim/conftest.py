"""Fixtures for the simulator tests."""

from __future__ import annotations

import pytest

from agentscale.sim.items import bank
from agentscale.sim.truth import TruthEngine


@pytest.fixture(scope="session")
def engines() -> dict[str, TruthEngine]:
    """Ground-truth engines over each sim task's default bank (1000 items, seed 0)."""
    return {task: TruthEngine(bank(task, 0)) for task in ("math", "mmlu", "humaneval")}
