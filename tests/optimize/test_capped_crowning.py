"""A crowning race cut by the spend cap, on SIMULATED models: the finalists are still compared on
the same items."""

from __future__ import annotations

from pathlib import Path

from agentscale import Gateway, Store
from agentscale.graphs.located import load_located
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import space_from_data

SPACE = """\
name: capped
task: {name: "sim:math", train: 16, test: 16, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l3: {model: sim/llama-3b, params_b: 3.0}
roles: [assistant, fuser, vote, critic]
max_nodes: 5
budget: {compute: 12}
optimizer: {method: agent-reinforce, iterations: 4, samples: 3, minibatch: 6, seed: 0, max_spend: {calls: 140}}
"""


async def test_a_crowning_race_cut_by_the_spend_cap_compares_finalists_on_the_same_items(tmp_path: Path) -> None:
    """With max_spend.calls: 140 the cap stops the crowning race after its first step (4 of 16 train
    items): the single call, which answered all 16, was compared by its 16-item mean (43.8%) with
    graphs measured on 4 (50%), and the reason quoted both as if on the 4 items. Now every finalist is
    on the 4 items they share, and the reason says the cap cut the race."""
    space = space_from_data(load_located(SPACE, "s.yaml"), "s.yaml")
    result = await Optimization(space, Gateway(Store(tmp_path / "o.db")), space_text=SPACE, score_test=False).run()
    assert result.crowning is not None and len(result.crowning.finalists) >= 2
    items = {frozenset(f.observation.outcomes) for f in result.crowning.finalists}
    assert len(items) == 1 and len(next(iter(items))) < 16
    assert "the spend cap stopped the crowning race" in result.crowning.reason
