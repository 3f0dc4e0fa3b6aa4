"""Ground truth: the exact expected accuracy of a graph on simulated items, without running it.

A graph's nodes form a Bayesian network over answer categories: each node's answer depends on the
item and on the multiset of its predecessors' answers (`behavior.call_distribution`). Per item, the
engine computes the exact probability that the output node answers correctly by variable
elimination in topological order, vectorised over items:

- a node's conditional table depends only on (model, role, in-degree) and is cached per item bank,
  so evaluating thousands of graphs re-uses a handful of tables;
- predecessors used by nobody else and independent of everything still open are summed into a
  distribution over *count vectors* (a convolution), so a fan-in of 8 costs as little as one of 2;
- nodes that feed several successors stay as axes of a joint table until their last successor.

When a joint table would exceed `MAX_CELLS`, the engine falls back to Monte-Carlo (common random
numbers, stated standard error).

Votes break ties like the executor: the answer of the input that finished first on the run's modelled
clock (each call's roofline latency, summed along the longest path; a cache hit keeps its call's)
wins. The engine orders inputs by their expected modelled finish, then by position
(`TruthEngine.finish_rank`); the executor orders per item, so the two can differ on an item where two
inputs' latencies are nearly equal. A vote over interchangeable inputs (same model, role and inputs,
or same structure and independent) splits ties evenly instead, which gives the same distribution
whatever the order and keeps wide votes cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property
from itertools import product

import numpy as np

from agentscale.errors import AgentScaleError
from agentscale.sim.behavior import ROLES, VOTE, behavior_role, call_distribution, count_index, count_vectors
from agentscale.sim.items import ItemBank
from agentscale.sim.population import SimModel, sim_model
from agentscale.sim.profiles import profile
from agentscale.sim.roofline import call_latency, call_tokens
from agentscale.sim.seeding import stable_hash

MAX_CELLS = 4_000_000
MC_DRAWS = 400_000  # Monte-Carlo draws per node (split across items) when the exact method is too big


class SimGraphError(AgentScaleError, ValueError):
    """A graph or space the simulator cannot evaluate (non-sim model, coordinator, no sim task...)."""


@dataclass(frozen=True)
class SimNode:
    """A node as the simulator sees it: behaviour role, sim model (None for a vote), greedy decoding."""

    role: str
    model: str | None
    greedy: bool = False


@dataclass(frozen=True)
class SimGraph:
    """Nodes in topological order (`preds[j]` all < j); `output` is the last node."""

    nodes: tuple[SimNode, ...]
    preds: tuple[tuple[int, ...], ...]

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    def ordered_vote(self, index: int) -> bool:
        """Whether a vote's ties depend on which input finishes first: its inputs are not
        interchangeable (different models, roles or predecessors). Votes over interchangeable
        inputs split ties evenly, which gives the same distribution whatever the finishing order."""
        if self.nodes[index].role != VOTE:
            return False
        parents = self.preds[index]
        if len({self._signature[p] for p in parents}) > 1:
            return True
        if len({self.preds[p] for p in parents}) == 1:
            return False  # same label, same inputs: independent draws given the inputs
        ancestors = [self._ancestors[p] for p in parents]
        return any(a & b for i, a in enumerate(ancestors) for b in ancestors[i + 1 :])

    @cached_property
    def _signature(self) -> tuple[str, ...]:
        """A node's label and, recursively, its inputs' (equal for identically distributed nodes)."""
        found: list[str] = []
        for node, parents in zip(self.nodes, self.preds, strict=True):
            found.append(f"{node}({','.join(sorted(found[p] for p in parents))})")
        return tuple(found)

    @cached_property
    def _ancestors(self) -> tuple[frozenset[int], ...]:
        found: list[frozenset[int]] = []
        for parents in self.preds:
            found.append(frozenset(parents).union(*(found[p] for p in parents)))
        return tuple(found)

    @classmethod
    def build(
        cls,
        nodes: list[tuple[str, str | None]],
        preds: list[tuple[int, ...]],
        temperatures: list[float] | None = None,
    ) -> SimGraph:
        """From graph roles and sim model names (or routes); roles become behaviour roles.

        `temperatures` (per node, default all > 0) marks nodes decoded greedily (temperature 0).
        """
        if not nodes:
            raise SimGraphError("a graph needs at least one node")
        temperatures = temperatures or [1.0] * len(nodes)
        built = []
        for index, ((role, model), parents) in enumerate(zip(nodes, preds, strict=True)):
            if any(p >= index for p in parents):
                raise SimGraphError("nodes must be in topological order")
            kind = behavior_role(role, bool(parents))
            if kind != VOTE and model is None:
                raise SimGraphError(f"node {index} ({role}) has no model")
            if kind in ("critic", "fuser", "verifier", VOTE) and not parents:
                raise SimGraphError(f"node {index} ({role}) has no predecessors")
            if kind == VOTE:
                built.append(SimNode(VOTE, None))
            else:
                built.append(SimNode(kind, _model_name(model or ""), temperatures[index] <= 0))
        successors = [0] * len(nodes)
        for parents in preds:
            for p in parents:
                successors[p] += 1
        lonely = [i for i in range(len(nodes) - 1) if successors[i] == 0]
        if lonely:
            raise SimGraphError(f"nodes {lonely} do not feed any other node (the last node is the output)")
        return cls(tuple(built), tuple(tuple(sorted(set(p))) for p in preds))


def _model_name(route: str) -> str:
    try:
        return sim_model(route).name
    except ValueError as exc:
        raise SimGraphError(str(exc)) from None


@dataclass(frozen=True)
class Estimate:
    """Expected accuracy over the engine's items; `stderr` is 0 when exact."""

    accuracy: float
    stderr: float
    exact: bool
    n_items: int


@cache
def _combine_index(joint: int, singles: int, m: int) -> np.ndarray:
    """[m**joint, n(singles)] -> index of the total count vector among count_vectors(joint+singles)."""
    totals = count_index(joint + singles, m)
    single_vectors = count_vectors(singles, m)
    table = np.zeros((m**joint, len(single_vectors)), dtype=np.int64)
    for row, config in enumerate(product(range(m), repeat=joint)):
        base = np.bincount(np.array(config, dtype=np.int64), minlength=m) if joint else np.zeros(m, dtype=np.int64)
        for col, vector in enumerate(single_vectors):
            table[row, col] = totals[tuple(int(x) for x in base + vector)]
    return table


@cache
def _add_one(k: int, m: int) -> np.ndarray:
    """[n(k), m] -> index in count_vectors(k+1) of a count vector plus one answer in category a."""
    target = count_index(k + 1, m)
    table = np.zeros((len(count_vectors(k, m)), m), dtype=np.int64)
    for row, vector in enumerate(count_vectors(k, m)):
        for a in range(m):
            bumped = vector.copy()
            bumped[a] += 1
            table[row, a] = target[tuple(int(x) for x in bumped)]
    return table


class _TooLarge(Exception):
    pass


class TruthEngine:
    """Exact expected accuracy, latency and tokens of sim graphs on one bank of items."""

    def __init__(self, bank: ItemBank, *, max_cells: int = MAX_CELLS, mc_draws: int = MC_DRAWS) -> None:
        self.bank = bank
        self.max_cells = max_cells  # largest joint table before falling back to Monte-Carlo
        self.mc_draws = mc_draws
        self.m = profile(bank.task).n_categories
        self._tables: dict[tuple[str | None, str, int, bool], np.ndarray] = {}
        self._cumulatives: dict[tuple[str | None, str, int, bool], np.ndarray] = {}
        self._probabilities: dict[SimGraph, tuple[np.ndarray, bool]] = {}
        self._finish_ranks: dict[SimGraph, tuple[int, ...]] = {}

    # conditional tables ----------------------------------------------------------------------
    def table(self, node: SimNode, degree: int) -> np.ndarray:
        """[I, n(degree), M]: a node's answer distribution per item and input count vector."""
        key = (node.model, node.role, degree, node.greedy)
        found = self._tables.get(key)
        if found is None:
            sim = sim_model(node.model) if node.model is not None else None
            found = call_distribution(self.bank, sim, node.role, count_vectors(degree, self.m))
            if node.greedy:  # temperature 0: always the most likely answer
                found = np.eye(self.m)[np.argmax(found, axis=2)]
            self._tables[key] = found
        return found

    def _cumulative(self, node: SimNode, degree: int) -> np.ndarray:
        """The node's table summed along answers (what Monte-Carlo draws compare a uniform with)."""
        key = (node.model, node.role, degree, node.greedy)
        found = self._cumulatives.get(key)
        if found is None:
            found = self._cumulatives[key] = np.cumsum(self.table(node, degree), axis=2)
        return found

    # accuracy -------------------------------------------------------------------------------
    def correct_probability(self, graph: SimGraph) -> tuple[np.ndarray, bool]:
        """Per item, P(the output is right); and whether it is exact (else Monte-Carlo)."""
        cached = self._probabilities.get(graph)
        if cached is not None:
            return cached
        try:
            result = (self._exact(graph), True)
        except _TooLarge:
            result = (self._monte_carlo(graph), False)
        if len(self._probabilities) > 200_000:
            self._probabilities.clear()
        self._probabilities[graph] = result
        return result

    def estimate(self, graph: SimGraph) -> Estimate:
        probabilities, exact = self.correct_probability(graph)
        n = len(probabilities)
        stderr = 0.0
        if not exact:
            draws = max(1, self.mc_draws // n)
            stderr = float(np.sqrt(np.sum(probabilities * (1 - probabilities)) / draws) / n)
        return Estimate(float(probabilities.mean()), stderr, exact, n)

    def accuracy(self, graph: SimGraph) -> float:
        return float(self.correct_probability(graph)[0].mean())

    def _exact(self, graph: SimGraph) -> np.ndarray:
        items, m = self.bank.size, self.m
        n = len(graph.nodes)
        remaining = [0] * n
        for parents in graph.preds:
            for p in parents:
                remaining[p] += 1
        factors: dict[int, tuple[list[int], np.ndarray]] = {}
        owner: dict[int, int] = {}
        for j, node in enumerate(graph.nodes):
            parents = graph.preds[j]
            if not parents:
                factors[j] = ([j], self.table(node, 0)[:, 0, :])
                owner[j] = j
                continue
            ordered = graph.ordered_vote(j)
            singles = [] if ordered else [p for p in parents if remaining[p] == 1 and len(factors[owner[p]][0]) == 1]
            joint = [p for p in parents if p not in singles]
            for p in parents:
                remaining[p] -= 1
            spread: np.ndarray = np.ones((items, 1))
            for k, p in enumerate(singles):
                marginal = factors.pop(owner.pop(p))[1]
                grown = np.zeros((items, len(count_vectors(k + 1, m))))
                add = _add_one(k, m)
                for a in range(m):
                    grown[:, add[:, a]] += spread * marginal[:, a : a + 1]
                spread = grown
            variables: list[int] = []
            joint_table: np.ndarray = np.ones((items,))
            merged = sorted({owner[p] for p in joint})
            if items * m ** sum(len(factors[fid][0]) for fid in merged) > self.max_cells:
                raise _TooLarge  # before building the product, which would be the expensive part
            for fid in merged:
                fvars, ftable = factors.pop(fid)
                joint_table = joint_table.reshape(joint_table.shape + (1,) * len(fvars)) * ftable.reshape(
                    (items,) + (1,) * len(variables) + ftable.shape[1:]
                )
                variables += fvars
            # Axes: joint inputs still needed later (kept), joint inputs used up here (spent), others.
            kept = [v for v in variables if v in joint and (remaining[v] > 0 or v == graph.output)]
            spent = [v for v in variables if v in joint and v not in kept]
            rest = [v for v in variables if v not in joint]
            a, b, r = m ** len(kept), m ** len(spent), m ** len(rest)
            if items * a * max(b, m) * r > self.max_cells:
                raise _TooLarge
            joint_table = joint_table.transpose([0, *(1 + variables.index(v) for v in kept + rest + spent)])
            joint_table = joint_table.reshape(items, a, r, b)
            if ordered:
                ranks = tuple(self.finish_rank(graph)[v] for v in kept + spent)
                weights: np.ndarray = _ordered_vote(ranks, m).reshape(a, b, m)
            else:
                index = _combine_index(len(kept) + len(spent), len(singles), m)  # [a*b, n(singles)]
                if index.size * items * m > self.max_cells:
                    raise _TooLarge
                table = self.table(node, len(parents))
                if not singles:
                    weights = table[:, index[:, 0], :].reshape(items, a, b, m)
                elif a * b == 1:
                    weights = np.matmul(spread[:, None, :], table[:, index[0], :]).reshape(items, 1, 1, m)
                else:
                    gathered = table[:, index, :]  # [I, a*b, n(singles), M]
                    weights = np.matmul(spread[:, None, None, :], gathered)[:, :, 0, :].reshape(items, a, b, m)
            new = np.matmul(joint_table, weights)  # [I, a, r, M]
            new_vars = [*kept, *rest, j]
            factors[j] = (new_vars, new.reshape((items,) + (m,) * len(new_vars)))
            for v in new_vars:
                owner[v] = j
        out_vars, out_table = factors[owner[graph.output]]
        if out_vars != [graph.output]:  # pragma: no cover - every other node is dead by now
            raise AssertionError(f"unexpected open variables {out_vars}")
        return np.asarray(out_table[:, 0], dtype=float)

    def _monte_carlo(self, graph: SimGraph, seed: int = 0) -> np.ndarray:
        """Per-item frequency of a right output over sampled runs (common random numbers per node)."""
        items, m = self.bank.size, self.m
        draws = max(1, self.mc_draws // items)
        rows = np.arange(items)[:, None]
        answers: list[np.ndarray] = []
        for j, node in enumerate(graph.nodes):
            parents = graph.preds[j]
            if graph.ordered_vote(j):
                ranks = tuple(self.finish_rank(graph)[p] for p in parents)
                answers.append(_vote_first_finished([answers[p] for p in parents], ranks, m))
                continue
            cumulative = self._cumulative(node, len(parents))  # [I, n, M]
            if parents:
                powers = (len(parents) + 1) ** np.arange(m)
                codes = sum(powers[answers[p]] for p in parents)
                thresholds = cumulative[rows, _code_lookup(len(parents), m)[codes]]  # [I, S, M]
            else:
                thresholds = np.broadcast_to(cumulative[:, 0, None, :], (items, draws, m))
            uniform = np.random.default_rng(stable_hash("mc", seed, j)).random((items, draws, 1))
            answers.append((thresholds < uniform).sum(axis=2).clip(max=m - 1))
        return np.asarray((answers[-1] == 0).mean(axis=1), dtype=float)

    # cost and latency ------------------------------------------------------------------------
    def _node_costs(self, graph: SimGraph) -> list[tuple[SimModel | None, np.ndarray, np.ndarray]]:
        costs: list[tuple[SimModel | None, np.ndarray, np.ndarray]] = []
        for j, node in enumerate(graph.nodes):
            if node.model is None:
                zero = np.zeros(self.bank.size)
                costs.append((None, zero, zero))
                continue
            prompt, completion = call_tokens(
                self.bank.prompt_tokens,
                self.bank.completion_tokens,
                len(graph.preds[j]),
                ROLES[node.role].length_factor,
            )
            costs.append((sim_model(node.model), prompt, completion))
        return costs

    def latency(self, graph: SimGraph) -> float:
        """Expected critical-path latency (seconds) of one question, from the roofline model."""
        return float(np.mean(self._finish_times(graph)[-1]))

    def finish_rank(self, graph: SimGraph) -> tuple[int, ...]:
        """The order the executor finishes the nodes in on the modelled clock: by expected finish
        time (votes take none), then by position."""
        found = self._finish_ranks.get(graph)
        if found is None:
            expected = [float(np.mean(f)) for f in self._finish_times(graph)]
            ranks = [0] * len(expected)
            for rank, index in enumerate(sorted(range(len(expected)), key=lambda i: (expected[i], i))):
                ranks[index] = rank
            found = self._finish_ranks[graph] = tuple(ranks)
        return found

    def _finish_times(self, graph: SimGraph) -> list[np.ndarray]:
        """Per node and item, when it finishes: its latest predecessor's finish plus its own call."""
        finish: list[np.ndarray] = []
        for j, (model, prompt, completion) in enumerate(self._node_costs(graph)):
            start = np.max([finish[p] for p in graph.preds[j]], axis=0) if graph.preds[j] else 0.0
            own = call_latency(model, prompt, completion) if model is not None else np.zeros(self.bank.size)
            finish.append(start + own)
        return finish

    def tokens(self, graph: SimGraph) -> float:
        """Expected prompt + completion tokens of one question."""
        return float(sum(np.mean(prompt + completion) for _, prompt, completion in self._node_costs(graph)))


@cache
def _ordered_vote(ranks: tuple[int, ...], m: int) -> np.ndarray:
    """[m**d, m] one-hot winner of a vote over inputs in axis order with finishing ranks `ranks`:
    the most common answer, ties to the answer of the input that finishes first."""
    d = len(ranks)
    table = np.zeros((m**d, m))
    by_rank = sorted(range(d), key=lambda axis: ranks[axis])
    for row, config in enumerate(product(range(m), repeat=d)):
        counts = np.bincount(np.array(config, dtype=np.int64), minlength=m)
        top = counts.max()
        winner = next(config[axis] for axis in by_rank if counts[config[axis]] == top)
        table[row, winner] = 1.0
    return table


def _vote_first_finished(inputs: list[np.ndarray], ranks: tuple[int, ...], m: int) -> np.ndarray:
    """Sampled vote outcomes (Monte-Carlo path) with ties to the input of the lowest finishing rank."""
    counts = np.zeros((*inputs[0].shape, m), dtype=np.int16)  # [I, S, M]
    for answers in inputs:
        for category in range(m):
            counts[..., category] += answers == category
    top = counts.max(axis=2)
    result = np.full(inputs[0].shape, -1)
    for position in sorted(range(len(inputs)), key=lambda i: ranks[i]):
        answers = inputs[position]
        wins = (result < 0) & (np.take_along_axis(counts, answers[..., None], axis=2)[..., 0] == top)
        result = np.where(wins, answers, result)
    return result


@cache
def _code_lookup(d: int, m: int) -> np.ndarray:
    """Count-vector code Σ_a n_a·(d+1)^a -> index among count_vectors(d, m)."""
    lookup = np.zeros((d + 1) ** m, dtype=np.int64)
    for index, vector in enumerate(count_vectors(d, m)):
        lookup[int(sum(int(c) * (d + 1) ** a for a, c in enumerate(vector)))] = index
    return lookup
