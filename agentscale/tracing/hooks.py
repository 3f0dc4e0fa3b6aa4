"""The hook the runtime calls at each level of work: run → item → node → model call (an
optimization adds one level, evaluation, between its run and the items of each graph it scores).

The runtime (graphs, models) sits below any tracing backend and must not import one, so it calls
:func:`span` here, which costs one `None` check while no observer is installed (the default). A
backend (:mod:`agentscale.tracing.otel`) registers itself with :func:`set_observer`. Call sites give
neutral keys (`prompt_tokens`, `route`, ...); the backend maps them to its conventions. Keys named in
:data:`CONTENT_KEYS` carry prompt or answer text: a backend drops them unless the user asked for
content capture. No call site passes an API key. :func:`muted` silences the hook for work that is
not the user's (the Ray executor's cache probe runs an item's graph only to find its cache entries).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

SpanKind = Literal["run", "evaluation", "item", "node", "call"]
CONTENT_KEYS = frozenset({"question", "answer", "messages", "completion"})


class SpanHandle(Protocol):
    def set(self, attributes: Mapping[str, Any]) -> None:
        """Add what is known once the work is done (tokens, status, cost)."""


class Observer(Protocol):
    def span(self, kind: SpanKind, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[SpanHandle]:
        """A span around one piece of work, current (the parent of spans opened inside it) while open."""


class _NoSpan:
    def set(self, attributes: Mapping[str, Any]) -> None:
        return None


_NO_SPAN: AbstractContextManager[SpanHandle] = nullcontext(_NoSpan())
_observer: Observer | None = None
_MUTED: ContextVar[bool] = ContextVar("agentscale_trace_muted", default=False)


def set_observer(observer: Observer | None) -> Observer | None:
    """Install (or, with None, remove) the process's observer; returns the one it replaces."""
    global _observer
    previous, _observer = _observer, observer
    return previous


def installed_observer() -> Observer | None:
    """The process's observer, muted or not."""
    return _observer


def active_observer() -> Observer | None:
    """The observer spans opened here would reach (None when none is installed or inside :func:`muted`)."""
    if _observer is None or _MUTED.get():
        return None
    return _observer


@contextmanager
def muted() -> Iterator[None]:
    """No spans from the work done inside (in this task and the tasks it starts)."""
    token = _MUTED.set(True)
    try:
        yield
    finally:
        _MUTED.reset(token)


def span(kind: SpanKind, name: str, attributes: Mapping[str, Any]) -> AbstractContextManager[SpanHandle]:
    """`with span("node", node_id, {...}) as s: ...; s.set({...})` — a no-op without an observer."""
    if _observer is None or _MUTED.get():  # tracing off: only the None check runs
        return _NO_SPAN
    return _observer.span(kind, name, attributes)


def endpoint_hosts(value: Any) -> list[tuple[str, str, int | None]] | None:
    """(scheme, host, port) of each URL in an endpoint, or a replica set's list "a, b"; None when a
    part is no URL (a route, or "cache"). A port that does not parse is left out."""
    hosts = []
    for where in str(value).split(","):
        url = urlsplit(where.strip())
        if not url.hostname:
            return None
        try:
            port = url.port
        except ValueError:
            port = None
        hosts.append((url.scheme, url.hostname, port))
    return hosts


def safe_endpoint(value: Any) -> str:
    """An endpoint as scheme://host:port for each of its URLs: nothing that could hold a key (an
    api_base may carry one in its userinfo or query). A value that is no URL stays as it is, unless
    it has the '@' or '?' a key could hide behind."""
    hosts = endpoint_hosts(value)
    if hosts is None:
        return str(value) if "?" not in str(value) and "@" not in str(value) else "<endpoint>"
    return ", ".join(
        f"{scheme}://{f'[{host}]' if ':' in host else host}" + (f":{port}" if port else "")
        for scheme, host, port in hosts
    )
