"""The run ledger (`models/budget.RunLedger`): its caps at their exact limits, its FLOPs and USD caps,
and the time it does not count while every call of a run waits behind other runs."""

from __future__ import annotations

import time

import pytest

from agentscale.errors import BudgetExceeded
from agentscale.graphs.spec import Budget
from agentscale.models.budget import RunLedger, Spend


def test_a_reservation_exactly_at_a_cap_is_allowed_and_one_past_it_refused() -> None:
    """A call whose worst case lands exactly on `max_tokens` or `max_usd` keeps within the cap (as
    `overrun` says of a spend exactly at it); refusing it stopped runs one call early."""
    ledger = RunLedger(Budget(max_tokens=100, max_usd=1.0))
    ledger.reserve(Spend(50, 50, 0.0, 1.0))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Spend(1, 0, 0.0, 0.0))
    assert info.value.cap == "max_tokens"
    usd_only = RunLedger(Budget(max_usd=1.0))
    usd_only.reserve(Spend(1, 1, 0.0, 0.75))
    usd_only.reserve(Spend(1, 1, 0.0, 0.25))  # exactly $1.00 in all: allowed
    with pytest.raises(BudgetExceeded) as info:
        usd_only.reserve(Spend(1, 1, 0.0, 0.01))
    assert info.value.cap == "max_usd"


def test_the_flops_cap_counts_settled_calls_and_reservations() -> None:
    """`max_flops` (the optimizer's compute budget) must refuse a call that would cross it, counting
    what settled calls used: a ledger that dropped their FLOPs let every call through."""
    ledger = RunLedger(Budget(max_flops=1e12))
    ledger.settle(ledger.reserve(Spend(1, 1, 6e11)), Spend(1, 1, 6e11))
    assert ledger.spent.flops == 6e11
    held = ledger.reserve(Spend(1, 1, 3e11))
    with pytest.raises(BudgetExceeded) as info:
        ledger.reserve(Spend(1, 1, 2e11))
    assert info.value.cap == "max_flops"
    ledger.settle(held, None)
    ledger.reserve(Spend(1, 1, 2e11))  # the failed call's reservation is given back


def test_calls_of_one_step_count_each_other_at_their_worst_case_once_answered() -> None:
    """Whether a sibling answered before a call reserved (a cache hit, a `sim/` call) or not (a live
    call in flight) must not change what the cap admits; a call of a later step counts what it used."""
    ledger = RunLedger(Budget(max_tokens=300))
    ledger.settle(ledger.reserve(Spend(50, 100), step=0), Spend(50, 10))  # answered short: 60 used
    with pytest.raises(BudgetExceeded):  # its sibling counts it at its worst case, 150: 300 in all is
        ledger.reserve(Spend(50, 101), step=0)  # one token too many, as if it were still in flight
    ledger.settle(ledger.reserve(Spend(50, 100), step=0), Spend(50, 100))
    ledger.reserve(Spend(40, 50), step=1)  # the next step counts what both used: 60 + 150 + 90, not 390
    no_step = RunLedger(Budget(max_tokens=300))  # a call of no step (a handbook build's) counts what it used
    no_step.settle(no_step.reserve(Spend(50, 100)), Spend(50, 10))
    no_step.reserve(Spend(50, 190))


def test_time_every_call_of_a_run_waits_for_a_slot_is_not_counted_but_calling_time_is() -> None:
    """A run whose calls all wait behind other runs' calls is stalled, and that time is not its to
    count; once one of its calls holds a slot, its siblings' waits count. Stalls add up across waits."""
    ledger = RunLedger(Budget(max_latency_s=10.0))
    for _ in range(2):  # two separate stalls: both are left out
        with ledger.queued():
            time.sleep(0.15)
    assert ledger.elapsed() < 0.1
    with ledger.calling(), ledger.queued():  # a sibling waits while another call runs: counted
        time.sleep(0.15)
    assert ledger.elapsed() >= 0.15


def test_a_call_ending_exactly_at_the_time_cap_is_not_late() -> None:
    ledger = RunLedger(Budget(max_latency_s=5.0))
    assert ledger.late(5.0) is None
    late = ledger.late(5.01)
    assert late is not None and "max_latency_s" in late
