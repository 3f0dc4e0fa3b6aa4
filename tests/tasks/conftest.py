"""Shared fixtures for the task-layer tests."""

from __future__ import annotations

import pytest

from agentscale.tasks.base import Score, Task, TaskItem


def _always_wrong(answer: str | None, item: TaskItem) -> Score:
    return Score(False, "test scorer")


@pytest.fixture
def small_task() -> Task:
    """A 20-item task with ids q00..q19 (the scorer is irrelevant to split tests)."""
    items = tuple(TaskItem(id=f"q{i:02d}", question=f"question {i}", reference=str(i)) for i in range(20))
    return Task("small", "twenty items", "number", _always_wrong, "test", items)
