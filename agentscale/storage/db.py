"""The SQLite database: where it lives and the operations the runtime needs (how a file is opened and
brought up to this release's tables: `storage/_opening.py`).

WAL mode plus a busy timeout lets two processes (say, two evals) write to one file at once; every
write is a short transaction, committed as soon as the work it records is done.

The operations every model call and every question make (the cache lookup, the spend and cache rows
of a call, a question's rows, an eval item's verdict) go to the pooled sqlite3 connection directly,
with statements, defaults and type conversions prepared once per table from the sqlmodel tables
(:class:`_TableStatements`): SQLAlchemy's per-statement work (compile-cache lookup, execution
context, an ORM session for a lookup) cost several times the SQLite work itself
(docs/benchmarks.md). The rest goes through SQLAlchemy as usual.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

from pydantic_core import PydanticUndefined
from sqlalchemy import Table, event, func
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, SQLModel, col, create_engine, select

from agentscale.errors import AgentScaleError, RunBusy, RunNotFound
from agentscale.storage import sqlite_failure
from agentscale.storage._opening import (
    add_new_columns,
    configure_reading,
    configure_sqlite,
    connector,
    create_tables,
    refuse_an_older_schema,
    refuse_what_cannot_be_brought_up,
    unopenable,
)
from agentscale.storage.owner import current_owner, describe_owner, owner_alive
from agentscale.storage.tables import REFUSED, CacheEntry, NodeCall, Run, RunItem, SpendEntry, Trial, utcnow

DEFAULT_DB = Path(".agentscale") / "agentscale.db"


def default_db_path() -> Path:
    """`AGENTSCALE_DB` or ./.agentscale/agentscale.db."""
    return Path(os.environ.get("AGENTSCALE_DB") or DEFAULT_DB)


def database_file(path: str | Path | None = None) -> Path:
    """The database file a `Store(path)` opens: `path`, else `default_db_path()`. SQLite's name for
    a database in memory is refused: every pooled connection got its own empty one, and the first
    recorded run failed with "no such table"."""
    if path is None:
        return default_db_path()
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"a database is a file path (str or Path), not {type(path).__name__}")
    if str(path) == ":memory:":
        raise AgentScaleError("a database in memory cannot be shared by a run's connections: give a file path")
    return Path(path).expanduser()  # "~/runs.db" made a folder named "~" (a shell expands it unquoted)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


Row = tuple[type[SQLModel], dict[str, Any]]
"""A row to insert as (table model, column values): what the hot paths build instead of a model
instance. Missing or None values take the model's defaults, as `add_all` of an instance would."""


def as_row(row: SQLModel | Row) -> Row:
    """A model instance (or a row already) as a :data:`Row`."""
    if isinstance(row, tuple):
        return row
    return type(row), row.model_dump(exclude_none=True)


class _TableStatements:
    """One table's INSERT (and SELECT by primary key) as plain DB-API statements, prepared once."""

    def __init__(self, model: type[SQLModel], dialect: Dialect) -> None:
        table: Table = model.__table__  # type: ignore[attr-defined]
        self.model = model
        self.names = [column.name for column in table.columns]
        self._known = frozenset(self.names)
        self.insert_sql = (
            f"INSERT INTO {table.name} ({', '.join(self.names)}) VALUES ({', '.join('?' for _ in self.names)})"
        )
        where = " AND ".join(f"{column.name} = ?" for column in table.primary_key.columns)
        self.select_sql = f"SELECT {', '.join(self.names)} FROM {table.name} WHERE {where}"  # by primary key
        self._defaults: list[tuple[Any, Callable[[], Any] | None]] = []
        for name in self.names:
            field = model.model_fields[name]
            default = None if field.default is PydanticUndefined else field.default
            self._defaults.append((default, field.default_factory))  # type: ignore[arg-type]
        impls = [column.type.dialect_impl(dialect) for column in table.columns]
        self._bind = [impl.bind_processor(dialect) for impl in impls]
        self._result = [impl.result_processor(dialect, None) for impl in impls]

    def _refuse_unknown(self, values: dict[str, Any]) -> None:
        if not self._known.issuperset(values):
            unknown = ", ".join(sorted(set(values) - self._known))
            raise ValueError(f"{self.model.__name__} has no column(s) {unknown}")

    def params(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The INSERT's parameters: values, else the model's defaults, converted as SQLAlchemy would."""
        self._refuse_unknown(values)
        params = []
        for name, (default, factory), bind in zip(self.names, self._defaults, self._bind, strict=True):
            value = values.get(name)
            if value is None:
                value = factory() if factory is not None else default
            params.append(bind(value) if bind is not None and value is not None else value)
        return tuple(params)

    def assignments(self, values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """An UPDATE's `SET` clause for `values`, and its parameters converted as SQLAlchemy would."""
        self._refuse_unknown(values)
        binds = dict(zip(self.names, self._bind, strict=True))
        params = []
        for name, value in values.items():
            bind = binds[name]
            params.append(bind(value) if bind is not None and value is not None else value)
        return ", ".join(f"{name} = ?" for name in values), tuple(params)

    def instance(self, stored: Sequence[Any]) -> SQLModel:
        """A model instance from a SELECT of all columns."""
        converted = {
            name: result(value) if result is not None and value is not None else value
            for name, result, value in zip(self.names, self._result, stored, strict=True)
        }
        return self.model(**converted)


class SpendTotals(TypedDict):
    """A run's paid calls, tokens and USD (`Store.spend`); `usd` is None when any price is unknown."""

    calls: int
    prompt_tokens: int
    completion_tokens: int
    tokens: int
    usd: float | None


def broken_status(exc: BaseException) -> tuple[str, str | None]:
    """The status and error of a run `exc` ended early: `interrupted` when stopped (Ctrl-C,
    SIGTERM's exit, a caller's cancel), which a resume continues; `failed` with the error otherwise
    (an eval that died on an item was shown "interrupted; continue with --resume", which died again)."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
        return "interrupted", None
    return "failed", str(exc) or type(exc).__name__


def _delete_items(cursor: Any, run_id: str, condition: str, params: tuple[Any, ...]) -> None:
    """Delete a run's item rows matching `condition` (SQL on `item_key`) with their node calls: an item
    asked again had its calls twice otherwise, a failed attempt's among them (the ledger stays)."""
    for table in ("runitem", "nodecall"):
        cursor.execute(f"DELETE FROM {table} WHERE run_id = ? AND {condition}", (run_id, *params))


def _busy(run: Run) -> str:
    return (
        f"run {run.id} is being run by {describe_owner(run.owner)}; wait for it to finish, or stop it "
        "(kill it, or Ctrl-C where it runs) and try again"  # a build goes on by the same command, not --resume
    )


class Store:
    """A handle on one database file; cheap to share across coroutines of one process."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        """Open (creating it and its folder if needed) the database at `path`, else at `$AGENTSCALE_DB`,
        else ./.agentscale/agentscale.db; columns added by later releases are added to an older file.

        `read_only`: for what only reads an existing file (`runs show`, `report`, `validate`): nothing
        is created or written, so a database in a read-only folder (a shared copy of results) can be
        read, where WAL's -shm file cannot be made (it could not be opened at all), and a file is not
        changed by a command that only looks (validate turned an empty file into a database)."""
        self.path = database_file(path)
        self.read_only = read_only
        self.engine: Engine = create_engine(
            "sqlite://",
            creator=connector(self.path, read_only),
            poolclass=QueuePool,  # what a file URL gets; "sqlite://" alone would mean one in memory
        )
        event.listen(self.engine, "connect", configure_reading if read_only else configure_sqlite)
        try:
            if read_only:
                refuse_an_older_schema(self.engine, self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                refuse_what_cannot_be_brought_up(self.path)
                create_tables(self.engine)
                add_new_columns(self.engine, self.path)
        except (OSError, DBAPIError) as exc:
            self.engine.dispose()
            raise AgentScaleError(unopenable(self.path, exc)) from None
        # The engine and its pool hold each other, so a dropped Store's connections (three open files
        # each: the database, its -wal and -shm) waited for a full garbage collection: a loop that made
        # a Store per graph held 147 files open. Disposed as the Store goes, or at the process's exit,
        # where SQLite's last close also moves the -wal's pages into the database file.
        weakref.finalize(self, self.engine.dispose)
        self._statements: dict[type[SQLModel], _TableStatements] = {}

    def close(self) -> None:
        """Close the database's connections now (they close by themselves when the Store is dropped);
        a later use of this Store opens them again."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    def _table(self, model: type[SQLModel]) -> _TableStatements:
        statements = self._statements.get(model)
        if statements is None:
            statements = self._statements[model] = _TableStatements(model, self.engine.dialect)
        return statements

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor on a pooled sqlite3 connection, in one transaction: committed when the block ends,
        rolled back if it raises (sqlite3 opens the transaction at the first write)."""
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def add(self, row: SQLModel) -> None:
        self.add_all([row])

    def add_all(self, rows: Sequence[SQLModel]) -> None:
        """Insert model instances in one transaction."""
        self.insert([as_row(row) for row in rows])

    def insert(self, rows: Sequence[Row], *, keep_existing: bool = False) -> None:
        """Insert rows in one transaction: a graph run writes a handful of rows per question, so each
        is one prepared statement on the sqlite3 connection (no ORM unit of work, no SQL compiling).
        `keep_existing`: a row whose key is taken is left out, the stored one kept."""
        conflict = " ON CONFLICT DO NOTHING" if keep_existing else ""
        with self._cursor() as cursor:
            for model, values in rows:
                statements = self._table(model)
                cursor.execute(statements.insert_sql + conflict, statements.params(values))

    # runs -----------------------------------------------------------------------------------
    def create_run(
        self,
        kind: str,
        *,
        graph_name: str | None = None,
        graph_yaml: str | None = None,
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
        claim: bool = True,
    ) -> Run:
        """A new run, `running` and owned by this process (`claim`); without `claim`, `created`: owned by
        the process whose `reopen_run` first starts it (an `Evaluation` made in one process may run in
        another). A run stopped before it starts stays `created`, which `runs list` shows and a
        resume starts; it was `running` with no owner, forever, and never "process gone"."""
        run = Run(
            id=run_id or new_run_id(),
            kind=kind,
            status="running" if claim else "created",
            graph_name=graph_name,
            graph_yaml=graph_yaml,
            config_json=json.dumps(config or {}),
            owner=current_owner() if claim else None,
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

    def save_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """A running run's summary so far, which an interruption keeps (`finish_broken_run` writes
        none): an optimization records its crown before its test split, which took 73 minutes on a
        real model, and a Ctrl-C there left "nothing was crowned"."""
        self._update_run(run_id, {"summary_json": json.dumps(summary)})

    def finish_broken_run(self, run_id: str, exc: BaseException, summary: dict[str, Any] | None = None) -> None:
        """A run that ended before its end, with `broken_status`. Not when the database itself failed
        under it (`exc`): the write would wait out the same lock and hide the error under its own; the
        run then shows as running with its process gone, which `runs show` offers to resume."""
        if sqlite_failure(exc) is not None:
            return
        status, error = broken_status(exc)
        self.finish_run(run_id, status, summary, error=error)

    def reopen_run(self, run_id: str) -> None:
        """A resumed run is running again (it may have been stopped, interrupted or failed, or left
        `running` by a process that died), owned by this process. Refused while another live process
        runs it: two resumes at once paid for the same calls twice and stored every item twice. The
        claim is one conditional UPDATE, so of two resumes started together only one gets it."""
        run = self.refuse_if_busy(run_id)
        me = current_owner()
        with self._cursor() as cursor:
            cursor.execute(  # the owner and status read above, unchanged by another process since
                "UPDATE run SET status = 'running', finished = NULL, error = NULL, owner = ? "
                "WHERE id = ? AND owner IS ? AND status = ?",
                (me, run.id, run.owner, run.status),
            )
            claimed = cursor.rowcount == 1
        if not claimed:
            raise RunBusy(_busy(self.get_run(run.id)))

    def refuse_if_busy(self, run_id: str) -> Run:
        """The run, unless another live process runs it (`RunBusy`): what a resume checks before it
        says anything (a refused resume printed its header and progress first); `reopen_run` claims."""
        run = self.get_run(run_id)
        if run.status == "running" and run.owner != current_owner() and owner_alive(run.owner):
            raise RunBusy(_busy(run))
        return run

    def _update_run(self, run_id: str, fields: dict[str, Any]) -> None:
        """On the pooled connection, not an ORM flush: SQLAlchemy's mapper keeps a flush's statement
        in a process-wide cache keyed by the engine's dialect, so every Store that finished a run was
        kept alive (≈300 objects each, up to the cache's 150 entries)."""
        assignments, params = self._table(Run).assignments(fields)
        with self._cursor() as cursor:
            cursor.execute(f"UPDATE run SET {assignments} WHERE id = ?", (*params, run_id))
            if cursor.rowcount == 0:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")

    def get_run(self, run_id: str) -> Run:
        if not isinstance(run_id, str):  # None failed deep in SQLAlchemy ("'NoneType' has no attribute 'strip'")
            raise TypeError(f"a run id is a string (as `runs list` shows it), not {type(run_id).__name__}")
        with self.session() as session:
            run = session.get(Run, run_id)
            if run is None and not run_id.strip():  # "" was the prefix of every run: the first one answered
                raise RunNotFound(f"an empty run id names no run in {self.path}")
            if run is None:  # a prefix, as `runs list` shows ids (`_` and `%` match only themselves)
                matches = session.exec(select(Run).where(col(Run.id).startswith(run_id, autoescape=True))).all()
                if len(matches) == 1:
                    return matches[0]
                if matches:
                    ids = ", ".join(sorted(m.id for m in matches)[:5]) + (", ..." if len(matches) > 5 else "")
                    raise RunNotFound(f"{run_id!r} is the start of {len(matches)} runs ({ids}): give more of the id")
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            return run

    def has_run(self, run_id: str) -> bool:
        """Whether a run of exactly this id exists (no prefix matching)."""
        with self.session() as session:
            return session.get(Run, run_id) is not None

    def has_item(self, run_id: str, item_key: str) -> bool:
        """Whether the run holds an item row under this key (asked before every question of a run:
        on the raw connection: 0.013 ms of CPU, against 0.2 ms through an ORM session)."""
        with self._cursor() as cursor:
            cursor.execute("SELECT 1 FROM runitem WHERE run_id = ? AND item_key = ? LIMIT 1", (run_id, item_key))
            return cursor.fetchone() is not None

    def count_runs(self) -> int:
        with self._cursor() as cursor:
            cursor.execute("SELECT count(*) FROM run")
            return int(cursor.fetchone()[0])

    def list_runs(self, limit: int | None = 50, *, kind: str | None = None) -> list[Run]:
        """The latest `limit` runs (None: all), newest first; `kind` keeps those of one kind."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):  # "x": a SQLAlchemy error
            raise TypeError(f"limit takes a whole number, not {type(limit).__name__}")
        query = select(Run).order_by(Run.created.desc()).limit(limit)  # type: ignore[attr-defined]
        if kind is not None:
            query = query.where(Run.kind == kind)
        with self.session() as session:
            return list(session.exec(query).all())

    def runs_in_progress(self) -> list[Run]:
        """Runs marked running whose process is not known to have died (`Run.in_progress`)."""
        with self.session() as session:
            running = session.exec(select(Run).where(Run.status == "running")).all()
        return [run for run in running if run.in_progress()]

    def run_items(self, run_id: str) -> list[RunItem]:
        with self.session() as session:
            query = select(RunItem).where(RunItem.run_id == run_id).order_by(RunItem.id)  # type: ignore[arg-type]
            return list(session.exec(query).all())

    def drop_items(self, run_id: str, key_prefix: str) -> None:
        """Delete the run's item rows and node calls whose key starts with `key_prefix`, so they can
        be asked again (the spend ledger stays: what was paid stays counted)."""
        with self._cursor() as cursor:
            _delete_items(cursor, run_id, "substr(item_key, 1, ?) = ?", (len(key_prefix), key_prefix))

    def forget_items(self, run_id: str, item_keys: Sequence[str]) -> None:
        """Delete these items' rows and node calls, so a resume asks them again as if never asked (the
        ledger stays: what was paid stays counted, and the calls that answered replay from the cache)."""
        with self._cursor() as cursor:
            for key in item_keys:
                _delete_items(cursor, run_id, "item_key = ?", (key,))

    def failed_calls_by_item(self, run_id: str) -> dict[str, str]:
        """Each item's first failed model call ('node: error'): a call error after the gateway's retries,
        not a budget's refusal (a refused call is `skipped`)."""
        return self._first_call_by_item(run_id, col(NodeCall.error), col(NodeCall.status) == "failed")

    def budget_stops_by_item(self, run_id: str) -> dict[str, str]:
        """Each item whose run a budget cap stopped or was passed by (its `stopped_reason`, "budget ...")."""
        query = sql_select(col(RunItem.item_key), col(RunItem.stopped_reason)).where(
            col(RunItem.run_id) == run_id, col(RunItem.stopped_reason).startswith("budget ")
        )
        with self.session() as session:
            return {key: reason for key, reason in session.execute(query.order_by(col(RunItem.id))).all()}

    def cut_calls_by_item(self, run_id: str) -> dict[str, str]:
        """Each item's first model call whose reply stopped at its max_tokens ('node: ...'), among
        those that answered: its answer may be cut short."""
        cut = func.printf("cut at %d tokens", col(NodeCall.completion_tokens))
        return self._first_call_by_item(run_id, cut, col(NodeCall.truncated), col(NodeCall.status) == "ok")

    def _first_call_by_item(self, run_id: str, detail: Any, *conditions: Any) -> dict[str, str]:
        """Each item's first node call meeting `conditions`, as 'node: detail' (`detail` a column or
        SQL expression of the call)."""
        query = (
            sql_select(col(NodeCall.item_key), col(NodeCall.node_id), detail)
            .where(col(NodeCall.run_id) == run_id, *conditions)
            .order_by(col(NodeCall.id))
        )
        first: dict[str, str] = {}
        with self.session() as session:
            for key, node_id, said in session.execute(query).all():
                first.setdefault(key, f"{node_id}: {said}")
        return first

    def command_line(self, *words: str) -> str:
        """``agentscale WORDS`` as a user can paste it to act on a run of this database: with ``--db``
        (an absolute path) unless the command would open this database anyway, since a hint that
        leaves it out finds no such run in the default database (the CLI's hints and the reports')."""
        line = shlex.join(["agentscale", *words])
        if self.path.resolve() == default_db_path().resolve():
            return line
        return f"{line} --db {shlex.quote(str(self.path.resolve()))}"

    def run_folder(self, run_id: str) -> Path:
        """Where a run's files go, beside the database: its report, best graph, drawing and plot. An
        absolute path: an optimization stores its best graph's and front's paths in its summary, and
        relative to where it ran (the default database's `.agentscale/...`) they named no file from
        anywhere else, while the same output's plot path was absolute."""
        return self.path.parent.resolve() / "runs" / run_id

    def drop_trials(self, run_id: str, from_seq: int = 0) -> None:
        """Delete an optimization's trials from evaluation `from_seq` on, with their items' rows and
        node calls (`t<seq>:<item>`), so a resume asks those evaluations again (the ledger stays, as
        in `drop_items`)."""
        with self._cursor() as cursor:
            cursor.execute("DELETE FROM trial WHERE run_id = ? AND seq >= ?", (run_id, from_seq))
            seq = "CAST(substr(item_key, 2, instr(item_key, ':') - 2) AS INTEGER)"
            _delete_items(cursor, run_id, f"item_key GLOB 't[0-9]*:*' AND {seq} >= ?", (from_seq,))

    def score_item(self, run_id: str, item_key: str, *, reference: str, correct: bool, detail: str) -> None:
        """Record the scorer's verdict on an answered item."""
        with self._cursor() as cursor:
            cursor.execute(
                "UPDATE runitem SET reference = ?, correct = ?, detail = ? WHERE run_id = ? AND item_key = ?",
                (reference, int(correct), detail, run_id, item_key),
            )

    def node_calls(self, run_id: str, item_key: str | None = None) -> list[NodeCall]:
        with self.session() as session:
            query = select(NodeCall).where(NodeCall.run_id == run_id)
            if item_key is not None:
                query = query.where(NodeCall.item_key == item_key)
            return list(session.exec(query.order_by(NodeCall.id)).all())  # type: ignore[arg-type]

    # cache ----------------------------------------------------------------------------------
    def cache_get(self, key: str) -> CacheEntry | None:
        statements = self._table(CacheEntry)
        connection = self.engine.raw_connection()
        try:
            cursor = connection.cursor()
            stored = cursor.execute(statements.select_sql, (key,)).fetchone()
            cursor.close()
        finally:
            connection.close()
        return None if stored is None else statements.instance(stored)  # type: ignore[return-value]

    def record_call(self, cache_entry: CacheEntry | dict[str, Any] | None, spend: SpendEntry | dict[str, Any]) -> None:
        """A real call's ledger row and cache entry (kept if one exists: concurrent identical calls);
        each given as a model instance or as its column values."""
        self.record_calls([(cache_entry, spend)])

    def record_calls(
        self, calls: Sequence[tuple[CacheEntry | dict[str, Any] | None, SpendEntry | dict[str, Any]]]
    ) -> None:
        """Several real calls in one transaction (a Ray driver records what its workers paid for)."""
        cache, ledger = self._table(CacheEntry), self._table(SpendEntry)
        with self._cursor() as cursor:
            for cache_entry, spend in calls:
                if cache_entry is not None:
                    values = cache_entry if isinstance(cache_entry, dict) else cache_entry.model_dump()
                    cursor.execute(cache.insert_sql + " ON CONFLICT DO NOTHING", cache.params(values))
                values = spend if isinstance(spend, dict) else spend.model_dump(exclude_none=True)
                cursor.execute(ledger.insert_sql, ledger.params(values))

    def has_cached(self, routes: Sequence[str]) -> bool:
        """Whether the response cache holds anything for these routes (one indexed lookup)."""
        with self.session() as session:
            query = select(CacheEntry.key).where(CacheEntry.route.in_(routes)).limit(1)  # type: ignore[attr-defined]
            return session.exec(query).first() is not None

    def trials(self, run_id: str, *, with_refused: bool = False) -> list[Trial]:
        """A run's evaluations by `seq`; `with_refused` adds those the spend cap refused (for replay)."""
        with self.session() as session:
            query = select(Trial).where(Trial.run_id == run_id)
            if not with_refused:
                query = query.where(Trial.kind != REFUSED)
            return list(session.exec(query.order_by(Trial.seq)).all())  # type: ignore[arg-type]

    # spend ----------------------------------------------------------------------------------
    def paid_calls_by_item(self, run_id: str) -> dict[str, int]:
        """How many real calls the run paid for each item (the ledger's `item_key`)."""
        counts = (
            sql_select(col(SpendEntry.item_key), func.count())
            .where(col(SpendEntry.run_id) == run_id)
            .group_by(col(SpendEntry.item_key))
        )
        with self.session() as session:
            return {key: int(count) for key, count in session.execute(counts).all() if key is not None}

    def spend(self, run_id: str) -> SpendTotals:
        """Real (uncached) calls, tokens and USD entered under a run; USD None if any price is unknown."""
        # summed in SQL: the optimizer's progress reads this every few seconds of a run of thousands of calls
        usd = col(SpendEntry.usd)
        totals = sql_select(
            func.count(),
            func.coalesce(func.sum(col(SpendEntry.prompt_tokens)), 0),
            func.coalesce(func.sum(col(SpendEntry.completion_tokens)), 0),
            func.count(usd),
            func.coalesce(func.sum(usd), 0.0),
        ).where(col(SpendEntry.run_id) == run_id)
        with self.session() as session:
            calls, prompt_tokens, completion_tokens, priced, total_usd = session.execute(totals).one()
        return {
            "calls": int(calls),
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
            "tokens": int(prompt_tokens + completion_tokens),
            "usd": None if priced < calls else float(total_usd),
        }
