"""The optimizer's progress is sent again while a long stage runs, with the calls paid so far."""

from __future__ import annotations

import asyncio
import itertools

from agentscale.optimize.progress import Progress, ProgressReporter


def test_a_long_stage_keeps_reporting_the_calls_paid_so_far() -> None:
    seen: list[Progress] = []
    paid = itertools.count(10)
    reporter = ProgressReporter(seen.append, lambda: next(paid), refresh_s=0.01)

    async def crowning_stage() -> None:
        async with reporter.refreshing():
            reporter.report(Progress(4, 4, 12, 0.5, 0.5, reporter.spent_calls(), "crowning"))
            await asyncio.sleep(0.2)  # an hour-long race, shortened
        stopped = len(seen)
        await asyncio.sleep(0.05)
        assert len(seen) == stopped  # the refresher ends with the run

    asyncio.run(crowning_stage())
    assert len(seen) >= 5 and {p.stage for p in seen} == {"crowning"}
    calls = [p.spent_calls for p in seen]
    assert calls == sorted(calls) and calls[-1] > calls[0]  # re-read each time, not the first figure


def test_without_a_callback_nothing_is_read_or_sent() -> None:
    def never() -> int:
        raise AssertionError("the store was read for nobody")

    reporter = ProgressReporter(None, never, refresh_s=0.01)

    async def stage() -> None:
        async with reporter.refreshing():
            reporter.report(Progress(0, 4, 0, None, None, reporter.spent_calls(), "single calls"))
            await asyncio.sleep(0.05)

    asyncio.run(stage())


def test_a_failed_refresh_is_skipped_and_the_stage_ends_normally() -> None:
    seen: list[Progress] = []
    reads = itertools.count()

    def flaky_store() -> int:
        read = next(reads)
        if read % 2:
            raise RuntimeError("database is locked")
        return read

    reporter = ProgressReporter(seen.append, flaky_store, refresh_s=0.01)

    async def stage() -> str:
        async with reporter.refreshing():
            reporter.report(Progress(4, 4, 12, 0.5, 0.5, 0, "testing"))
            await asyncio.sleep(0.2)
        return "done"

    assert asyncio.run(stage()) == "done"  # the failed reads neither stopped the refresher nor the stage
    assert len(seen) >= 4


def test_a_restage_names_the_races_step_and_keeps_the_stage_otherwise() -> None:
    """A race reports which step it is on (`restage("crowning: step 3")`); if the new name were
    dropped, the status would read "crowning" for an hour, and a refresh without a name must not
    erase the stage either."""
    seen: list[Progress] = []
    paid = itertools.count(7)
    reporter = ProgressReporter(seen.append, lambda: next(paid), refresh_s=60)
    reporter.restage("before any report")  # nothing reported yet: nothing to send again
    assert seen == []
    reporter.report(Progress(4, 4, 12, 0.5, 0.5, 3, "crowning"))
    reporter.restage("crowning: step 3")
    reporter.restage()
    assert [(p.stage, p.spent_calls) for p in seen] == [
        ("crowning", 3),
        ("crowning: step 3", 7),
        ("crowning: step 3", 8),
    ]
    assert {(p.iteration, p.evaluations, p.best_reward) for p in seen} == {(4, 12, 0.5)}
