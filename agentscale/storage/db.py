"""The SQLite database: where it lives, how it is opened, and the operations the runtime needs.

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
import shutil
import sqlite3
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypedDict

from pydantic_core import PydanticUndefined
from sqlalchemy import Column, DateTime, DefaultClause, Table, event, func, text
from sqlalchemy import select as sql_select
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault
from sqlmodel import Session, SQLModel, col, create_engine, select

from agentscale.errors import AgentScaleError, RunBusy, RunNotFound
from agentscale.graphs.io import blocking_file, why_unwritable
from agentscale.storage import tables
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


_BUSY_TIMEOUT_S = 30.0
_LEAST_ROOM_BYTES = 64 * 1024  # below this much free room, a failed open is a full disk (`_disk_full`)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _configure_reading(dbapi_connection: Any, _record: Any) -> None:
    """A read-only connection: a busy timeout, and no journal mode set (setting WAL writes the file)."""
    dbapi_connection.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")


def _connector(path: Path, read_only: bool) -> Callable[[], sqlite3.Connection]:
    """How the engine connects to `path`: by its name (in a sqlite:/// URL, "a?x.db" opened a.db and
    "%41.db" A.db), or read-only through an escaped file: URI; `immutable` where the folder takes no
    file, as a WAL database's reader must otherwise make its -shm file there."""
    if not read_only:
        file = str(path)
        return lambda: sqlite3.connect(file, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
    uri = f"{path.absolute().as_uri()}?mode=ro"
    if not os.access(path.parent, os.W_OK):
        uri += "&immutable=1"
    return lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)


def _use_wal(cursor: Any) -> None:
    """Put the file in WAL mode, a property of the file that later opens only read. SQLite converts
    under an exclusive lock and, when another connection holds the write lock, fails at once with
    "database is locked" without running the busy handler (a process opening a new database while
    another created its tables failed in CI), so the conversion is retried within the busy timeout.
    A file that refuses WAL without an error (in memory) keeps its mode."""
    deadline, pause = time.monotonic() + _BUSY_TIMEOUT_S, 0.005
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


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


def _unopenable(path: Path, error: OSError | DBAPIError) -> str:
    """Why the database cannot be opened, and what to do: a wrong path (a directory, a file of another
    kind, a folder that is a file) wants another path; a lock or a permission wants the reason."""
    reason = str(error.orig) if isinstance(error, DBAPIError) else why_unwritable(path, error)
    if path.is_dir() or "not a database" in reason or blocking_file(path) is not None:
        what = "is a directory" if path.is_dir() else f"cannot be used ({reason})"
        return f"database {path} {what}: give a SQLite file path (--db, or AGENTSCALE_DB)"
    if "locked" in reason:
        return f"database {path} is locked by another process ({reason}): wait for it, or give another --db"
    if _disk_full(path.parent):  # SQLite said "disk I/O error": it could not make its -shm file
        return f"database {path} cannot be opened: the disk holding it is full ({reason}); free some space"
    read_only = next((p for p in (path.parent, path) if p.exists() and not os.access(p, os.W_OK)), None)
    if read_only is not None:  # SQLite said only "unable to open database file"
        what = "its folder" if read_only == path.parent else "the file"
        return (
            f"database {path} cannot be written: {what} is read-only (SQLite keeps its -wal and -shm files "
            "beside the database); commands that only read it (runs, report) still can: give another --db"
        )
    return f"database {path} cannot be opened ({reason})"


def _disk_full(folder: Path) -> bool:
    """Less room in `folder` than SQLite's shared-memory file takes (32 KiB) and a page or two more."""
    try:
        return shutil.disk_usage(folder).free < _LEAST_ROOM_BYTES
    except OSError:
        return False


# agentscale's tables (`storage/tables.py`), not every SQLModel table of the process: an app with
# tables of its own may share the file, and they are not ours to create or alter
_OWN_TABLES: list[Table] = [
    model.__table__
    for model in vars(tables).values()
    if isinstance(model, type) and issubclass(model, SQLModel) and hasattr(model, "__table__")
]


def _sql_default(column: Column[Any]) -> str | None:
    """A NOT NULL column's default as SQL: its constant as a literal, or for a time stamped on creation
    (`utcnow`) the moment of the insert; None when it has neither (a key, a value every insert gives)."""
    default = column.default
    value = default.arg if isinstance(default, ScalarElementColumnDefault) else None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    kind = getattr(column.type, "impl", column.type)  # sqlmodel's UTCDateTime decorates DateTime
    stamped = isinstance(default, CallableColumnDefault) and isinstance(kind, DateTime)
    return "CURRENT_TIMESTAMP" if stamped else None


def _give_sql_defaults(own: list[Table]) -> None:
    """Every NOT NULL column with a default has it in the SQL that creates it (`DEFAULT ...`): a
    database a later release made, with a NOT NULL column this release does not know, then still
    takes this release's rows. Left to Python, such a column made older releases fail on every
    insert ("NOT NULL constraint failed"), after their calls were paid (a store audit)."""
    for table in own:
        for column in table.columns:
            literal = None if column.nullable or column.server_default is not None else _sql_default(column)
            if literal is not None:
                column.server_default = DefaultClause(text(literal))


_give_sql_defaults(_OWN_TABLES)


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


def _add_new_columns(engine: Engine, path: Path) -> None:
    """Bring a database written by an earlier release up to the tables' columns. `create_all` makes
    missing tables only; a column added since is added here: nullable, or NOT NULL with its default
    for the rows already there (`cacheentry.latency_s` had made every older database unopenable,
    `runs list` included). Two processes may open an old database at once: the loser's duplicate is
    no error."""
    with engine.connect() as connection:
        for table in _OWN_TABLES:
            present = {row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table.name})")}
            for column in table.columns:
                if column.name in present:
                    continue
                kind = column.type.compile(engine.dialect)
                if not column.nullable:
                    kind += f" NOT NULL DEFAULT {_default_literal(column, path)}"
                try:
                    connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
                except DBAPIError as exc:
                    if "duplicate column" not in str(exc.orig):
                        raise
            connection.commit()


def _default_literal(column: Column[Any], path: Path) -> str:
    """The SQL literal of a NOT NULL column's default, for the rows an older release wrote."""
    literal = _sql_default(column)
    if literal is not None and literal != "CURRENT_TIMESTAMP":  # ALTER TABLE takes constants only
        return literal
    raise AgentScaleError(
        f"database {path} lacks column {column.table.name}.{column.name}, which has no default for the rows it "
        "holds: it was written by another release of agentscale, or by another program; give another --db"
    )


def _refuse_what_cannot_be_brought_up(path: Path) -> None:
    """Before anything is written (tables, WAL mode): refuse a file holding one of agentscale's
    tables without a NOT NULL column that cannot be added (`_default_literal` says why), read through
    a read-only connection. Refused only after the missing tables were created and WAL set, another
    program's SQLite file came back changed (8 tables more, another journal mode). Errors of the
    file itself are left to the open that follows, which says them."""
    if not path.is_file():
        return
    try:
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        for table in _OWN_TABLES:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table.name})")}
            for column in table.columns:
                if present and column.name not in present and not column.nullable:
                    _default_literal(column, path)
    except sqlite3.Error:
        return
    finally:
        connection.close()


def _refuse_an_older_schema(engine: Engine, path: Path) -> None:
    """A database opened read-only is read as it is: one an earlier release wrote, lacking a table or
    column added since, is refused in words (bringing it up to date writes it), not left to fail
    as "no such column" at the first query."""
    with engine.connect() as connection:
        tables = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables & {table.name for table in _OWN_TABLES}:  # an empty file, another program's
            raise AgentScaleError(f"database {path} holds none of agentscale's tables: nothing has run with it")
        for table in _OWN_TABLES:
            present = {row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table.name})")}
            missing = [column.name for column in table.columns if column.name not in present]
            if missing:
                lacks = f"column {table.name}.{missing[0]}" if present else f"table {table.name}"
                raise AgentScaleError(
                    f"database {path} was written by an earlier release (no {lacks}); this "
                    "command only reads it, and bringing it up to date writes it: run a command that writes "
                    "(eval, run) on it once where it can be written, or give another --db"
                )


def _create_tables(engine: Engine) -> None:
    """The tables and indexes this release needs. `create_all` checks for each, then creates it: two
    processes opening a new database at once (an eval and an optimize started together) both saw
    none, and the slower one failed with "table run already exists". Retrying lost again on the next
    table with four processes (CI: "table behavior already exists"), so the check and the creation
    run in one write transaction, taken only when a table is missing: a database that has them all,
    read-only ones included, is opened without a write lock."""
    with engine.connect() as connection:
        present = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if all(table.name in present for table in _OWN_TABLES):
            return
        connection.rollback()
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        SQLModel.metadata.create_all(connection, tables=_OWN_TABLES)
        connection.commit()


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
            creator=_connector(self.path, read_only),
            poolclass=QueuePool,  # what a file URL gets; "sqlite://" alone would mean one in memory
        )
        event.listen(self.engine, "connect", _configure_reading if read_only else _configure_sqlite)
        try:
            if read_only:
                _refuse_an_older_schema(self.engine, self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                _refuse_what_cannot_be_brought_up(self.path)
                _create_tables(self.engine)
                _add_new_columns(self.engine, self.path)
        except (OSError, DBAPIError) as exc:
            self.engine.dispose()
            raise AgentScaleError(_unopenable(self.path, exc)) from None
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

    def finish_broken_run(self, run_id: str, exc: BaseException, summary: dict[str, Any] | None = None) -> None:
        """A run that ended before its end, with `broken_status`."""
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

    def list_runs(self, limit: int = 50) -> list[Run]:
        """The latest `limit` runs, newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int):  # "x" was a SQLAlchemy ValueError
            raise TypeError(f"limit takes a whole number, not {type(limit).__name__}")
        with self.session() as session:
            query = select(Run).order_by(Run.created.desc()).limit(limit)  # type: ignore[attr-defined]
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
        query = (
            sql_select(col(NodeCall.item_key), col(NodeCall.node_id), col(NodeCall.error))
            .where(col(NodeCall.run_id) == run_id, col(NodeCall.status) == "failed")
            .order_by(col(NodeCall.id))
        )
        first: dict[str, str] = {}
        with self.session() as session:
            for key, node_id, error in session.execute(query).all():
                first.setdefault(key, f"{node_id}: {error}")
        return first

    def run_folder(self, run_id: str) -> Path:
        """Where a run's files go, beside the database: its report, best graph, drawing and plot."""
        return self.path.parent / "runs" / run_id

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
