"""The true optimum of a small search space over a sim task, by exhaustive enumeration.

Every valid candidate with at most `max_nodes` nodes, built from the space's roles and models, is
enumerated once per isomorphism class (`CandidateGraph.canonical_key`), kept if it fits the space's
per-question budget, and scored with the exact ground truth on the space's test split. The best one
(ties: lower compute, then fewer nodes) is the reference an optimizer benchmark measures regret
against, and what `agentscale sim optimum SPACE.yaml` prints.

Enumeration grows fast: forward-edge sets of n nodes number 2^(n(n-1)/2). Node structures are
generated once per n and deduplicated up to isomorphism; interchangeable nodes (same predecessors
and successors) get their labels in non-decreasing order; labelings whose compute already exceeds
the budget are pruned. The ground truth scores roughly 1,000-2,000 candidates a second on a 100-item
test split: a 4-node space with 3 models and 3 roles (~5,000 candidates) takes seconds, the same
space with 5 nodes and the paper's budget 18 (~700,000 candidates) about 7 minutes, and 6 nodes is
only practical with few models and roles or a tight budget.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from agentscale.graphs.io import dump_graph_spec
from agentscale.graphs.spec import MODEL_FREE_ROLES, ROLES_NEEDING_INPUTS
from agentscale.models.cost import compute_unit, model_flops
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, copies_an_input
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.space import SpaceSpec, load_space
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.truth import SimGraphError

MAX_EXHAUSTIVE_NODES = 6
PROGRESS_EVERY = 1_000  # candidates scored between progress reports (about a second of scoring)


@dataclass(frozen=True)
class Optimum:
    """The best candidate of a space (accuracies are simulated expected test accuracies)."""

    accuracy: float
    candidate: CandidateGraph
    compute: float
    latency_s: float
    candidates: int  # distinct candidates within budget that were scored
    interrupted: bool = False  # Ctrl-C (or SIGTERM) ended the enumeration: the best of those scored, no optimum


@cache
def structures(n: int) -> tuple[frozenset[tuple[int, int]], ...]:
    """Edge sets over n nodes (forward edges, node n-1 the output, every node reaching it), one per
    isomorphism class of the unlabelled DAG."""
    pairs = [(i, j) for j in range(n) for i in range(j)]
    seen: set[str] = set()
    found: list[frozenset[tuple[int, int]]] = []
    blank = tuple(NodeChoice("x", "x") for _ in range(n))
    for mask in range(1 << len(pairs)):
        edges = frozenset(pair for bit, pair in enumerate(pairs) if mask >> bit & 1)
        if not _reaches_output(n, edges):
            continue
        key = CandidateGraph(blank, edges).canonical_key
        if key not in seen:
            seen.add(key)
            found.append(edges)
    return tuple(found)


def _reaches_output(n: int, edges: frozenset[tuple[int, int]]) -> bool:
    reaches = {n - 1}
    for index in range(n - 2, -1, -1):
        if any((index, j) in edges for j in reaches):
            reaches.add(index)
    return len(reaches) == n


def _labels(space: SpaceSpec) -> tuple[list[NodeChoice], list[NodeChoice]]:
    """(labels a source node may take, labels a node with inputs may take)."""
    aliases = sorted(space.models)
    with_inputs: list[NodeChoice] = []
    for role in space.roles:
        if role in MODEL_FREE_ROLES:
            with_inputs.append(NodeChoice(role, None))
        else:
            with_inputs.extend(NodeChoice(role, alias) for alias in aliases)
    sources = [label for label in with_inputs if label.role not in ROLES_NEEDING_INPUTS]
    return sources, with_inputs


def _choices(inputs: int, sources: list[NodeChoice], with_inputs: list[NodeChoice]) -> list[NodeChoice]:
    """Labels a node with this many inputs may take: no chooser that passes an input on (a vote or
    tester over one input, a vote over two: `copies_an_input`)."""
    if inputs == 0:
        return sources
    return [label for label in with_inputs if not copies_an_input(label.role, inputs)]


def enumerate_candidates(space: SpaceSpec, oracle: SimOracle | None = None) -> Iterator[CandidateGraph]:
    """Every distinct valid candidate of the space within its compute budget (other budget limits
    are checked by `within_budget`)."""
    if space.max_nodes > MAX_EXHAUSTIVE_NODES:
        raise SimGraphError(
            f"space {space.name!r}: exhaustive search is limited to max_nodes <= {MAX_EXHAUSTIVE_NODES} "
            f"(got {space.max_nodes})"
        )
    oracle = oracle or SimOracle.for_space(space)
    unit = compute_unit(oracle.mean_prompt_tokens, oracle.mean_completion_tokens)
    limit = space.budget.compute if space.budget.compute is not None else float("inf")
    sources, with_inputs = _labels(space)

    @cache
    def cost(label: NodeChoice, degree: int) -> float:
        if label.model is None:
            return 0.0
        prompt = round(oracle.mean_prompt_tokens + degree * oracle.mean_completion_tokens)
        flops = model_flops(oracle.resolved[label.model], prompt, round(oracle.mean_completion_tokens))
        if flops is None:
            raise SimGraphError(f"model {label.model!r} has unknown size: set params_b in the space")
        return flops / unit

    seen: set[str] = set()
    for n in range(1, space.max_nodes + 1):
        for edges in structures(n):
            preds = [tuple(i for i, j in edges if j == node) for node in range(n)]
            succs = [tuple(j for i, j in edges if i == node) for node in range(n)]
            choices = [_choices(len(preds[node]), sources, with_inputs) for node in range(n)]
            twin_of = [
                max((t for t in range(node) if preds[t] == preds[node] and succs[t] == succs[node]), default=-1)
                for node in range(n)
            ]
            floor = [min(cost(label, len(preds[node])) for label in choices[node]) for node in range(n)]
            tail = [*reversed([*itertools.accumulate(reversed(floor))]), 0.0]
            steps = [[cost(label, len(preds[node])) for label in choices[node]] for node in range(n)]
            for assignment in _labelings(steps, twin_of, tail, limit):
                nodes = tuple(choices[node][index] for node, index in enumerate(assignment))
                candidate = CandidateGraph(nodes, edges)
                key = candidate.canonical_key
                if key in seen:
                    continue
                seen.add(key)
                yield candidate


def _labelings(
    steps: list[list[float]], twin_of: list[int], tail: list[float], limit: float
) -> Iterator[tuple[int, ...]]:
    """Label indices per node (depth first) whose compute stays within `limit`; a node that is
    interchangeable with an earlier one (`twin_of`) takes a label index no smaller than its twin's."""
    n = len(steps)
    labels: list[int] = []

    def extend(node: int, spent: float) -> Iterator[tuple[int, ...]]:
        if node == n:
            yield tuple(labels)
            return
        start = labels[twin_of[node]] if twin_of[node] >= 0 else 0
        for index in range(start, len(steps[node])):
            total = spent + steps[node][index]
            if total + tail[node + 1] > limit + 1e-9:
                continue
            labels.append(index)
            yield from extend(node + 1, total)
            labels.pop()

    yield from extend(0, 0.0)


def search_optimum(space: SpaceSpec, on_progress: Callable[[int, float], None] | None = None) -> Optimum:
    """Score every candidate of the space and return the best (see the module docstring).
    `on_progress(scored, best accuracy)` is called every `PROGRESS_EVERY` candidates. A Ctrl-C
    (KeyboardInterrupt) ends the enumeration with the best candidate scored so far, `interrupted`:
    a 5-node space takes minutes, and an interruption lost all of it."""
    SearchProblem.from_space(space)  # a budget below every single call, said as `optimize` says it
    oracle = SimOracle.for_space(space)
    engine = oracle.engine("test")
    best: tuple[float, float, int, str] | None = None
    best_candidate: CandidateGraph | None = None
    count = 0
    interrupted = False
    check_more = space.budget.max_latency_s is not None or space.budget.max_tokens is not None
    try:
        for candidate in enumerate_candidates(space, oracle):
            if check_more and not oracle.within_budget(candidate):
                continue
            accuracy = engine.accuracy(oracle.graph(candidate))
            rank = (-accuracy, oracle.compute(candidate), candidate.size, candidate.canonical_key)
            count += 1
            if best is None or rank < best:
                best, best_candidate = rank, candidate
            if on_progress is not None and count % PROGRESS_EVERY == 0:
                on_progress(count, -best[0])
    except KeyboardInterrupt:
        if best is None:  # nothing scored to keep
            raise
        interrupted = True
    if best is None or best_candidate is None:
        caps = ", ".join(f"{name}={value}" for name, value in space.budget.model_dump().items() if value is not None)
        raise SimGraphError(f"space {space.name!r}: no candidate fits the budget ({caps})")
    return Optimum(
        accuracy=-best[0],
        candidate=best_candidate,
        compute=best[1],
        latency_s=oracle.latency(best_candidate),
        candidates=count,
        interrupted=interrupted,
    )


def optimum(space: SpaceSpec) -> tuple[float, CandidateGraph]:
    """(expected test accuracy, candidate) of the best graph in the space under its budget."""
    found = search_optimum(space)
    return found.accuracy, found.candidate


def optimum_graph_yaml(space: SpaceSpec, candidate: CandidateGraph, accuracy: float, *, interrupted: bool) -> str:
    """The candidate as a runnable graph file, labelled as a simulated optimum; `interrupted`: as the
    best of the graphs scored before the stop (a saved file named the optimum that the run was not)."""
    stopped = ("best graph scored before the search was stopped", "sim-best-so-far")
    what, name = stopped if interrupted else ("exhaustive optimum", "sim-optimum")
    spec = space.graph_spec(
        candidate,
        f"{space.name}-{name}",
        description=(
            f"{what} of space {space.name!r} on {space.task.name} in the simulated population "
            f"(simulated expected test accuracy {accuracy:.3f}; not a real model's accuracy)"
        ),
    )
    spec = spec.model_copy(update={"answer_format": space.answer_format or "number"})
    return dump_graph_spec(spec)


def optimum_report(
    space: SpaceSpec | str | Path, on_progress: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """What `agentscale sim optimum SPACE.yaml --json` prints: `{"accuracy", "graph", ...}`.

    `accuracy` is the simulated expected test accuracy and `graph` the optimum as graph YAML; the
    other keys (`compute`, `latency_s`, `candidates`, `task`, `split`, `simulated`, `interrupted`:
    the best of the candidates scored before a Ctrl-C, not the optimum) describe it.
    """
    spec = space if isinstance(space, SpaceSpec) else load_space(space)
    found = search_optimum(spec, on_progress)
    return {
        "accuracy": found.accuracy,
        "graph": optimum_graph_yaml(spec, found.candidate, found.accuracy, interrupted=found.interrupted),
        "compute": found.compute,
        "latency_s": found.latency_s,
        "candidates": found.candidates,
        "task": spec.task.name,
        "split": "test",
        "simulated": True,
        "interrupted": found.interrupted,
    }
