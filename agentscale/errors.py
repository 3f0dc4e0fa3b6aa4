"""Exceptions users catch.

Every error a user can cause (bad YAML, unknown model, a model endpoint that keeps failing) derives
from :class:`AgentScaleError`, so the CLI can print the message and exit 1 without a traceback while
real bugs still surface as tracebacks. Errors whose constructor takes more than the message say how
to rebuild them (`__reduce__`, with their attributes and notes as state): Ray, multiprocessing and
concurrent.futures pickle an exception to send it between processes, and unpickling calls the class
with `args` (the message), which read a SpecError's message as its list of issues ("137 problems: g,
., y, ...") and failed for BudgetExceeded. A subclass with a constructor of its own is pickled as
Python pickles exceptions (it knows its own arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def pickle_recipe(
    error: BaseException, owner: type[BaseException], rebuild: Callable[..., BaseException], args: tuple[Any, ...]
) -> str | tuple[Any, ...]:
    """`error`'s `__reduce__`: `rebuild(*args)` with its attributes and notes as state, when the
    constructor it has is `owner`'s (whose arguments `args` are); a subclass with a constructor of its
    own is pickled as Python pickles exceptions."""
    if type(error).__init__ is not owner.__init__:
        return BaseException.__reduce__(error)
    return rebuild, args, error.__dict__


class AgentScaleError(Exception):
    """Base class of every error caused by input, configuration or an external service."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem found in a graph or space file: where (YAML path, line) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        if not self.path:  # about the file as a whole ("file not found", "must be a YAML mapping")
            return f"line {self.line}: {self.message}" if self.line is not None else self.message
        where = self.path if self.line is None else f"{self.path} (line {self.line})"
        return f"{where}: {self.message}"


class SpecError(AgentScaleError):
    """A graph or search-space file is invalid; carries every issue found, not only the first."""

    def __init__(self, issues: list[SpecIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        header = f"{source}: " if source else ""
        lines = [str(issue) for issue in issues]
        if len(lines) == 1:
            text = header + lines[0]
        else:
            text = header + f"{len(lines)} problems\n" + "\n".join(f"  - {line}" for line in lines)
        super().__init__(text)

    def __reduce__(self) -> str | tuple[Any, ...]:
        return pickle_recipe(self, SpecError, type(self), (self.issues, self.source))


class ModelCallError(AgentScaleError):
    """A model call failed after its retries; names the node and the endpoint. `out_of_time`: a time
    budget left no room to try again (the run's cap, not only the endpoint, ended it). `latency_s`:
    from its first attempt to its failure, when it got as far as an attempt (the wait for the
    endpoint's slot not in it, as in an answered call's latency). `attempts`: how many were made,
    when known (a failed call's trace span names them, as an answered call's does)."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        endpoint: str | None = None,
        out_of_time: bool = False,
        latency_s: float | None = None,
        attempts: int | None = None,
    ) -> None:
        self.node = node
        self.endpoint = endpoint
        self.out_of_time = out_of_time
        self.latency_s = latency_s
        self.attempts = attempts
        parts = []
        if node:
            parts.append(f"node {node!r}")
        if endpoint:
            parts.append(f"endpoint {endpoint}")
        prefix = (", ".join(parts) + ": ") if parts else ""
        super().__init__(prefix + message)
        self.message = message

    def __reduce__(self) -> str | tuple[Any, ...]:
        fields = (type(self), self.message, self.node, self.endpoint, self.out_of_time, self.latency_s, self.attempts)
        return pickle_recipe(self, ModelCallError, _rebuild_call_error, fields)


class BudgetExceeded(AgentScaleError):
    """A call was not made because it would have exceeded a per-question budget cap."""

    def __init__(self, cap: str, limit: float, projected: float) -> None:
        self.cap = cap
        self.limit = limit
        self.projected = projected
        super().__init__(f"budget {cap}={limit:g} {self.WOULD_BE_EXCEEDED} (projected {projected:g})")

    def __reduce__(self) -> str | tuple[Any, ...]:
        return pickle_recipe(self, BudgetExceeded, type(self), (self.cap, self.limit, self.projected))

    WOULD_BE_EXCEEDED = "would be exceeded"

    @classmethod
    def said(cls, reason: str | None) -> bool:
        """Whether a stored reason (a node's error, a run's `stopped_reason`) is such a refusal."""
        return reason is not None and reason.startswith("budget ") and cls.WOULD_BE_EXCEEDED in reason


def _rebuild_call_error(
    cls: type[ModelCallError],
    message: str,
    node: str | None,
    endpoint: str | None,
    out_of_time: bool,
    latency_s: float | None,
    attempts: int | None = None,
) -> ModelCallError:
    return cls(message, node=node, endpoint=endpoint, out_of_time=out_of_time, latency_s=latency_s, attempts=attempts)


class QuestionError(AgentScaleError, ValueError):
    """A question a graph cannot answer: not a string, or no text (refused before any call)."""


class EventLoopError(AgentScaleError, RuntimeError):
    """A synchronous call made where it cannot run: inside a running event loop (a notebook, async
    code), where `await` is the way. A RuntimeError as well, as asyncio's own such errors are."""


class RunNotFound(AgentScaleError):
    """A run id that is not in the database."""


class RunBusy(AgentScaleError):
    """A run another live process is running: resuming it too would pay for its calls twice."""


class StorageError(AgentScaleError):
    """The database failed under a run: another connection held it past the busy timeout, a full
    disk, a read-only or damaged file. The SQLite error is its `__cause__`. Raised as sqlite3's own
    error, it was no AgentScaleError an app could catch as documented."""


class ServingError(AgentScaleError):
    """Base of every local-serving error: a user-facing problem (engine missing, port taken, weights
    missing or corrupt, not enough memory, ...)."""
