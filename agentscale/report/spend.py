"""Where an optimization's model calls went: pilot, search, crowning, baselines, test.

Node calls are stored per item under `t<seq>:<item id>`, so each call is attributed to the trial
(and so the stage) that made it. The spend ledger has every paid call of the run; what it holds
beyond the node calls are the optimizer's own feedback-agent calls, which belong to no trial.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.optimize.trials import trial_calls
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


def spend_by_stage(store: Store, run_id: str, stages: dict[int, str]) -> tuple[list[StageSpend], StageSpend]:
    """Spend per stage in first-seen order, and the feedback agent's share of the ledger."""
    rows: dict[str, StageSpend] = {}
    for seq in sorted(stages):
        rows.setdefault(stages[seq], StageSpend(stages[seq])).evaluations += 1
    items: dict[str, set[str]] = {}
    for call in trial_calls(store, run_id):
        if call.seq not in stages:
            continue
        row = rows[stages[call.seq]]
        items.setdefault(row.stage, set()).add(call.item_key)
        if call.cached:
            row.cached_calls += 1
            continue
        row.calls += 1
        row.tokens += call.tokens
        row.usd = None if row.usd is None or call.usd is None else row.usd + call.usd
    for stage, keys in items.items():
        rows[stage].items = len(keys)
    ledger = store.spend(run_id)
    paid_calls = sum(r.calls for r in rows.values())
    paid_tokens = sum(r.tokens for r in rows.values())
    agent = StageSpend("optimizer feedback agent")
    agent.calls = max(0, ledger["calls"] - paid_calls)
    agent.tokens = max(0, ledger["tokens"] - paid_tokens)
    known = [r.usd for r in rows.values()]
    if ledger["usd"] is None or any(u is None for u in known):
        agent.usd = None
    else:
        agent.usd = max(0.0, ledger["usd"] - sum(u or 0.0 for u in known))
    return list(rows.values()), agent
