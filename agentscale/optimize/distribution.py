"""The probabilistic graph that Agent-REINFORCE (and the REINFORCE and random baselines) sample from.

Parameters, as in the paper's `EdgeWiseDistribution`: a categorical over the node count, for each
node slot a categorical over models and one over roles, and a Bernoulli logit per forward edge
(slot i -> slot j, i < j); when the space searches the CEO coordinator, one more categorical over its
choices (no CEO, or a CEO model). Sampling only returns graphs that are valid and fit the budget: structural
repair first (a node that needs inputs gets its previous slot as input; a node with no successor
feeds the output), then, while over budget, the cheapest non-output node is removed (its inputs are
passed to its successors, as the paper's `ensure_within_budget` removes the smallest models first);
if nothing fits, the sample is drawn again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentscale.graphs.spec import MODEL_FREE_ROLES, ROLES_NEEDING_INPUTS
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice, copies_an_input
from agentscale.optimize.problem import SearchProblem

MAX_DRAWS = 64


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return np.asarray(shifted / shifted.sum())


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-logits)))


@dataclass
class Gradient:
    """d log p(candidate) / d logits, one array per parameter group."""

    size: np.ndarray
    model: np.ndarray
    role: np.ndarray
    edge: np.ndarray
    ceo: np.ndarray


class GraphDistribution:
    def __init__(self, problem: SearchProblem) -> None:
        self.problem = problem
        n, m, r = problem.max_nodes, len(problem.aliases), len(problem.roles)
        self.size_logits = np.zeros(n)
        self.model_logits = np.zeros((n, m))
        self.role_logits = np.zeros((n, r))
        self.edge_logits = np.zeros((n, n))
        self.ceo_logits = np.zeros(len(problem.ceo_options))
        self._source_mask = np.array([role not in ROLES_NEEDING_INPUTS for role in problem.roles])

    # probabilities ----------------------------------------------------------------------------
    def role_probs(self, slot: int) -> np.ndarray:
        logits = self.role_logits[slot]
        if slot == 0:  # the first node has no possible input: only roles that answer alone
            logits = np.where(self._source_mask, logits, -np.inf)
        return softmax(logits)

    def model_probs(self, slot: int) -> np.ndarray:
        return softmax(self.model_logits[slot])

    def size_probs(self) -> np.ndarray:
        return softmax(self.size_logits)

    def edge_probs(self) -> np.ndarray:
        return sigmoid(self.edge_logits)

    def ceo_probs(self) -> np.ndarray:
        return softmax(self.ceo_logits)

    # sampling ---------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> CandidateGraph:
        """A valid graph within budget; raises ValueError when repeated draws find none."""
        for _ in range(MAX_DRAWS):
            candidate = self.fit_budget(self._draw(rng))
            if candidate is not None and self.problem.fits(candidate):
                return candidate
        # a tight budget with skewed logits can miss every draw (budget 1.5, one 1.0 call fits): the
        # cheapest single call is then the valid graph that fits, if any does
        cheapest = self.problem.cheapest_single()
        if self.problem.fits(cheapest):
            return cheapest
        raise ValueError(
            "no sampled graph fits the budget: raise `budget.compute` or allow smaller models "
            f"(the cheapest single call costs {self.problem.compute(cheapest):.2f} compute units)"
        )

    def _draw(self, rng: np.random.Generator) -> CandidateGraph:
        problem = self.problem
        size = int(rng.choice(problem.max_nodes, p=self.size_probs())) + 1
        nodes = []
        for slot in range(size):
            role = problem.roles[int(rng.choice(len(problem.roles), p=self.role_probs(slot)))]
            model = (
                None
                if role in MODEL_FREE_ROLES
                else problem.aliases[int(rng.choice(len(problem.aliases), p=self.model_probs(slot)))]
            )
            nodes.append(NodeChoice(role, model))
        probs = self.edge_probs()
        edges = {(i, j) for j in range(size) for i in range(j) if rng.random() < probs[i, j]}
        options = problem.ceo_options  # drawn only when searched, so other spaces sample as before
        ceo = options[int(rng.choice(len(options), p=self.ceo_probs()))] if len(options) > 1 else options[0]
        return repair(tuple(nodes), edges, ceo)

    def fit_budget(self, candidate: CandidateGraph) -> CandidateGraph | None:
        """`candidate` with its cheapest non-output model node removed, one at a time, until it fits the
        budget (None when a single node still does not). Sampling uses it, and so does TPE
        (`methods/bayes.py`), so both methods turn an over-budget draw into the same graph."""
        problem = self.problem
        while problem.budget is not None and problem.compute(candidate) > problem.budget + 1e-9:
            if candidate.size == 1:
                return None
            candidate = remove_node(candidate, self._cheapest_removable(candidate))
        return candidate

    def _cheapest_removable(self, candidate: CandidateGraph) -> int:
        """The non-output model node whose model costs least. Not a vote or tester: removing one saves
        no compute, and its successor then reads every one of its inputs, so the graph costs more and
        loses its aggregation (5 × llama-3b → vote → critic became 3 × llama-3b → critic, where
        dropping one llama-3b fitted the budget)."""

        def cost(index: int) -> tuple[float, int]:
            single = CandidateGraph((NodeChoice("assistant", candidate.nodes[index].model),), frozenset())
            return (self.problem.compute(single), -index)

        models = [index for index in range(candidate.size - 1) if candidate.nodes[index].model is not None]
        return min(models, key=cost)

    # learning ---------------------------------------------------------------------------------
    def gradient(self, candidate: CandidateGraph) -> Gradient:
        """Score-function gradient of log p(candidate) for the REINFORCE update."""
        grad = Gradient(
            np.zeros_like(self.size_logits),
            np.zeros_like(self.model_logits),
            np.zeros_like(self.role_logits),
            np.zeros_like(self.edge_logits),
            np.zeros_like(self.ceo_logits),
        )
        if candidate.ceo in self.problem.ceo_options:  # pilot graphs may sit outside the dimension
            grad.ceo = -self.ceo_probs()
            grad.ceo[self.problem.ceo_options.index(candidate.ceo)] += 1.0
        size = min(candidate.size, self.problem.max_nodes)
        grad.size = -self.size_probs()
        grad.size[size - 1] += 1.0
        for slot, node in enumerate(candidate.nodes[:size]):
            grad.role[slot] = -self.role_probs(slot)
            grad.role[slot][self.problem.roles.index(node.role)] += 1.0
            if node.model is not None:
                grad.model[slot] = -self.model_probs(slot)
                grad.model[slot][self.problem.aliases.index(node.model)] += 1.0
        probs = self.edge_probs()
        for j in range(size):
            for i in range(j):
                grad.edge[i, j] = (1.0 if (i, j) in candidate.edges else 0.0) - probs[i, j]
        return grad

    def step(self, grad: Gradient, scale: float) -> None:
        self.size_logits += scale * grad.size
        self.model_logits += scale * grad.model
        self.role_logits += scale * np.nan_to_num(grad.role, neginf=0.0, posinf=0.0)
        self.edge_logits += scale * grad.edge
        self.ceo_logits += scale * grad.ceo
        for array in (self.size_logits, self.model_logits, self.role_logits, self.edge_logits, self.ceo_logits):
            np.clip(array, -8.0, 8.0, out=array)

    # persistence ------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "size": self.size_logits.tolist(),
            "model": self.model_logits.tolist(),
            "role": self.role_logits.tolist(),
            "edge": self.edge_logits.tolist(),
            "ceo": self.ceo_logits.tolist(),
        }

    def describe(self) -> str:
        """Current probabilities as text tables (what an LLM agent is shown)."""
        problem = self.problem
        lines = ["node count: " + ", ".join(f"{k + 1}: {p:.2f}" for k, p in enumerate(self.size_probs()))]
        for slot in range(problem.max_nodes):
            models = ", ".join(f"{a} {p:.2f}" for a, p in zip(problem.aliases, self.model_probs(slot), strict=True))
            roles = ", ".join(f"{r} {p:.2f}" for r, p in zip(problem.roles, self.role_probs(slot), strict=True))
            lines.append(f"slot {slot}: models [{models}] roles [{roles}]")
        probs = self.edge_probs()
        edges = [f"{i}->{j} {probs[i, j]:.2f}" for j in range(problem.max_nodes) for i in range(j)]
        lines.append("edges: " + ", ".join(edges))
        if problem.ceo_options != (None,):
            choices = zip(problem.ceo_options, self.ceo_probs(), strict=True)
            lines.append("coordinator: " + ", ".join(f"{ceo_name(c)} {p:.2f}" for c, p in choices))
        return "\n".join(lines)


def ceo_name(ceo: CeoChoice | None) -> str:
    """How a coordinator choice is written for the LLM agent (`off` or the CEO's model alias)."""
    return "off" if ceo is None else ceo.model


def repair(nodes: tuple[NodeChoice, ...], edges: set[tuple[int, int]], ceo: CeoChoice | None = None) -> CandidateGraph:
    """Make a drawn graph structurally valid: inputs where needed, every node reaching the output,
    and no chooser that cannot choose (a vote or tester over one input, a vote over two: it passes
    an input on, `copies_an_input`; it is dropped and its inputs wired to its successors)."""
    nodes, fixed = _connect(nodes, set(edges))
    while (copy := _copying_chooser(nodes, fixed)) is not None:
        nodes, fixed = _connect(*_bypass(nodes, fixed, copy))
    return CandidateGraph(nodes, frozenset(fixed), ceo)


def remove_node(candidate: CandidateGraph, index: int) -> CandidateGraph:
    """Drop a node, passing its inputs on to its successors, then repair."""
    nodes, edges = _bypass(candidate.nodes, set(candidate.edges), index)
    return repair(nodes, edges, candidate.ceo)


def _connect(
    nodes: tuple[NodeChoice, ...], edges: set[tuple[int, int]]
) -> tuple[tuple[NodeChoice, ...], set[tuple[int, int]]]:
    """A node needing inputs gets its previous slot; a node without successors feeds the output."""
    size = len(nodes)
    for j in range(1, size):
        if nodes[j].role in ROLES_NEEDING_INPUTS and not any(t == j for _, t in edges):
            edges.add((j - 1, j))
    for i in range(size - 2, -1, -1):
        if not any(s == i for s, _ in edges):
            edges.add((i, size - 1))
    return nodes, edges


def _copying_chooser(nodes: tuple[NodeChoice, ...], edges: set[tuple[int, int]]) -> int | None:
    for index, node in enumerate(nodes):
        if copies_an_input(node.role, sum(1 for _, j in edges if j == index)):
            return index
    return None


def _bypass(
    nodes: tuple[NodeChoice, ...], edges: set[tuple[int, int]], index: int
) -> tuple[tuple[NodeChoice, ...], set[tuple[int, int]]]:
    """The graph without node `index`, its inputs wired to its successors (indices shifted down)."""
    preds = [i for i, j in edges if j == index]
    succs = [j for i, j in edges if i == index]
    kept = {(i, j) for i, j in edges if index not in (i, j)} | {(p, s) for p in preds for s in succs}

    def shift(k: int) -> int:
        return k - 1 if k > index else k

    return nodes[:index] + nodes[index + 1 :], {(shift(i), shift(j)) for i, j in kept}
