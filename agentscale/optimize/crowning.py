"""Crowning: which of the evaluated graphs a run returns, decided on paired evidence.

A search ranks graphs by a few minibatch items each, so its top graphs are partly its luckiest (one
9/10 minibatch outranks a graph right on 52 of 60 items). Crowning therefore:

1. picks a pool by a *shrunk, paired* estimate, not by the raw minibatch mean: each graph's
   per-item rewards minus the best single call's on the same items (it answered every train item
   before the search), plus that single's train mean, so an easy minibatch does not
   lift a graph; then shrunk toward the search's mean by how few items the graph was seen on
   (empirical Bayes), and ranked by that estimate less one posterior standard deviation: at about
   the same estimate a graph measured on many items goes before one lucky minibatch (on simulated
   math-b18-large the best-known graph, seen on 48 items, ranked seventh behind 8-item graphs and
   missed the pool; docs/benchmarks.md);
2. races the pool on the train split (`optimize.race`): every survivor answers the same growing
   prefix of the split, and a graph leaves only when the leader clearly beats it on the items they
   share, so a bad graph costs little and a good one is not dropped on a few items' noise;
3. takes the survivors (whole split) and **every single-model graph that answered the whole train
   split** (the runner races the single calls before the search; one clearly behind the best stops
   early and is no finalist) as finalists, so a graph is only crowned by beating the single calls on
   the same items. The leader is the best mean train reward (the objective already prices compute). A
   searched leader that the train split cannot separate from a single call (a paired difference of
   at most one item, plus `SEPARATION_Z` standard errors) gives way to the best such single call,
   saying so: the searched graphs were chosen, raced and scored on these same items, so their train
   scores are inflated by that selection, while the single calls were fixed before the search and
   their scores are not. A cheaper *searched* graph within one item does not displace the leader: that
   rule crowned a 68% graph over a 75% one (simulated mmlu-b42-large) and, on a real 20-item
   split, one 0.5B call 22 points below the 1.5B call it displaced. A warning names the top finalists
   when they lie within each other's 95% intervals: the train split is too small to tell them apart.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.objective import Observation
from agentscale.optimize.paired import Z95, PairedDifference, paired_difference

# standard errors beyond one item of difference before two finalists count as apart; wider margins
# were measured and lost more than they saved (docs/benchmarks.md, `optimizer_efficiency.py --margins`)
SEPARATION_Z = 0.0
WARN_TOP = 3  # the warning looks at this many finalists from the top
POOL_Z = 1.0  # the pool ranks graphs by their shrunk estimate less this many posterior standard deviations
PRIOR_SPREAD = 0.05  # least spread of true rewards among searched graphs assumed by the shrinkage
PRIOR_ITEM_VARIANCE = 0.25  # per-item variance of a graph's estimate before any item (a coin's), in accuracy units


@dataclass
class Finalist:
    """A finalist on the whole train split and how it compares with the leader."""

    observation: Observation
    versus_leader: PairedDifference | None  # None for the leader itself
    separation_z: float = SEPARATION_Z

    @property
    def separated(self) -> bool:
        return self.versus_leader is not None and self.versus_leader.separated(self.separation_z)

    def to_dict(self) -> dict[str, Any]:
        o = self.observation
        return {
            "graph": o.candidate.describe(),
            "train_accuracy": o.accuracy,
            "n": o.n_items,
            "reward": o.reward,
            "compute": o.compute,
            "leader_minus_this": None if self.versus_leader is None else self.versus_leader.to_dict(),
            "more_than_one_item_from_leader": self.separated,
        }


@dataclass
class Crowning:
    crowned: Observation
    leader: Observation
    reason: str
    finalists: list[Finalist] = field(default_factory=list)  # by mean train reward, best first
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "warning": self.warning,
            "finalists": [f.to_dict() for f in self.finalists],
        }


def penalty(observation: Observation, accuracy_weight: float) -> float:
    """The part of an observation's reward that does not depend on its items (cost, latency)."""
    return accuracy_weight * observation.accuracy - observation.reward


def best_single(singles: Iterable[Observation]) -> Observation | None:
    """The single call with the best train reward; among equals, the cheaper one."""
    return min(singles, key=lambda o: (-round(o.reward, 12), o.compute), default=None)


def rank(
    observations: list[Observation], singles: list[Observation], *, accuracy_weight: float, cautious: bool = False
) -> list[CandidateGraph]:
    """Graphs (not single calls) from best to worst by the shrunk paired estimate of their train
    reward, pooling every evaluation of a graph (see the module docstring, step 1); `cautious` ranks
    by that estimate less `POOL_Z` of its posterior standard deviations instead."""
    single_keys = {o.candidate.canonical_key for o in singles}
    reference = best_single(singles)
    outcomes: dict[str, dict[str, bool]] = defaultdict(dict)
    latest: dict[str, Observation] = {}
    for observation in observations:
        key = observation.candidate.canonical_key
        if key in single_keys:
            continue
        outcomes[key].update(observation.outcomes)
        latest[key] = observation
    if not latest:
        return []
    estimates = {key: _paired_estimate(latest[key], outcomes[key], reference, accuracy_weight) for key in latest}
    shrunk = _shrink(estimates, accuracy_weight)
    score = {key: mean - (POOL_Z * sd if cautious else 0.0) for key, (mean, sd) in shrunk.items()}
    ordered = sorted(latest, key=lambda key: (-score[key], latest[key].compute))
    return [latest[key].candidate for key in ordered]


def _paired_estimate(
    observation: Observation, outcomes: dict[str, bool], reference: Observation | None, accuracy_weight: float
) -> tuple[float, float, int]:
    """(estimated train reward, per-item variance, items) of a graph from its search evaluations.

    The estimate stays within the rewards an accuracy in [0, 1] can give: a graph seen only on items
    the single call got wrong, right on all of them, would otherwise be estimated above 100%. The
    variance counts one prior pseudo-item of variance `PRIOR_ITEM_VARIANCE` (so one item gives that,
    as before): a few items whose differences all agree (the graph and the single call alike on 8
    items, say) would otherwise have no variance, be taken as exactly measured, and neither shrunk
    nor ranked cautiously."""
    cost = penalty(observation, accuracy_weight)
    prior = PRIOR_ITEM_VARIANCE * accuracy_weight**2
    if not outcomes:  # outcomes unknown (e.g. an evaluation without item verdicts): its mean alone
        return observation.reward, prior, max(1, observation.n_items)
    if reference is None or not reference.outcomes.keys() & outcomes.keys():
        values = np.array([accuracy_weight * float(v) for v in outcomes.values()]) - cost
        mean = float(values.mean())
    else:
        shared = sorted(reference.outcomes.keys() & outcomes.keys())
        values = accuracy_weight * np.array([float(outcomes[k]) - float(reference.outcomes[k]) for k in shared])
        base = reference.reward + penalty(reference, accuracy_weight) - cost  # single's accuracy term, own cost
        mean = float(values.mean()) + base
    squares = float(((values - values.mean()) ** 2).sum())
    variance = (squares + prior) / len(values)  # (n - 1) degrees of freedom plus the prior's one
    return min(max(mean, -cost), accuracy_weight - cost), variance, len(values)


def _shrink(
    estimates: dict[str, tuple[float, float, int]], accuracy_weight: float = 1.0
) -> dict[str, tuple[float, float]]:
    """Empirical-Bayes shrinkage of each estimate toward their mean, by its sampling variance:
    (posterior mean, posterior standard deviation) per graph. The floors are in accuracy units,
    scaled to the rewards' (`accuracy_weight`): a weight of 2 shrank less than the same search at 1."""
    unit = abs(accuracy_weight) or 1.0  # a weight of 0 (cost alone) left both floors 0, and 0 / 0 below
    floor = 1e-4 * unit**2
    means = np.array([e[0] for e in estimates.values()])
    noise = np.array([max(e[1], floor) / e[2] for e in estimates.values()])
    centre = float(means.mean())
    spread = max(float(means.var()) - float(noise.mean()), (PRIOR_SPREAD * unit) ** 2)
    shrunk = {}
    for key, (mean, variance, n) in estimates.items():
        sampling = max(variance, floor) / n
        weight = spread / (spread + sampling)
        shrunk[key] = (centre + (mean - centre) * weight, float(np.sqrt(sampling * weight)))
    return shrunk


def on_shared_items(observations: list[Observation]) -> list[Observation]:
    """Each observation restricted to the items every one of them answered (accuracy recomputed from
    those items' verdicts; the reward is the caller's to recompute): when the spend cap cut the
    crowning race, its graphs answered a prefix of the split the single calls answered whole, and
    their means over different items do not compare."""
    if not observations or any(not o.outcomes for o in observations):
        return observations
    shared = set.intersection(*(set(o.outcomes) for o in observations))
    if not shared or all(len(o.outcomes) == len(shared) for o in observations):
        return observations
    restricted = []
    for observation in observations:
        outcomes = {item: right for item, right in observation.outcomes.items() if item in shared}
        accuracy = sum(outcomes.values()) / len(outcomes)
        restricted.append(replace(observation, accuracy=accuracy, n_items=len(outcomes), outcomes=outcomes))
    return restricted


def crown(
    evaluated: list[Observation],
    *,
    accuracy_weight: float,
    baselines: Collection[str] = (),
    separation_z: float = SEPARATION_Z,
) -> Crowning:
    """Decide among finalists scored on the same items (see the module docstring, step 3);
    `baselines` are the canonical keys of the single calls, scored before the search; `separation_z`
    widens "apart" beyond one item (the benchmark re-decides crowns with several)."""
    if not evaluated:
        raise ValueError("crowning needs at least one evaluated finalist")
    ranked = sorted(evaluated, key=lambda o: (-o.reward, o.compute))
    leader = ranked[0]
    rows = [Finalist(leader, None, separation_z)]
    for other in ranked[1:]:
        gap = penalty(other, accuracy_weight) - penalty(leader, accuracy_weight)
        difference = paired_difference(leader.outcomes, other.outcomes, offset=gap, scale=accuracy_weight)
        rows.append(Finalist(other, difference, separation_z))
    tie = "within one item" + (f" and {separation_z:g} standard errors" if separation_z else "")
    n = leader.n_items
    close = [row.observation for row in rows[1:] if not row.separated]
    close_singles = [o for o in close if o.candidate.canonical_key in baselines]
    if leader.candidate.canonical_key in baselines or not close_singles:
        reason = f"best mean objective on the {n} train items"
        if close:
            reason += f"; {len(close)} other finalist(s) {tie} of it"
        level = [
            o for o in ranked[1:] if round(o.reward, 12) == round(leader.reward, 12) and o.compute > leader.compute
        ]
        if level:  # the sort put the cheapest first: the "prefer the cheaper graph, and say so"
            reason += (
                f"; level with {len(level)} costlier finalist(s) on these items ({level[0].candidate.short_name()}, "
                f"compute {level[0].compute:.3g} against {leader.compute:.3g}), so the cheaper graph is crowned"
            )
        crowned = leader
    else:
        crowned = close_singles[0]  # ranked: the best of them
        priced = abs(penalty(leader, accuracy_weight) - penalty(crowned, accuracy_weight)) > 1e-12
        within = f"{tie} in objective, where compute and latency are priced" if priced else tie
        reason = (
            f"the train split ({n} items) cannot separate the searched leader ({leader.accuracy:.1%}) from "
            f"this single call ({crowned.accuracy:.1%}: {within}); the searched graph's score is inflated by "
            "its selection on these items and the single call's is not, so the single call is crowned"
        )
    return Crowning(crowned, leader, reason, rows, _warning(ranked, accuracy_weight))


def _warning(ranked: list[Observation], accuracy_weight: float) -> str | None:
    """Name the top finalists (3, else 2) when no pair of them is apart by the exact 95% interval of
    the paired difference (the one `--json` prints beside each finalist), and say how many train
    items would separate the first two if their difference on these items held."""

    def versus(first: Observation, second: Observation) -> PairedDifference:
        gap = penalty(second, accuracy_weight) - penalty(first, accuracy_weight)
        return paired_difference(first.outcomes, second.outcomes, offset=gap, scale=accuracy_weight)

    for size in range(min(WARN_TOP, len(ranked)), 1, -1):
        top = ranked[:size]
        if not any(versus(a, b).apart for index, a in enumerate(top) for b in top[index + 1 :]):
            first = versus(top[0], top[1])
            needed = first.items_to_separate(Z95)
            how_many = (
                f" (the first two, {100 * first.mean / accuracy_weight:+.1f} points apart in objective on these items, "
                f"would need about {needed} if that held)"
                if needed is not None
                else " (the first two are level on these items)"
            )
            return (
                f"the top {size} finalists lie within each other's 95% intervals on the {ranked[0].n_items} "
                f"train items: add train items to separate them{how_many}"
            )
    return None
