"""The outbox: a small Ray actor where workers leave each paid call until the driver records it.

Spend must reach the ledger even when the attempt that paid is later lost with its worker, so it
cannot travel only with the item's result. Workers put a call here the moment it returns; the
driver drains the outbox after every attempt (finished or failed) and writes the calls to SQLite.
`drain` hands each call out exactly once, which is what keeps the ledger free of duplicates.
"""

from __future__ import annotations

from typing import Any

PaidCall = tuple[dict[str, Any] | None, dict[str, Any]]
"""(cache entry or None when the cache is off, spend row), as column values."""


class Outbox:
    """Wrapped with `ray.remote` by the driver; lives on the driver's node when it can."""

    def __init__(self) -> None:
        self._calls: list[PaidCall] = []

    def put(self, cache_entry: dict[str, Any] | None, spend: dict[str, Any]) -> None:
        self._calls.append((cache_entry, spend))

    def drain(self) -> list[PaidCall]:
        calls, self._calls = self._calls, []
        return calls

    def node_id(self) -> str:
        """The Ray node this outbox runs on (the driver checks it is its own)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())
