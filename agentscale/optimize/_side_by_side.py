"""Evaluations run side by side: a race step's graphs, a search iteration's proposals, the test
split's baselines. One at a time, each evaluation's slowest items left the model servers idle while
the next waited (a local 1.5B model answered 1 request where it could batch 8); side by side, one
evaluation's tail overlaps the next one's start. The gateway answers a request already in flight
once, so running side by side pays for no call that running in turn would not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def side_by_side(evaluations: list[Awaitable[T]], stop: type[Exception]) -> tuple[list[T], Exception | None]:
    """Await every evaluation; the results of those that finished, in the order given, and the first
    `stop` raised (what the others measured stands). Any other error is raised once all settled, so
    no finished evaluation is lost to a neighbour's failure."""
    outcomes = await asyncio.gather(*evaluations, return_exceptions=True)
    results: list[T] = []
    stopped: Exception | None = None
    for outcome in outcomes:
        if isinstance(outcome, stop):
            stopped = stopped or outcome
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(outcome)
    return results, stopped
