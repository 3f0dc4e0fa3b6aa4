"""How a database file is opened: its connections (WAL, or read-only), why one cannot be opened, and
bringing its tables up to this release's (creating, adding columns, refusing what cannot be added)
before anything else touches it. `Store` (`storage/db.py`) opens through here and holds the queries.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, DateTime, DefaultClause, Table, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault
from sqlmodel import SQLModel

from agentscale.errors import AgentScaleError
from agentscale.graphs.io import blocking_file, why_unwritable
from agentscale.storage import tables

_BUSY_TIMEOUT_S = 30.0
_LEAST_ROOM_BYTES = 64 * 1024  # below this much free room, a failed open is a full disk (`_disk_full`)


def configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
    _use_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def configure_reading(dbapi_connection: Any, _record: Any) -> None:
    """A read-only connection: a busy timeout, and no journal mode set (setting WAL writes the file)."""
    dbapi_connection.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")


def connector(path: Path, read_only: bool) -> Callable[[], sqlite3.Connection]:
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


def unopenable(path: Path, error: OSError | DBAPIError) -> str:
    """Why the database cannot be opened, and what to do: a wrong path (a directory, a file of another
    kind, a folder that is a file) wants another path; a lock or a permission wants the reason."""
    reason = str(error.orig) if isinstance(error, DBAPIError) else why_unwritable(path, error)
    if path.is_dir() or "not a database" in reason or blocking_file(path) is not None:
        what = "is a directory" if path.is_dir() else f"cannot be used ({reason})"
        return f"database {path} {what}: give a SQLite file path (--db, or AGENTSCALE_DB)"
    if path.exists() and not path.is_file():  # SQLite said "disk I/O error"
        return f"database {path} is not a regular file (a pipe or a device): give a SQLite file path (--db)"
    if path.is_symlink() and not path.exists():  # SQLite said "unable to open database file"
        return f"database {path} is a link to {os.readlink(path)}, which does not exist: give a SQLite file path"
    if "locked" in reason:
        return f"database {path} is locked by another process ({reason}): wait for it, or give another --db"
    if _disk_full(path.parent):  # SQLite said "disk I/O error": it could not make its -shm file
        return f"database {path} cannot be opened: the disk holding it is full ({reason}); free some space"
    read_only = next((p for p in (path.parent, path) if p.exists() and not os.access(p, os.W_OK)), None)
    if read_only is not None:  # SQLite said only "unable to open database file"
        what = "its folder" if read_only == path.parent else "the file"
        readers = "commands that only read it (runs, report) still can: " if path.exists() else ""
        return (
            f"database {path} cannot be written: {what} is read-only (SQLite keeps its -wal and -shm files "
            f"beside the database); {readers}give another --db"
        )
    return f"database {path} cannot be opened ({reason})"


def _disk_full(folder: Path) -> bool:
    """Less room in `folder` than SQLite's shared-memory file takes (32 KiB) and a page or two more;
    not a pseudo filesystem (/proc, /sys: no size at all), which "free some space" cannot help."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return False
    return usage.total > 0 and usage.free < _LEAST_ROOM_BYTES


# agentscale's tables (`storage/tables.py`), not every SQLModel table of the process: an app with
# tables of its own may share the file, and they are not ours to create or alter
OWN_TABLES: list[Table] = [
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


_give_sql_defaults(OWN_TABLES)


def add_new_columns(engine: Engine, path: Path) -> None:
    """Bring a database written by an earlier release up to the tables' columns. `create_all` makes
    missing tables only; a column added since is added here: nullable, or NOT NULL with its default
    for the rows already there (`cacheentry.latency_s` had made every older database unopenable,
    `runs list` included). Two processes may open an old database at once: the loser's duplicate is
    no error."""
    with engine.connect() as connection:
        for table in OWN_TABLES:
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


def refuse_what_cannot_be_brought_up(path: Path) -> None:
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
        for table in OWN_TABLES:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table.name})")}
            for column in table.columns:
                if present and column.name not in present and not column.nullable:
                    _default_literal(column, path)
    except sqlite3.Error:
        return
    finally:
        connection.close()


def refuse_an_older_schema(engine: Engine, path: Path) -> None:
    """A database opened read-only is read as it is: one an earlier release wrote, lacking a table or
    column added since, is refused in words (bringing it up to date writes it), not left to fail
    as "no such column" at the first query."""
    with engine.connect() as connection:
        names = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not names & {table.name for table in OWN_TABLES}:  # an empty file, another program's
            raise AgentScaleError(f"database {path} holds none of agentscale's tables: nothing has run with it")
        for table in OWN_TABLES:
            present = {row[1] for row in connection.exec_driver_sql(f"PRAGMA table_info({table.name})")}
            missing = [column.name for column in table.columns if column.name not in present]
            if missing:
                lacks = f"column {table.name}.{missing[0]}" if present else f"table {table.name}"
                raise AgentScaleError(
                    f"database {path} was written by an earlier release (no {lacks}); this "
                    "command only reads it, and bringing it up to date writes it: run a command that writes "
                    "(eval, run) on it once where it can be written, or give another --db"
                )


def create_tables(engine: Engine) -> None:
    """The tables and indexes this release needs. `create_all` checks for each, then creates it: two
    processes opening a new database at once (an eval and an optimize started together) both saw
    none, and the slower one failed with "table run already exists". Retrying lost again on the next
    table with four processes (CI: "table behavior already exists"), so the check and the creation
    run in one write transaction, taken only when a table is missing: a database that has them all,
    read-only ones included, is opened without a write lock."""
    with engine.connect() as connection:
        present = {row[0] for row in connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if all(table.name in present for table in OWN_TABLES):
            return
        connection.rollback()
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        SQLModel.metadata.create_all(connection, tables=OWN_TABLES)
        connection.commit()
