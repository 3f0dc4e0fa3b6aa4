"""Scoring an answer from the event loop that drives an evaluation's model calls.

A scorer that waits (code execution in a subprocess) or may run long (math-verify's symbolic
comparison, a user's scorer) runs in a worker thread so the other items' calls go on. The built-in
string and number comparisons run on the loop itself: on any answer they take well under a
millisecond (their inputs are bounded: see `scorers/numeric.py`), and the thread hop cost more than
the comparison (≈ 0.1 ms of the eval path's own CPU per one-call item, `benchmarks/scale.py
--canned`; docs/benchmarks.md). A thread does not keep a scorer that holds the interpreter lock in
one long C call from stalling the loop either; bounding its input does.
"""

from __future__ import annotations

from agentscale.tasks.base import Score, Scorer, Task, TaskItem
from agentscale.tasks.sandbox import in_worker_thread
from agentscale.tasks.scorers import score_choice, score_exact, score_numeric

# pure comparisons, no I/O; by identity, so a `numeric_scorer(rel_tol=...)` of a task's own goes to a thread
INLINE_SCORERS: frozenset[Scorer] = frozenset({score_exact, score_numeric, score_choice})


async def ascore(task: Task, answer: str | None, item: TaskItem) -> Score:
    """`task.score(answer, item)` without blocking the running event loop for long."""
    if task.scorer in INLINE_SCORERS:
        return task.score(answer, item)
    return await in_worker_thread(task.score, answer, item)  # a cancel kills the sandboxes it runs
