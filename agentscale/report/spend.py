"""Where an optimization's model calls went: pilot, search, crowning, baselines, test.

Paid calls are counted per trial from the spend ledger, whose rows name their item (`t<seq>:<item
id>`), so each is attributed to the trial (and so the stage) that made it, even when an interruption
cut its item short; cache hits and items answered come from the node calls. What the ledger holds
beyond the trials is the optimizer's feedback agent, the first try of evaluations a resume with
--retry-errors asked again (keyed by their kind), evaluations cut short and not resumed (no stored
stage), and, in runs stored by earlier releases, calls whose item the ledger did not name.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.optimize.trials import PaidCalls, run_paid, trial_calls
from agentscale.storage.db import Store


@dataclass
class StageSpend(PaidCalls):
    """A stage's paid calls, tokens and USD (`PaidCalls`; cache hits are not calls), and what else
    the report's row shows."""

    stage: str = ""
    evaluations: int = 0
    items: int = 0
    cached_calls: int = 0


def spend_by_stage(
    store: Store, run_id: str, stages: dict[int, str], *, in_progress: bool = False
) -> tuple[list[StageSpend], list[StageSpend]]:
    """Spend per stage in first-seen order; then what belongs to no stored trial, each kind on its
    own row (empty ones left out): the feedback agent, and calls of no known stage (`in_progress`:
    of evaluations still running, whose trials are stored when they end; else cut short)."""
    rows: dict[str, StageSpend] = {}
    for seq in sorted(stages):
        rows.setdefault(stages[seq], StageSpend(stage=stages[seq])).evaluations += 1
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
    why = "of evaluations still running" if in_progress else "of no known stage (cut short by an interruption)"
    unknown = StageSpend(stage=f"calls {why}")
    unknown.merge(paid.unknown)
    for seq, spent in paid.trials.items():
        (rows[stages[seq]] if seq in stages else unknown).merge(spent)
    agent = StageSpend(stage="optimizer feedback agent")
    agent.merge(paid.agent)
    retried = StageSpend(stage="calls of evaluations asked again (--retry-errors): their first try")
    for spent in paid.retired.values():
        retried.merge(spent)
    return list(rows.values()), [row for row in (agent, retried, unknown) if row.calls]
