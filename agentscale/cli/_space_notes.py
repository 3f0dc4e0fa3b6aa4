"""What a valid search space would do that its author may not expect where the command runs: said by
`validate` as notes and by `optimize` as it starts (a space whose minibatch outgrew its train split,
or whose sim/ models were given a real task, ran its whole search without a word)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from agentscale.cli._options import unset_api_keys
from agentscale.graphs.simulated import sim_models_on_another_task

if TYPE_CHECKING:
    from agentscale.optimize.space import SpaceSpec
    from agentscale.tasks import TaskItem


def space_notes(space: SpaceSpec, task: str, train: Sequence[TaskItem]) -> list[str]:
    """The notes on `space` with its task (named `task`) and train split `train`: unset API keys,
    bundled models not pulled here, prompt lengths guessed, a minibatch larger than the split, a cost
    weight without a compute budget (`scalarize`: it then weighs raw compute units, ~budget times
    more than the same weight with one), sim/ models on another task."""
    from agentscale.optimize.problem import guessed_lengths_note, not_pulled_here
    from agentscale.optimize.space import own_agent_model

    agent = own_agent_model(space)  # a model of its own is no alias of `models:`
    notes = unset_api_keys(space.models) + unset_api_keys({"agent_model": agent} if agent else {}, "optimizer")
    notes += not_pulled_here(space)
    guessed = guessed_lengths_note(space, [item.question for item in train])
    if guessed is not None:
        notes.append(guessed)
    if space.optimizer.minibatch > len(train):  # the search takes what there is, without a word
        notes.append(
            f"optimizer.minibatch: {space.optimizer.minibatch} is more than the {len(train)} train items: "
            f"each search evaluation answers those {len(train)}"
        )
    cost = space.objective.cost
    if cost > 0 and space.budget.compute is None:  # the weight's unit changes without a word
        notes.append(
            f"objective.cost: {cost:g} weighs each compute unit (one 1B-model call) a question takes, as there "
            f"is no budget.compute to divide it by: a graph of 3 units loses {3 * cost:.3g} of reward (accuracy "
            "1.0 is 1); set budget.compute, or a weight that small"
        )
    mismatch = sim_models_on_another_task([model.model for model in space.models.values()], task)
    if mismatch is not None:
        notes.append(mismatch)
    return notes
