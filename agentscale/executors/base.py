"""What an executor is: the place where a graph answers one item of an evaluation.

The eval engine (and through it the optimizer) decides *which* items to run, how many at once, how
to score and what to report; an executor decides only *where* an item's graph runs. Keeping that
seam narrow is what lets the same engine run in-process (`local`) or on a Ray cluster (`ray`) with
identical answers, rows and spend, and lets the database keep one writer: whatever the executor, the
rows of an item reach SQLite from the driver process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

from agentscale.errors import AgentScaleError

if TYPE_CHECKING:
    from agentscale.graphs.result import RunResult
    from agentscale.runtime.graph import Graph

ExecutorKind = Literal["local", "ray"]
EXECUTOR_KINDS: tuple[str, ...] = get_args(ExecutorKind)


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


@dataclass(frozen=True)
class ExecutorConfig:
    """Which executor a run uses; stored with eval and optimize runs so `--resume` reuses it."""

    kind: ExecutorKind = "local"
    address: str | None = None  # ray: `ray://host:10001`, `auto` (a cluster on this host), None = start one
    workers: int | None = None  # ray: worker actors (default: one per CPU of the cluster)

    def __post_init__(self) -> None:
        """An unknown kind ran locally without a word (`kind="rya"`) and was stored so."""
        if self.kind not in EXECUTOR_KINDS:
            raise AgentScaleError(f"unknown executor {self.kind!r}; choose from {', '.join(EXECUTOR_KINDS)}")
        workers = self.workers
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise AgentScaleError(f"executor workers must be a whole number of at least 1 (got {workers!r})")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "workers": self.workers}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ExecutorConfig:
        """Runs stored before executors existed have no entry: they ran locally."""
        return cls(**data) if data else cls()

    def override(
        self, kind: str | None = None, address: str | None = None, workers: int | None = None
    ) -> ExecutorConfig:
        """This config with the options a user gave on the command line (None = keep)."""
        config = self
        if kind is not None and kind != self.kind:
            config = ExecutorConfig(kind)  # type: ignore[arg-type]  # checked by the new config
        if address is not None:
            config = replace(config, address=address)
        if workers is not None:
            config = replace(config, workers=workers)
        if config.kind != "ray" and (config.address is not None or config.workers is not None):
            raise AgentScaleError("--ray-address and --ray-workers need --executor ray")
        return config


def create_executor(config: ExecutorConfig) -> Executor:
    """A ready-to-start executor; `ray` fails here, with the install hint, when Ray is missing."""
    if config.kind == "ray":
        from agentscale.executors.ray_executor import RayExecutor

        return RayExecutor(address=config.address, workers=config.workers)
    from agentscale.executors.local import LocalExecutor

    return LocalExecutor()
