"""The default executor: items run as coroutines of the calling process (asyncio).

Model calls are I/O, so one event loop keeps many items in flight; the gateway writes the spend
ledger and cache as each call returns, and the graph its rows as each item finishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentscale.executors.config import ExecutorConfig

if TYPE_CHECKING:
    from agentscale.graphs.result import RunResult
    from agentscale.runtime.graph import Graph


class LocalExecutor:
    """`graph.arun` in this process: one worker, `concurrency` items at once."""

    name = "local"

    async def start(self) -> None:
        return None

    def slots(self, concurrency: int) -> int:
        return concurrency

    def check(self, graph: Graph) -> None:
        return None

    async def run_item(
        self, graph: Graph, question: str, *, run_id: str | None, item_key: str, record: bool
    ) -> RunResult:
        return await graph.arun(question, run_id=run_id, item_key=item_key, record=record)

    def close(self) -> None:
        return None

    def config(self) -> ExecutorConfig:
        return ExecutorConfig()
