"""The generative model: what answer a simulated call gives, as a probability distribution.

One formula serves both the simulated provider (which samples one answer for one call) and the ground
truth (which needs the whole distribution for every item at once), so the two cannot disagree. Every
function is vectorised over items.

Answers are *categories*: 0 is the right answer, 1..K the item's distractors (see `items`). A call
depends on the item, the model, the role and the multiset of answers shown to it (a count per
category, never their order: the executor shows inputs in finishing order, which carries no
information about the answers), through two steps. Notation: d inputs, n_a of them with answer a,
k ≤ d different answers among them, b the item's difficulty, q = σ(θ − b) the call's competence on
the item.

1. **Own view.** The node forms its own answer o: right with probability σ(θ' − b), otherwise a
   distractor drawn from its family's plausibilities, where
       θ  = skill(model, task) + role boost − CONTEXT_PENALTY · doublings
       θ' = θ + recognition · (k − 1)/k · [the right answer is among the inputs]
   `doublings` counts how often the prompt (question + d typical completions) doubles beyond the
   model's `context_comfort`. A lone assistant has no boost and no penalty, so its accuracy is
   exactly the calibrated single-call accuracy. Recognition (the generation-verification gap) needs
   a contrast with *different* answers: a single shown answer, or one answer shown several times,
   does not stand out, so a chain gets none.
2. **Choice.** The node picks among the answers shown and its own view with a softmax over
       u(a) = conformity · log n_a                              (the majority pulls)
            + DISCERNMENT · q                    if a is right   (competent calls see the right one)
            + LURE / k · (1 − q) · (K·w_a − 1)   if a is wrong   (attractive distractors lure weak
                                                                  calls, most when shown alone)
            + trust                              if a = o        (its own view)
   (inputs only; its own view o competes with u(o) = trust when no input shows it), all divided by
   1 + CONFUSION · doublings, so long prompts make a model choose erratically. w_a is the
   distractor's plausibility. A verifier can only pass on an input.

Copies are not evidence: the contrast and the lure's dilution count different answers (k), not inputs
(d), so routing one answer to a node twice (through votes, which call no model) buys no recognition
and dilutes no lure; it only lengthens the prompt. The majority pull counts the answers as shown, since
a reader cannot tell agreement from a copy; the optimizer never builds a one-input vote (a copy).

What this produces, and why it matches the Agent-REINFORCE insights:
- *Width.* Parallel calls on one item share its difficulty and its distractors, so votes converge to
  the item's most popular answer: accuracy rises with width and plateaus. A fuser reading w inputs
  gains from recognition and the majority but pays the context penalty, so for small models fused
  accuracy rises, peaks and falls; larger models (more context comfort) peak later (insight 2).
- *Depth.* Along a chain of single-input refinements, scattered errors are repaired early, but an
  attractive distractor shown alone lures weak calls and a right answer has no recognition bonus to
  protect it, so mass drifts into the item's attractor: accuracy vs depth has an interior optimum,
  deeper for stronger models (insight 2).
- *Interaction.* Chains that drift into the same attractor lose the independence that made width
  pay, and a wide vote already repairs what early depth would repair, so wider graphs want shallower
  chains (insight 3).
- *Families.* Skills carry a per-task family offset (see `population`), and families err partly
  differently, so the best family and size depend on the task (insight 1).

The constants below were set by hand against these qualitative targets and the paper's pilot
figures (see docs/sim.md); they are not fitted to any real model's behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from agentscale.sim.items import ItemBank
from agentscale.sim.population import SimModel, skill
from agentscale.sim.profiles import profile

CONTEXT_PENALTY = 0.55  # skill (logit) lost per doubling of the prompt beyond the model's comfort
CONFUSION = 0.5  # extra blur of the choice between inputs per doubling beyond comfort
DISCERNMENT = 2.0  # pull of the right answer, shown as an input, on a call that is competent on the item
LURE = 3.0  # pull of an attractive distractor shown as the only input, on a call that is not competent


@dataclass(frozen=True)
class RoleBehavior:
    """How one role uses its own view and its inputs (see the module docstring for the formula)."""

    name: str
    boost: float  # own-view skill gained by the role's framing (hints, checking, judging)
    recognition: float  # own-view skill gained when the right answer is among the inputs
    trust: float  # weight of its own view when choosing between it and the inputs
    conformity: float  # pull towards answers several inputs share
    inputs_only: bool = False  # a verifier passes on one of its inputs, never a new answer
    length_factor: float = 1.0  # completion length relative to the item's typical completion


ROLES: dict[str, RoleBehavior] = {
    r.name: r
    for r in (
        RoleBehavior("assistant", 0.0, 0.0, 0.0, 0.0),
        RoleBehavior("refine", 0.0, 0.3, 0.0, 1.0),  # an assistant that sees other answers
        RoleBehavior("critic", 0.2, 0.6, 0.5, 0.5, length_factor=1.2),
        RoleBehavior("fuser", 0.1, 1.2, -0.3, 1.2, length_factor=0.9),
        RoleBehavior("verifier", 0.3, 1.2, 0.5, 0.3, inputs_only=True, length_factor=0.4),
    )
}
VOTE = "vote"


def behavior_role(role: str, has_inputs: bool) -> str:
    """The behaviour a graph role gets: an assistant with inputs refines; unknown roles act as one."""
    if role in ("critic", "fuser", "verifier", VOTE):
        return role
    return "refine" if has_inputs else "assistant"


# ---------------------------------------------------------------------------------------------
# count vectors: the multiset of inputs a node sees


@cache
def count_vectors(d: int, m: int) -> np.ndarray:
    """All ways d inputs fall into m answer categories, as an [n, m] int array (lexicographic)."""
    if m == 1:
        return np.array([[d]], dtype=np.int64)
    rows = [np.concatenate(([first], rest)) for first in range(d, -1, -1) for rest in count_vectors(d - first, m - 1)]
    return np.array(rows, dtype=np.int64).reshape(-1, m)


@cache
def count_index(d: int, m: int) -> dict[tuple[int, ...], int]:
    return {tuple(int(x) for x in row): i for i, row in enumerate(count_vectors(d, m))}


# ---------------------------------------------------------------------------------------------
# distributions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def doublings_beyond_comfort(model: SimModel, prompt_tokens: np.ndarray) -> np.ndarray:
    """How many times the prompt doubles past the model's comfortable context (0 when within it)."""
    return np.maximum(0.0, np.log2(prompt_tokens / model.context_comfort))


def own_view(bank: ItemBank, model: SimModel, theta: np.ndarray) -> np.ndarray:
    """[I, M] distribution of a call's own answer at effective skill `theta` (per item)."""
    right = _sigmoid(theta - bank.difficulty)
    wrong = (1.0 - right)[:, None] * bank.family_weights[model.family]
    return np.concatenate([right[:, None], wrong], axis=1)


def vote_distribution(counts: np.ndarray) -> np.ndarray:
    """[n, M]: majority vote over count vectors; ties split evenly (finishing order is arbitrary)."""
    top = counts.max(axis=1, keepdims=True)
    winners = (counts == top) & (counts > 0)
    return winners / winners.sum(axis=1, keepdims=True)


def call_distribution(bank: ItemBank, model: SimModel | None, role: str, counts: np.ndarray) -> np.ndarray:
    """[I, n, M]: answer distribution of one call per item and per count vector of its inputs.

    `counts` is an [n, M] array of count vectors that all sum to the same in-degree d (d = 0 for a
    node without inputs). `role` is a behaviour role (`behavior_role`), or `vote` (no model).
    """
    counts = np.asarray(counts)
    if role == VOTE:
        return np.broadcast_to(vote_distribution(counts)[None], (bank.size, *counts.shape))
    if model is None:
        raise ValueError(f"role {role!r} needs a model")
    behaviour = ROLES[role]
    prof = profile(bank.task)
    d = int(counts[0].sum())
    prompt = bank.prompt_tokens + d * bank.completion_tokens
    doublings = doublings_beyond_comfort(model, prompt)  # [I]
    theta = skill(model.name, prof.key) + behaviour.boost - CONTEXT_PENALTY * doublings  # [I]
    if d == 0:
        return own_view(bank, model, theta)[:, None, :]
    present = counts > 0  # [n, M]
    # Copies of one answer are no more evidence than the answer once: the contrast that lets a right
    # answer stand out and the dilution of a lure count the *different* answers shown, not the inputs.
    distinct = present.sum(axis=1)  # [n]
    contrast = (distinct - 1) / distinct
    theta_n = theta[:, None] + behaviour.recognition * contrast[None, :] * present[None, :, 0]  # [I, n]
    right = _sigmoid(theta_n - bank.difficulty[:, None])  # [I, n]
    wrong = bank.family_weights[model.family][:, None, :] * (1.0 - right)[:, :, None]  # [I, n, K]
    own = np.concatenate([right[:, :, None], wrong], axis=2)  # [I, n, M]
    competence = _sigmoid(theta - bank.difficulty)  # [I]
    attraction = (1.0 - competence)[:, None] * (prof.n_distractors * bank.plausibility - 1.0)  # [I, K]
    lure = LURE * attraction[:, None, :] / distinct[None, :, None]  # [I, n, K]
    discernment = np.broadcast_to((DISCERNMENT * competence)[:, None, None], (*lure.shape[:2], 1))
    pull = np.concatenate([discernment, lure], axis=2)  # [I, n, M]
    blur = (1.0 + CONFUSION * doublings)[:, None, None]
    with np.errstate(divide="ignore"):
        majority = np.where(present, behaviour.conformity * np.log(np.maximum(counts, 1)), -np.inf)
    base = majority[None, :, :] + pull  # [I, n, M]
    result = np.zeros_like(base)
    for o in range(own.shape[2]):
        utility = base.copy()
        if behaviour.inputs_only:
            utility[:, :, o] += np.where(present[None, :, o], behaviour.trust, 0.0)
        else:
            utility[:, :, o] = np.where(present[None, :, o], base[:, :, o], 0.0) + behaviour.trust
        utility = utility / blur
        utility -= utility.max(axis=2, keepdims=True)
        weights = np.exp(utility)
        result += own[:, :, o, None] * (weights / weights.sum(axis=2, keepdims=True))
    return result
