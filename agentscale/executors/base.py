"""What an executor is: the place where a graph answers one item of an evaluation.

The eval engine (and through it the optimizer) decides *which* items to run, how many at once, how
to score and what to report; an executor decides only *where* an item's graph runs. Keeping that
seam narrow is what lets the same engine run in-process (`local`) or on a Ray cluster (`ray`) with
identical answers, rows and spend, and lets the database keep one writer: whatever the executor, the
rows of an item reach SQLite from the driver process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from agentscale.executors.config import ExecutorConfig

if TYPE_CHECKING:
    from agentscale.graphs.result import RunResult
    from agentscale.runtime.graph import Graph


class Executor(Protocol):
    """Runs items of an evaluation; the engine owns concurrency, scoring and progress."""

    name: str

    async def start(self) -> None:
        """Get ready (connect, start workers); idempotent, called before the first item."""

    def slots(self, concurrency: int) -> int:
        """Items in flight overall when each worker takes `concurrency` items at once."""
        ...

    def check(self, graph: Graph) -> None:
        """Raise `AgentScaleError` if this executor cannot run `graph` (before any run is created)."""

    async def run_item(
        self, graph: Graph, question: str, *, run_id: str | None, item_key: str, record: bool
    ) -> RunResult:
        """Answer one question like `graph.arun(...)`: same result, same rows, same spend entries."""
        ...

    def close(self) -> None:
        """Release workers; an executor is not used after this."""

    def config(self) -> ExecutorConfig:
        """What a run it runs stores, so that its resume runs where and how it started."""
        ...


def create_executor(config: ExecutorConfig) -> Executor:
    """A ready-to-start executor; `ray` fails here, with the install hint, when Ray is missing."""
    if config.kind == "ray":
        from agentscale.executors.ray_executor import RayExecutor

        return RayExecutor(address=config.address, workers=config.workers)
    from agentscale.executors.local import LocalExecutor

    return LocalExecutor()
