"""Where runs, calls, the response cache and handbooks are kept: one SQLite file."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from agentscale.errors import StorageError

SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest integer a SQLite column holds: a larger count or limit is refused where it is given."""


def sqlite_failure(exc: BaseException) -> sqlite3.DatabaseError | None:
    """The failure of the database itself under `exc` (SQLAlchemy wraps it), if that is what it is:
    an operational one (a full disk, a read-only file, a lock held too long), a damaged file
    ("database disk image is malformed"), or a row a newer release's schema refuses (a NOT NULL
    column this release does not know). Those were tracebacks, and a served graph's 500s. Any other
    constraint failure is this program's bug, left to show as one. A `StorageError` is one, raised
    with its cause."""
    if isinstance(exc, StorageError) and exc.__cause__ is not None:
        exc = exc.__cause__
    cause = getattr(exc, "orig", exc)
    if isinstance(cause, sqlite3.IntegrityError):
        return cause if "NOT NULL constraint failed" in str(cause) else None
    return cause if isinstance(cause, sqlite3.DatabaseError) else None


def damaged(cause: sqlite3.DatabaseError) -> bool:
    """Whether `cause` says the file itself is damaged (nothing a retry or more room fixes)."""
    return "malformed" in str(cause) or "not a database" in str(cause)


def busy(cause: sqlite3.DatabaseError) -> bool:
    """Whether `cause` is another connection holding the database past the busy timeout: it passes
    when that one commits, unlike a full disk or a read-only file."""
    return isinstance(cause, sqlite3.OperationalError) and ("locked" in str(cause) or "busy" in str(cause))


def database_trouble(cause: sqlite3.DatabaseError) -> str:
    """What the failure `cause` likely means, for the person who must fix it."""
    if damaged(cause):
        return "the file is damaged: restore a copy, or recover what it holds with sqlite3's .recover command"
    if isinstance(cause, sqlite3.IntegrityError):  # a NOT NULL column without a default (`sqlite_failure`)
        return "a column this release does not know: was the database made by a newer release of agentscale?"
    if busy(cause):
        return "another connection held it past the busy timeout: wait for it to finish"
    return "a read-only file, a full disk, another program holding it?"


def storage_error(path: object, cause: sqlite3.DatabaseError, doing: str) -> StorageError:
    """The `StorageError` to raise, from Python, when the database at `path` failed while `doing`."""
    return StorageError(f"the database {path} failed while {doing}: {cause} ({database_trouble(cause)})")


@contextmanager
def storage_errors_said(path: object, doing: str) -> Iterator[None]:
    """Around a run started from Python (`Graph.arun`, `Evaluation.run`, `Optimization.run`): a failure
    of the database under it leaves as a `StorageError` (sqlite3's own error was no AgentScaleError an
    app could catch as documented)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        cause = sqlite_failure(exc)
        if cause is None:
            raise
        raise storage_error(path, cause, doing) from exc
