"""Where an optimization's model calls went: pilot, search, crowning, baselines, test.

Paid calls are counted per trial from the spend ledger, whose rows name their item (`t<seq>:<item
id>`), so each is attributed to the trial (and so the stage) that made it, even when an interruption
cut its item short; cache hits and items answered come from the node calls. What the ledger holds
beyond the trials is the optimizer's feedback agent, evaluations cut short and not resumed (no
stored stage), and, in runs stored by earlier releases, calls whose item the ledger did not name.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.optimize.trials import PaidCalls, run_paid, trial_calls
from agentscale.storage.db import Store


@dataclass
class StageSpend:
    stage: str
    evaluations: int = 0
    items: int = 0
    calls: int = 0  # paid calls (cache hits are not calls)
    cached_calls: int = 0
    tokens: int = 0  # paid tokens
    usd: float | None = 0.0

    def add_paid(self, paid: PaidCalls) -> None:
        self.calls += paid.calls
        self.tokens += paid.tokens
        self.usd = None if self.usd is None or paid.usd is None else self.usd + paid.usd


def spend_by_stage(store: Store, run_id: str, stages: dict[int, str]) -> tuple[list[StageSpend], list[StageSpend]]:
    """Spend per stage in first-seen order; then what belongs to no stored trial, each kind on its
    own row (empty ones left out): the feedback agent, and calls of no known stage."""
    rows: dict[str, StageSpend] = {}
    for seq in sorted(stages):
        rows.setdefault(stages[seq], StageSpend(stages[seq])).evaluations += 1
    items: dict[str, set[str]] = {}
    for call in trial_calls(store, run_id):
        if call.seq not in stages:
            continue
        row = rows[stages[call.seq]]
        items.setdefault(row.stage, set()).add(call.item_key)
        row.cached_calls += call.cached
    for stage, keys in items.items():
        rows[stage].items = len(keys)
    paid = run_paid(store, run_id)
    unknown = StageSpend("calls of no known stage (cut short by an interruption)")
    unknown.add_paid(paid.unknown)
    for seq, spent in paid.trials.items():
        (rows[stages[seq]] if seq in stages else unknown).add_paid(spent)
    agent = StageSpend("optimizer feedback agent")
    agent.add_paid(paid.agent)
    return list(rows.values()), [row for row in (agent, unknown) if row.calls]
