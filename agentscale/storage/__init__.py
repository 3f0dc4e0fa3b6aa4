"""Where runs, calls, the response cache and handbooks are kept: one SQLite file."""

SQLITE_MAX_INTEGER = 2**63 - 1
"""The largest integer a SQLite column holds: a larger count or limit is refused where it is given."""
