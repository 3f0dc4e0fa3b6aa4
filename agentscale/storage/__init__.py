"""Where runs, calls, the response cache and handbooks are kept: one SQLite file."""

import sqlite3

SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest integer a SQLite column holds: a larger count or limit is refused where it is given."""


def sqlite_failure(exc: BaseException) -> sqlite3.OperationalError | None:
    """The SQLite error under `exc` (SQLAlchemy wraps it), if that is what it is."""
    cause = getattr(exc, "orig", exc)
    return cause if isinstance(cause, sqlite3.OperationalError) else None
