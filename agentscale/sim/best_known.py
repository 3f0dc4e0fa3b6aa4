"""The best-known graph of a space too large to enumerate: a long search on the exact ground truth.

Spaces at the paper's scale (8-10 nodes, 5-7 models) hold far too many graphs for `optimum`'s
enumeration, so an optimizer benchmark measures against the best graph a long, cheap-per-step search
on the *exact* expected test accuracy can find (no noise, unlike an optimizer's minibatches):

1. sampling: the canonical shapes of every model (one call, self-consistency, wide and deep graphs
   of each aggregator) and many draws from the uniform probabilistic graph (until they mostly repeat);
2. hill climbing: from the best distinct graphs so far, steepest ascent over every neighbour (change
   a node's model or role, add or drop an edge, add a source node feeding any node, drop a node),
   then, from a random perturbation of the incumbent, again (iterated local search), until the
   evaluation budget is spent (or a small space has no graph left to score: `EXHAUSTED_AFTER`).

Every distinct graph scored counts as one truth evaluation; the result records how many, with the
seed and the time taken, so the reference is reproducible. Graphs too entangled for exact elimination
(dense 9-10 node DAGs) are scored by the truth engine's Monte-Carlo path with common random numbers;
the search uses fewer draws (`SCREEN_DRAWS_PER_ITEM`), and its best graphs are re-scored at the
engine's full precision (exact, or 400,000 draws with a stated standard error) before one is kept.
Accuracies are simulated.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agentscale.errors import AgentScaleError, SpecError
from agentscale.graphs.io import read_text, write_output
from agentscale.graphs.located import LocatedData, load_located
from agentscale.graphs.spec import MODEL_FREE_ROLES, ROLES_NEEDING_INPUTS
from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.distribution import GraphDistribution, remove_node, repair
from agentscale.optimize.pilot import chain, largest_fitting, self_consistency, single, wide
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.space import SpaceSpec
from agentscale.optimize.trials import candidate_from_json, candidate_to_json
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.truth import TruthEngine

BEST_KNOWN_SUFFIX = ".best-known.yaml"  # beside the space's own file
SAMPLES_SHARE = 0.2  # of the evaluation budget spent on sampling before hill climbing
RESTART_POOL = 8  # hill climbs start from the best distinct graphs found by sampling
SCREEN_DRAWS_PER_ITEM = 120  # Monte-Carlo draws per item while searching, where elimination is too large
CONFIRMED = 40  # the best graphs of the search, re-scored with the engine's full precision
EXHAUSTED_AFTER = 200  # restarts in a row without a new graph: the search stops short of its budget
SAMPLING_WINDOW = 1_000  # draws; sampling stops early when one window finds under 1% new graphs
SCREEN_MAX_CELLS = 500_000  # larger joint tables are cheaper to sample than to eliminate while searching


@dataclass
class BestKnown:
    """The best graph found, its exact expected test accuracy (simulated) and how it was found."""

    space: str
    accuracy: float
    stderr: float  # 0 when exact; Monte-Carlo standard error otherwise
    candidate: CandidateGraph
    compute: float
    evaluations: int  # distinct graphs scored on the exact truth
    seed: int
    seconds: float
    trace: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best accuracy so far)
    interrupted: bool = False  # Ctrl-C (or SIGTERM) ended the search: the best found so far

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "simulated": True,
            "accuracy": self.accuracy,
            "stderr": self.stderr,
            "compute": self.compute,
            "candidate": json.loads(candidate_to_json(self.candidate)),
            "graph": self.candidate.describe().splitlines(),
            "search": {
                "method": "sampling then iterated steepest-ascent hill climbing on the exact test truth",
                "truth_evaluations": self.evaluations,
                "seed": self.seed,
                "screening_draws_per_item": SCREEN_DRAWS_PER_ITEM,
                "confirmed_at_full_precision": CONFIRMED,
                "seconds": round(self.seconds, 1),
                "improvements": [list(step) for step in self.trace],
                "interrupted": self.interrupted,
            },
        }


OUTSIDE_THE_CAPS = -1.0  # the score of a graph over the space's max_latency_s or max_tokens: below any accuracy


class _Scorer:
    """Expected test accuracy with a cache: each distinct graph is one truth evaluation."""

    def __init__(self, oracle: SimOracle, problem: SearchProblem, limit: int) -> None:
        self.oracle, self.problem, self.limit = oracle, problem, limit
        budget = oracle.space.budget  # caps `problem.fits` does not know (it knows compute)
        self.capped = budget.max_latency_s is not None or budget.max_tokens is not None
        bank = oracle.engine("test").bank
        self.engine = TruthEngine(bank, max_cells=SCREEN_MAX_CELLS, mc_draws=SCREEN_DRAWS_PER_ITEM * bank.size)
        self.scores: dict[str, float] = {}
        self.candidates: dict[str, CandidateGraph] = {}
        self.best: tuple[float, CandidateGraph] | None = None
        self.trace: list[tuple[int, float]] = []

    @property
    def spent(self) -> bool:
        return len(self.scores) >= self.limit

    def __call__(self, candidate: CandidateGraph) -> float:
        key = candidate.canonical_key
        found = self.scores.get(key)
        if found is None:
            self.candidates[key] = candidate
            if self.capped and not self.oracle.within_budget(candidate):
                # over max_latency_s or max_tokens: a 70B critic chain at 20.8 s "best" under a 2 s cap
                # read 0.89, 49 points above the space's exhaustive optimum, as `sim optimum` skips it
                self.scores[key] = OUTSIDE_THE_CAPS
                return OUTSIDE_THE_CAPS
            found = self.scores[key] = self.engine.accuracy(self.oracle.graph(candidate))
            if self.best is None or self._better(found, candidate, *self.best):
                self.best = (found, candidate)
                self.trace.append((len(self.scores), found))
        return found

    def _better(self, accuracy: float, candidate: CandidateGraph, best: float, incumbent: CandidateGraph) -> bool:
        """Higher accuracy; among equals (1e-12), the cheaper graph."""
        if abs(accuracy - best) > 1e-12:
            return accuracy > best
        return self.problem.compute(candidate) < self.problem.compute(incumbent)


def search_best_known(
    space: SpaceSpec,
    *,
    evaluations: int = 100_000,
    seed: int = 0,
    on_progress: Callable[[int, float], None] | None = None,
) -> BestKnown:
    """Search the space on the exact truth for `evaluations` distinct graphs (see the module doc). A
    Ctrl-C (KeyboardInterrupt) ends the search with the best graph found so far, `interrupted`: the
    shipped spaces take 47-70 minutes, and an interruption lost all of it."""
    if space.coordinator is not None:
        raise AgentScaleError(f"space {space.name!r}: the ground truth does not cover the coordinator dimension")
    started = time.perf_counter()
    oracle = SimOracle.for_space(space)
    problem = SearchProblem.from_space(space)
    score = _Scorer(oracle, problem, evaluations)
    try:
        _search(score, space, problem, np.random.default_rng(seed), evaluations, on_progress)
        interrupted = False
    except KeyboardInterrupt:
        if score.best is None:  # nothing found to keep
            raise
        interrupted = True
    accuracy, stderr, best = _confirm(score, oracle, problem)
    return BestKnown(
        space=space.name,
        accuracy=accuracy,
        stderr=stderr,
        candidate=best,
        compute=problem.compute(best),
        evaluations=len(score.scores),
        seed=seed,
        seconds=time.perf_counter() - started,
        trace=score.trace,
        interrupted=interrupted,
    )


def _search(
    score: _Scorer,
    space: SpaceSpec,
    problem: SearchProblem,
    rng: np.random.Generator,
    evaluations: int,
    on_progress: Callable[[int, float], None] | None,
) -> None:
    """The canonical shapes, sampling, then hill climbing from the best until `evaluations` graphs
    are scored or restarts find no new one (`score` keeps what was found)."""
    for candidate in _canonical_shapes(problem):
        score(candidate)
    target = math.ceil(SAMPLES_SHARE * evaluations)
    _sample(score, GraphDistribution(problem), rng, target=target, max_draws=20 * evaluations)
    if score.best is None:
        caps = ", ".join(f"{name}={value}" for name, value in space.budget.model_dump().items() if value is not None)
        raise AgentScaleError(f"space {space.name!r}: no graph the search drew fits the budget ({caps})")
    ranked = sorted(score.scores, key=score.scores.__getitem__, reverse=True)
    starts = [score.candidates[key] for key in ranked[:RESTART_POOL] if score.scores[key] != OUTSIDE_THE_CAPS]
    barren = 0  # restarts in a row that scored no new graph: the reachable space is exhausted
    while not score.spent and barren < EXHAUSTED_AFTER:
        before = len(score.scores)
        _climb(starts.pop(0) if starts else _perturb(_best(score), problem, rng), problem, score, rng)
        barren = barren + 1 if len(score.scores) == before else 0
        if on_progress is not None:
            on_progress(len(score.scores), score.scores[_best(score).canonical_key])


def _sample(
    score: _Scorer, distribution: GraphDistribution, rng: np.random.Generator, *, target: int, max_draws: int
) -> None:
    """Draw graphs until `target` distinct ones are scored or `max_draws` are drawn, or until draws
    mostly repeat graphs already scored: in a small space, uniform sampling then finds its rare
    graphs slowly (200,000 draws for the last few of 912) and hill climbing reaches them sooner."""
    draws = 0
    while draws < max_draws:
        before = len(score.scores)
        for _ in range(min(SAMPLING_WINDOW, max_draws - draws)):
            if len(score.scores) >= target:
                return
            score(distribution.sample(rng))
            draws += 1
        if len(score.scores) - before < SAMPLING_WINDOW // 100:
            return


def _confirm(score: _Scorer, oracle: SimOracle, problem: SearchProblem) -> tuple[float, float, CandidateGraph]:
    """The best of the search's top graphs at full precision: (accuracy, its stderr, graph)."""
    inside = [key for key in score.scores if score.scores[key] != OUTSIDE_THE_CAPS]
    top = sorted(inside, key=score.scores.__getitem__, reverse=True)[:CONFIRMED]
    rescored = []
    for key in top:
        candidate = score.candidates[key]
        estimate = oracle.estimate(candidate, "test")
        rescored.append((-estimate.accuracy, problem.compute(candidate), estimate.stderr, key))
    accuracy, _, stderr, key = min(rescored)
    return -accuracy, stderr, score.candidates[key]


def _best(score: _Scorer) -> CandidateGraph:
    assert score.best is not None
    return score.best[1]


def _canonical_shapes(problem: SearchProblem) -> Iterator[CandidateGraph]:
    """Each model's pilot shapes: one call, self-consistency, and the widest and deepest graphs."""
    for alias in problem.aliases:
        yield single(alias)
        for n in range(2, problem.max_nodes):
            consistency = self_consistency(alias, n)
            if problem.fits(consistency):
                yield consistency
        for role in problem.roles:
            for build in (wide, chain):
                if role in ROLES_NEEDING_INPUTS or build is chain:
                    found = largest_fitting(problem, build, alias, role)
                    if found is not None and problem.fits(found):
                        yield found


def _climb(start: CandidateGraph, problem: SearchProblem, score: _Scorer, rng: np.random.Generator) -> None:
    """Steepest ascent from `start` until no neighbour is better or the budget is spent."""
    current, value = start, score(start)
    while not score.spent:
        best_move, best_value = None, value
        for neighbour in _neighbours(current, problem, rng):
            if score.spent:
                break
            found = score(neighbour)
            if found > best_value + 1e-12:
                best_move, best_value = neighbour, found
        if best_move is None:
            return
        current, value = best_move, best_value


def _perturb(candidate: CandidateGraph, problem: SearchProblem, rng: np.random.Generator) -> CandidateGraph:
    """Two to four random neighbour moves from the candidate (a restart near the incumbent)."""
    current = candidate
    for _ in range(int(rng.integers(2, 5))):
        options = list(_neighbours(current, problem, rng))
        if not options:
            break
        current = options[int(rng.integers(len(options)))]
    return current


def _neighbours(
    candidate: CandidateGraph, problem: SearchProblem, rng: np.random.Generator
) -> Iterator[CandidateGraph]:
    """Valid, within-budget graphs one move away, in random order."""
    moves = list(_moves(candidate, problem))
    seen = {candidate.canonical_key}
    for index in rng.permutation(len(moves)):
        moved = moves[int(index)]
        if not problem.fits(moved) or moved.canonical_key in seen:
            continue
        seen.add(moved.canonical_key)
        yield moved


def _moves(candidate: CandidateGraph, problem: SearchProblem) -> Iterator[CandidateGraph]:
    nodes, edges, ceo = candidate.nodes, set(candidate.edges), candidate.ceo
    labels = [
        NodeChoice(role, None if role in MODEL_FREE_ROLES else alias)
        for role in problem.roles
        for alias in problem.aliases
    ]
    labels = list(dict.fromkeys(labels))
    for index, node in enumerate(nodes):  # relabel a node
        for label in labels:
            if label != node:
                yield repair((*nodes[:index], label, *nodes[index + 1 :]), edges, ceo)
    for j in range(candidate.size):  # toggle an edge
        for i in range(j):
            yield repair(nodes, edges ^ {(i, j)}, ceo)
    if candidate.size < problem.max_nodes:  # a new source node feeding node j
        for j in range(candidate.size):
            for alias in problem.aliases:
                shifted = {(a + 1, b + 1) for a, b in edges} | {(0, j + 1)}
                yield repair((NodeChoice("assistant", alias), *nodes), shifted, ceo)
    if candidate.size > 1:  # drop a node (the output too: its last input takes over)
        for index in range(candidate.size):
            yield remove_node(candidate, index)


def write_best_known(found: BestKnown, path: Path) -> None:
    """Store the result beside its space (YAML with a header saying what it is); its folder is made,
    and a path that cannot be written raises an error naming it (`write_output`)."""
    header = (
        f"# Best-known graph of space {found.space!r} on the SIMULATED population (never model accuracy).\n"
        f"# Found by `agentscale sim best-known` ({found.evaluations} exact truth evaluations, seed {found.seed}).\n"
    )
    write_output(path, header + yaml.safe_dump(found.to_dict(), sort_keys=False, width=110))


def stored_accuracy(path: Path, space: SpaceSpec) -> float | None:
    """The accuracy of a record of `space` already at `path` (checked as `read_best_known` checks it,
    against the truth), or None: no file, another space's, a broken one, or one the truth no longer
    confirms (a changed simulator: `validate` asks for the search again, which then kept the stale
    record whenever its stored figure beat the new search's); those may be replaced."""
    if not path.is_file():
        return None
    try:
        return read_best_known(path, space, truth=SimOracle.for_space(space))[0]
    except AgentScaleError:
        return None


def space_file_of(record: Path) -> Path:
    """The space a record was found for: `S.yaml` beside `S.best-known.yaml`."""
    name = record.name
    stem = name[: -len(BEST_KNOWN_SUFFIX)] if name.endswith(BEST_KNOWN_SUFFIX) else record.stem
    return record.with_name(stem + ".yaml")


def checked_best_known(
    located: LocatedData, space: SpaceSpec, source: str | None = None, *, truth: SimOracle | None = None
) -> tuple[float, CandidateGraph]:
    """(stored accuracy, graph) of a best-known record, checked against its space: it names the space,
    its graph is one the space allows, and (given ``truth``, the space's oracle) the exact truth on
    the space's own test split still gives the stored accuracy — a record left behind by a changed
    space or simulator would make every benchmark ratio against it wrong. Raises `SpecError` with the
    record's lines."""
    data = located.data
    if data.get("space") != space.name:
        raise SpecError([located.issue(("space",), f"names space {data.get('space')!r}, not {space.name!r}")], source)
    try:
        accuracy = float(data["accuracy"])
        candidate = candidate_from_json(json.dumps(data["candidate"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise SpecError([located.issue(("candidate",), f"not a stored graph ({exc})")], source) from None
    allowed = SearchProblem.from_space(space).fits(candidate) and (truth is None or truth.within_budget(candidate))
    if not allowed:
        raise SpecError(
            [located.issue(("candidate",), "is not a graph of the space (models, roles, size or budget)")], source
        )
    if truth is not None:
        estimate = truth.estimate(candidate, "test")
        if abs(estimate.accuracy - accuracy) > max(1e-6, 4 * estimate.stderr):
            message = (
                f"stored {accuracy:.4f} but the truth now says {estimate.accuracy:.4f}: "
                "run `agentscale sim best-known` again"
            )
            raise SpecError([located.issue(("accuracy",), message)], source)
    return accuracy, candidate


def read_best_known(path: Path, space: SpaceSpec, *, truth: SimOracle | None = None) -> tuple[float, CandidateGraph]:
    """(stored accuracy, graph) of a best-known file, checked against ``space`` (`checked_best_known`)."""
    return checked_best_known(load_located(read_text(path), str(path)), space, str(path), truth=truth)
