"""Per-question budget enforcement: reserve a call's worst case before making it, settle after.

Independent nodes run concurrently, so checking "spent so far" alone would let two calls both pass
and together exceed a cap. Each call therefore reserves its worst case (estimated prompt plus its
full `max_tokens`) and the reservation is replaced by the actual figures when it returns. Cached
calls count like real ones: a graph must behave the same whether or not its answers are cached.
So the calls of one step (the nodes a run starts side by side) count each other at their worst case
even once answered: a cache hit, or a `sim/` call, answers before its siblings reserve, and the
re-run of a capped question made calls its first run had refused (5 samples under `max_tokens: 200`:
1 call, then 2 on the re-run, one of them paid), or refused calls it had made.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

from agentscale.errors import BudgetExceeded
from agentscale.graphs.spec import Budget


@dataclass
class Spend:
    """Resources of one call or of a run."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float = 0.0
    usd: float | None = 0.0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Spend, sign: int = 1) -> None:
        """Add `other` (subtract it with `sign=-1`)."""
        self.prompt_tokens += sign * other.prompt_tokens
        self.completion_tokens += sign * other.completion_tokens
        self.flops += sign * other.flops
        self.usd = None if self.usd is None or other.usd is None else self.usd + sign * other.usd


@dataclass
class RunLedger:
    """Spend of one graph run on one question, checked against the graph's `budget:`."""

    budget: Budget | None = None
    started: float = field(default_factory=time.monotonic)
    spent: Spend = field(default_factory=Spend)
    _reserved: dict[int, tuple[Spend, Hashable | None]] = field(default_factory=dict)  # worst case, step
    _next_id: int = 0
    # per step, its settled calls' worst cases and what they used (see the module docstring)
    _settled: dict[Hashable, tuple[Spend, Spend]] = field(default_factory=dict)
    # the run's calls waiting for an endpoint's slot ("queued") and holding one ("calling")
    _calls: dict[str, int] = field(default_factory=lambda: {"queued": 0, "calling": 0})
    _stalled_since: float | None = None  # since when every call of the run has been waiting
    _stalled_s: float = 0.0

    def elapsed(self, modelled_s: float = 0.0) -> float:
        """Time since the run started, less the time it was stalled behind other runs' calls (every
        call it had in flight waiting for an endpoint's slot): the wall clock's, or `modelled_s` (a
        call's start on the run's modelled clock: its inputs' latest finish) when later.

        Simulated calls take their modelled latency and no wall time, and a call answered from the
        cache replays its recorded latency in no time: on the wall clock alone a latency cap never
        bit on `sim/` routes, and a replay from the cache ran nodes its live run had skipped. A
        question queued behind the other questions of an eval spent its time cap waiting: 8 items of
        0.3 s calls on an endpoint of one slot under a 1 s cap scored 1.0 one at a time and 0.375
        eight at a time. Waiting behind a call of its own run (a sibling holding the only slot) counts."""
        stalled = self._stalled_s
        if self._stalled_since is not None:
            stalled += time.monotonic() - self._stalled_since
        return max(time.monotonic() - self.started - stalled, modelled_s)

    def queued(self) -> contextlib.AbstractContextManager[None]:
        """Around a call's wait for an endpoint's slot."""
        return self._counted("queued")

    def calling(self) -> contextlib.AbstractContextManager[None]:
        """Around a call holding an endpoint's slot."""
        return self._counted("calling")

    @contextlib.contextmanager
    def _counted(self, state: str) -> Iterator[None]:
        self._calls[state] += 1
        self._note_stall()
        try:
            yield
        finally:
            self._calls[state] -= 1
            self._note_stall()

    def _note_stall(self) -> None:
        stalled = self._calls["queued"] > 0 and self._calls["calling"] == 0
        if stalled and self._stalled_since is None:
            self._stalled_since = time.monotonic()
        elif not stalled and self._stalled_since is not None:
            self._stalled_s += time.monotonic() - self._stalled_since
            self._stalled_since = None

    def remaining_time(self, modelled_s: float = 0.0) -> float | None:
        if self.budget is None or self.budget.max_latency_s is None:
            return None
        return self.budget.max_latency_s - self.elapsed(modelled_s)

    def time_is_up(self, modelled_s: float = 0.0) -> BudgetExceeded:
        """The refusal a time cap gives once it has run out (or leaves no room for a retry)."""
        assert self.budget is not None and self.budget.max_latency_s is not None
        return BudgetExceeded("max_latency_s", self.budget.max_latency_s, self.elapsed(modelled_s))

    def reserve(self, projected: Spend, modelled_s: float = 0.0, step: Hashable | None = None) -> int:
        """Reserve a call's worst case; raise BudgetExceeded when a cap would be crossed (a call that
        starts at `modelled_s` on the run's modelled clock: see `elapsed`). The settled calls of its
        `step` count at their worst case (None: a call of no step, whose siblings count as used)."""
        if self.budget is not None:
            total = Spend(self.spent.prompt_tokens, self.spent.completion_tokens, self.spent.flops, self.spent.usd)
            for held, _ in self._reserved.values():
                total.add(held)
            if step is not None and step in self._settled:
                worst, used = self._settled[step]
                total.add(worst)
                total.add(used, sign=-1)
            total.add(projected)
            budget = self.budget
            if budget.max_tokens is not None and total.tokens > budget.max_tokens:
                raise BudgetExceeded("max_tokens", budget.max_tokens, total.tokens)
            if budget.max_flops is not None and total.flops > budget.max_flops:
                raise BudgetExceeded("max_flops", budget.max_flops, total.flops)
            if budget.max_usd is not None and total.usd is not None and total.usd > budget.max_usd:
                raise BudgetExceeded("max_usd", budget.max_usd, total.usd)
            remaining = self.remaining_time(modelled_s)
            if remaining is not None and remaining <= 0:
                raise self.time_is_up(modelled_s)
        self._next_id += 1
        self._reserved[self._next_id] = (projected, step)
        return self._next_id

    def settle(self, reservation: int, actual: Spend | None) -> None:
        """Replace a reservation by what the call really used (None: the call failed, nothing used)."""
        projected, step = self._reserved.pop(reservation)
        if actual is not None:
            self.spent.add(actual)
        if step is not None:
            worst, used = self._settled.setdefault(step, (Spend(), Spend()))
            worst.add(projected)
            used.add(actual or Spend())

    def overrun(self) -> str | None:
        """Which cap the spend has passed, in words, or None. A reservation counts the prompt from an
        estimate (characters/3), so a call whose prompt is longer in tokens than estimated (digit runs:
        a real tokenizer counts ` 7` as one token) can end past a cap; no call starts after that, and
        the run must say it happened instead of reporting a run within its caps."""
        budget, spent = self.budget, self.spent
        if budget is None:
            return None
        for cap, limit, used in (
            ("max_tokens", budget.max_tokens, spent.tokens),
            ("max_flops", budget.max_flops, spent.flops),
            ("max_usd", budget.max_usd, spent.usd),
        ):
            if limit is not None and used is not None and used > limit:
                return f"budget {cap}={_amount(limit)} {OVERRUN} ({_amount(used)}; prompts were estimated)"
        return None

    def late(self, finished_at_s: float) -> str | None:
        """The time cap passed by a call that started in time and ended after it, in words, or None:
        a modelled latency (a `sim/` call, a replay from the cache) is known only once the call is
        made, so the run must say it ended past its cap (a sim call of 3.34 s under 0.05 s said nothing)."""
        budget = self.budget
        if budget is None or budget.max_latency_s is None:
            return None
        ended = self.elapsed(finished_at_s)
        if ended <= budget.max_latency_s:
            return None
        return f"budget max_latency_s={_amount(budget.max_latency_s)} {OVERRUN} (the call ended at {ended:.3g} s)"


@dataclass(frozen=True)
class CallTime:
    """A call's view of its run's time cap, for the gateway: the time left when the call gets its
    endpoint's slot (not when it starts waiting for one), and the run told of its waits."""

    ledger: RunLedger
    starts_at_s: float = 0.0  # the call's start on the run's modelled clock (see `RunLedger.elapsed`)

    def remaining(self) -> float | None:
        return self.ledger.remaining_time(self.starts_at_s)

    def queued(self) -> contextlib.AbstractContextManager[None]:
        return self.ledger.queued()

    def calling(self) -> contextlib.AbstractContextManager[None]:
        return self.ledger.calling()


OVERRUN = "exceeded by the calls' actual usage"


def is_overrun(reason: str | None) -> bool:
    """Whether a `stopped_reason` says only that a cap was passed by calls already made: the graph ran
    to its end (an item so stopped is finished, not cut short)."""
    return reason is not None and reason.startswith("budget ") and reason.partition(" (")[0].endswith(OVERRUN)


def cut_after_overrun(refusal: str, overrun: str) -> str:
    """A refusal that followed an overrun, saying both: the refusal alone read as if the run had kept
    within its caps ("would be exceeded" after 339 tokens of a 200 cap were spent)."""
    return f"{refusal} (the calls had already passed a cap: {overrun})"


def _amount(value: float) -> str:
    """A cap or a spend as people read it: 1,000,000 tokens, not 1e+06."""
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"
