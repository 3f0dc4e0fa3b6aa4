"""Scoring an answer from the event loop that drives an evaluation's model calls.

A scorer that blocks (code execution in a subprocess, math-verify's symbolic comparison, a user's
scorer) runs in a worker thread so the other items' calls go on. The built-in string and number
comparisons take microseconds and run on the loop itself: a thread hop per item cost more than the
comparison, 0.2-0.5 ms of the driver's CPU per one-call item (`benchmarks/scale.py`, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio

from agentscale.tasks.base import Score, Scorer, Task, TaskItem
from agentscale.tasks.scorers import score_choice, score_exact, score_numeric

# pure comparisons of short strings and numbers: no I/O, no parsing that can run long
INLINE_SCORERS: frozenset[Scorer] = frozenset({score_exact, score_numeric, score_choice})


async def ascore(task: Task, answer: str | None, item: TaskItem) -> Score:
    """`task.score(answer, item)` without blocking the running event loop for long."""
    if task.scorer in INLINE_SCORERS:
        return task.score(answer, item)
    return await asyncio.to_thread(task.score, answer, item)
