"""What packages above the runtime add to a run: they register here instead of being imported.

A graph's `memory:` is served by the behavior handbook (`agentscale.memory`), which sits above the
runtime: it registers its implementation with :func:`register_memory` when imported (a plug-in,
imported when the first graph asks for memory: `agentscale.plugins`), and the runtime asks
:func:`graph_memory` for one per graph. The runtime only knows the :class:`RunMemory` protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from agentscale.errors import AgentScaleError
from agentscale.graphs.result import RunResult
from agentscale.graphs.spec import Memory
from agentscale.plugins import load_plugins
from agentscale.storage.db import Store

Behavior = TypeVar("Behavior")


class RunMemory(Protocol[Behavior]):
    """A graph's `memory:` as a run uses it: retrieved once per question, shown to every node that calls
    a model, then accounted for in the result."""

    def warm_up(self) -> None:
        """Load what retrieval needs now, before a run's clock starts (and fail here if it cannot)."""

    def retrieve(self, question: str) -> list[Behavior]:
        """The question's behaviors, best first (blocking: the runtime calls it in a thread)."""

    def block(self, behaviors: list[Behavior]) -> str:
        """The prompt text that shows `behaviors` to a node ("" for none)."""

    def finish(self, result: RunResult, retrieved: list[Behavior], record: bool) -> RunResult:
        """The run's result with what was shown and used (counted in the handbook when `record`)."""


MemoryFactory = Callable[[Store | None, Memory], RunMemory[Any]]
_memory_factory: MemoryFactory | None = None


def register_memory(factory: MemoryFactory, *, replace: bool = True) -> None:
    """Serve graphs' `memory:` with `factory(store, memory)` (the handbook calls this when imported,
    with `replace=False`: a factory registered before it loaded stays)."""
    global _memory_factory
    if replace or _memory_factory is None:
        _memory_factory = factory


def graph_memory(store: Store | None, memory: Memory) -> RunMemory[Any]:
    """The registered implementation of a graph's `memory:`."""
    load_plugins()
    if _memory_factory is None:
        raise AgentScaleError(
            "memory: no handbook is registered (the `memory` plug-in of agentscale.plugins; is agentscale installed?)"
        )
    return _memory_factory(store, memory)
