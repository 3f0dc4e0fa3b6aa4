"""The SQLite database: where it lives, how it is opened, and the operations the runtime needs.

WAL mode plus a busy timeout lets two processes (say, two evals) write to one file at once; every
write is a short transaction, committed as soon as the work it records is done.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, create_engine, select

from agentscale.errors import RunNotFound
from agentscale.storage.tables import CacheEntry, NodeCall, Run, RunItem, SpendEntry, Trial, utcnow

DEFAULT_DB = Path(".agentscale") / "agentscale.db"


def default_db_path() -> Path:
    """`AGENTSCALE_DB` or ./.agentscale/agentscale.db."""
    return Path(os.environ.get("AGENTSCALE_DB") or DEFAULT_DB)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class Store:
    """A handle on one database file; cheap to share across coroutines of one process."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"check_same_thread": False, "timeout": 30}
        )
        event.listen(self.engine, "connect", _configure_sqlite)
        SQLModel.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def add(self, row: SQLModel) -> None:
        self.add_all([row])

    def add_all(self, rows: Sequence[SQLModel]) -> None:
        """Insert rows in one transaction with Core inserts: a graph run writes a handful of rows per
        question, and the ORM unit of work costs several times the SQLite commit itself."""
        with self.engine.begin() as connection:
            for row in rows:
                table = type(row).__table__  # type: ignore[attr-defined]
                connection.execute(table.insert(), [row.model_dump(exclude_none=True)])

    # runs -----------------------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        *,
        graph_name: str | None = None,
        graph_yaml: str | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Run:
        run = Run(
            id=run_id or new_run_id(),
            kind=kind,
            graph_name=graph_name,
            graph_yaml=graph_yaml,
            config_json=json.dumps(config or {}),
        )
        self.add(run)
        return run

    def finish_run(
        self, run_id: str, status: str, summary: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        fields: dict[str, Any] = {"status": status, "finished": utcnow(), "error": error}
        if summary is not None:
            fields["summary_json"] = json.dumps(summary)
        self._update_run(run_id, fields)

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again (it may have been stopped, interrupted or failed)."""
        self._update_run(run_id, {"status": "running", "finished": None, "error": None})

    def _update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            for name, value in fields.items():
                setattr(run, name, value)
            session.add(run)
            session.commit()

    def get_run(self, run_id: str) -> Run:
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None:
                matches = session.exec(select(Run).where(Run.id.startswith(run_id))).all()
                if len(matches) == 1:
                    return matches[0]
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            return run

    def list_runs(self, limit: int = 50) -> list[Run]:
        with self.session() as session:
            query = select(Run).order_by(Run.created.desc()).limit(limit)  # type: ignore[attr-defined]
            return list(session.exec(query).all())

    def run_items(self, run_id: str) -> list[RunItem]:
        with self.session() as session:
            query = select(RunItem).where(RunItem.run_id == run_id).order_by(RunItem.id)  # type: ignore[arg-type]
            return list(session.exec(query).all())

    def score_item(self, run_id: str, item_key: str, *, reference: str, correct: bool, detail: str) -> None:
        """Record the scorer's verdict on an answered item."""
        with self.engine.begin() as connection:
            table = RunItem.__table__  # type: ignore[attr-defined]
            connection.execute(
                table.update()
                .where(table.c.run_id == run_id, table.c.item_key == item_key)
                .values(reference=reference, correct=correct, detail=detail)
            )

    def node_calls(self, run_id: str, item_key: str | None = None) -> list[NodeCall]:
        with self.session() as session:
            query = select(NodeCall).where(NodeCall.run_id == run_id)
            if item_key is not None:
                query = query.where(NodeCall.item_key == item_key)
            return list(session.exec(query.order_by(NodeCall.id)).all())  # type: ignore[arg-type]

    # cache ----------------------------------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None:
        with self.session() as session:
            return session.get(CacheEntry, key)

    def record_call(self, cache_entry: CacheEntry | None, spend: SpendEntry) -> None:
        """A real call's ledger row and cache entry (kept if one exists: concurrent identical calls)."""
        self.record_calls([(cache_entry, spend)])

    def record_calls(self, calls: Sequence[tuple[CacheEntry | None, SpendEntry]]) -> None:
        """Several real calls in one transaction (a Ray driver records what its workers paid for)."""
        with self.engine.begin() as connection:
            for cache_entry, spend in calls:
                if cache_entry is not None:
                    table = CacheEntry.__table__  # type: ignore[attr-defined]
                    connection.execute(sqlite_insert(table).on_conflict_do_nothing(), [cache_entry.model_dump()])
                connection.execute(SpendEntry.__table__.insert(), [spend.model_dump(exclude_none=True)])  # type: ignore[attr-defined]

    def has_cached(self, routes: Sequence[str]) -> bool:
        """Whether the response cache holds anything for these routes (one indexed lookup)."""
        with self.session() as session:
            query = select(CacheEntry.key).where(CacheEntry.route.in_(routes)).limit(1)  # type: ignore[attr-defined]
            return session.exec(query).first() is not None

    def trials(self, run_id: str) -> list[Trial]:
        with self.session() as session:
            query = select(Trial).where(Trial.run_id == run_id).order_by(Trial.seq)  # type: ignore[arg-type]
            return list(session.exec(query).all())

    # spend ----------------------------------------------------------------------------------
    def spend(self, run_id: str) -> dict[str, float | int | None]:
        """Real (uncached) calls, tokens and USD entered under a run; USD None if any price is unknown."""
        with self.session() as session:
            rows = session.exec(select(SpendEntry).where(SpendEntry.run_id == run_id)).all()
        prices = [row.usd for row in rows]
        return {
            "calls": len(rows),
            "prompt_tokens": sum(row.prompt_tokens for row in rows),
            "completion_tokens": sum(row.completion_tokens for row in rows),
            "tokens": sum(row.prompt_tokens + row.completion_tokens for row in rows),
            "usd": None if any(p is None for p in prices) else sum(p or 0.0 for p in prices),
        }
