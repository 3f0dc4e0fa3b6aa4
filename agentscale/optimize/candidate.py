"""Candidate graphs: the compact form the optimizers sample, score and compare.

A candidate is a list of node choices (model alias, role) in topological order plus forward edges
`i -> j` (i < j); the last node is the output. It may also put a CEO coordinator over the graph
(:class:`CeoChoice`): the graph then runs as a multi-round discussion (docs/coordinator.md). This
form makes validity, the compute cost and isomorphism cheap to check, and converts to a runnable
:class:`GraphSpec` for evaluation and output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from agentscale.agents.coordinator import MAX_ATTEMPTS
from agentscale.graphs.spec import (
    MODEL_FREE_ROLES,
    ROLES_NEEDING_INPUTS,
    Budget,
    Coordinator,
    GraphSpec,
    ModelSpec,
    NodeSpec,
    Sampling,
)
from agentscale.models.cost import compute_unit, model_flops
from agentscale.models.registry import ResolvedModel, resolve
from agentscale.runtime.discussion import CEO_MAX_TOKENS

# a CEO call's prompt beyond the question and the answers it reads: its instructions, the team's
# resources and, on a retry, the correction (agents/prompts/coordinator.yaml is 2.4 KB in all)
CEO_PROMPT_ALLOWANCE = 1024

SampledNodes = Literal["all", "parallel", "greedy_first"]  # a space's `sampled_nodes` (`CandidateGraph.greedy_nodes`)


def copies_an_input(role: str, inputs: int) -> bool:
    """A model-free node that cannot choose (never searched): a vote or tester over one input passes it
    on; a vote over two passes on the first to finish, since two answers either agree or tie (a
    tester of two does choose: it runs both). Such a graph is a cheaper graph's answer at a higher
    price, and its calls were raced for the crown in vain (SIMULATED mmlu-b42-large, seed 6: four graphs ending
    in a vote of two, each item for item gemma-7b's single call, raced all 200 train items)."""
    return role in MODEL_FREE_ROLES and (inputs == 1 or (role == "vote" and inputs == 2))


@dataclass(frozen=True)
class NodeChoice:
    """One node: its role and, unless the role needs no model (vote, tester), the alias of its model."""

    role: str
    model: str | None

    def label(self) -> str:
        return self.role if self.model is None else f"{self.role}:{self.model}"


@dataclass(frozen=True)
class CeoChoice:
    """A CEO coordinator over the graph: its model alias and how many rounds it may run."""

    model: str
    max_rounds: int

    def label(self) -> str:
        return f"ceo:{self.model}x{self.max_rounds}"


@dataclass(frozen=True)
class CandidateGraph:
    nodes: tuple[NodeChoice, ...]
    edges: frozenset[tuple[int, int]]
    ceo: CeoChoice | None = None  # None: the graph runs once, without a coordinator

    # structure ------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def output(self) -> int:
        return len(self.nodes) - 1

    @cached_property
    def predecessors(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(sorted(i for i, j in self.edges if j == node)) for node in range(self.size))

    def greedy_nodes(self, sampled_nodes: SampledNodes) -> frozenset[int]:
        """The model nodes that answer at temperature 0 instead of the space's temperature.

        With `parallel`, only answers drawn side by side (two or more model nodes without inputs)
        sample: one answer alone gains nothing from sampling and loses accuracy to it (a sampled
        1.5B single call is a weaker baseline than the greedy one a user would run), and a critic or
        fuser judges its inputs best greedily. `greedy_first` is `parallel` with each model's first
        parallel answer greedy: "one greedy call plus samples", the mixed graph that beat the 1.5B's
        single call on HumanEval (docs/real-models.md), which `parallel` cannot express.
        """
        if sampled_nodes == "all":
            return frozenset()
        models = [i for i, node in enumerate(self.nodes) if node.model is not None]
        sources = [i for i in models if not self.predecessors[i]]
        parallel = set(sources) if len(sources) >= 2 else set()
        if sampled_nodes == "greedy_first":
            # each model's first parallel answer is its greedy one, so a chooser over "greedy call +
            # samples" can never be left without the answer a single call would have given
            firsts = {self.nodes[i].model: i for i in sorted(parallel, reverse=True)}
            parallel -= set(firsts.values())
        return frozenset(i for i in models if i not in parallel)

    def problems(self) -> list[str]:
        """Why this candidate is not a valid graph (empty when it is)."""
        found = []
        if not self.nodes:
            return ["no nodes"]
        for i, j in self.edges:
            if not 0 <= i < j < self.size:
                found.append(f"edge {i}->{j} is not forward")
        for index, node in enumerate(self.nodes):
            preds = self.predecessors[index]
            if node.role in ROLES_NEEDING_INPUTS and not preds:
                found.append(f"node {index} ({node.role}) has no predecessors")
            if copies_an_input(node.role, len(preds)):
                over = "one input" if len(preds) == 1 else "two inputs"
                found.append(f"node {index} is a {node.role} over {over} (a copy, not a choice)")
            if (node.role in MODEL_FREE_ROLES) != (node.model is None):
                found.append(f"node {index}: only {' and '.join(MODEL_FREE_ROLES)} nodes go without a model")
        reaches = {self.output}
        for index in range(self.size - 1, -1, -1):
            if any(j in reaches for i, j in self.edges if i == index):
                reaches.add(index)
        unreachable = sorted(set(range(self.size)) - reaches)
        if unreachable:
            found.append(f"nodes {unreachable} cannot reach the output")
        return found

    @property
    def is_valid(self) -> bool:
        return not self.problems()

    # identity -------------------------------------------------------------------------------
    @cached_property
    def canonical_key(self) -> str:
        """Equal for isomorphic candidates (same labelled DAG under any topological relabelling).

        The least form over relabellings (`_smallest_form`) is exact for every size. Graphs of more
        than 7 nodes order their nodes by a refinement of their labels (`_ranks`) so the search
        for the least form stays short; their keys were once a signature of each node's ancestry, which
        two graphs differing only in who reads whom shared (two critics of one answer or of two). The
        CEO, when there is one, is part of the key.
        """
        suffix = "" if self.ceo is None else "|" + self.ceo.label()
        # up to 7 nodes ordered by the labels alone: the keys earlier runs stored stay valid for their resume
        return repr(self._smallest_form(self._ranks(refined=self.size > 7))) + suffix

    def _ranks(self, *, refined: bool) -> list[int]:
        """Each node's rank among the graph's labels; `refined`: among the labels refined by their
        inputs' and successors' ranks until no class splits further (colour refinement). Nodes an
        isomorphism can swap share a rank either way, so ordering by ranks keeps the least form
        canonical; refined ranks separate most nodes of a large graph, which keeps its search short."""
        inputs = self.predecessors
        outputs = [[j for i, j in self.edges if i == node] for node in range(self.size)]
        signatures: list[str] = [node.label() for node in self.nodes]
        classes = 0
        while True:
            distinct = sorted(set(signatures))
            ranks = [distinct.index(signature) for signature in signatures]
            if not refined or len(distinct) == classes:
                return ranks
            classes = len(distinct)
            signatures = [
                repr((ranks[v], sorted(ranks[p] for p in inputs[v]), sorted(ranks[c] for c in outputs[v])))
                for v in range(self.size)
            ]

    def _smallest_form(self, ranks: list[int]) -> tuple[tuple[str, ...], tuple[tuple[int, int], ...]]:
        """The least (labels, edges) over the topological relabellings that keep the output last and
        place nodes in the order of their `ranks` (`_ranks`).

        Depth first, placing one node at a time: a position only takes a ready node (inputs placed)
        of the least rank ready (with the labels' own ranks, any other gives a larger label sequence),
        and of interchangeable ready nodes (same rank, inputs and successors) only one, since swapping
        them changes nothing. Exact, and far cheaper than trying every permutation (720 for 7 nodes).
        """
        labels = [node.label() for node in self.nodes]
        inputs = [frozenset(p) for p in self.predecessors]
        outputs = [frozenset(j for i, j in self.edges if i == node) for node in range(self.size)]
        best: tuple[tuple[str, ...], tuple[tuple[int, int], ...]] | None = None
        order: list[int] = []

        def extend(placed: frozenset[int]) -> None:
            nonlocal best
            if len(order) == self.size - 1:
                position = {old: new for new, old in enumerate(order)} | {self.output: self.output}
                form = (
                    (*(labels[old] for old in order), labels[self.output]),
                    tuple(sorted((position[i], position[j]) for i, j in self.edges)),
                )
                best = form if best is None or form < best else best
                return
            ready = [v for v in range(self.size - 1) if v not in placed and inputs[v] <= placed]
            least = min(ranks[v] for v in ready)
            tried: set[tuple[int, frozenset[int], frozenset[int]]] = set()
            for v in ready:
                twin = (ranks[v], inputs[v], outputs[v])
                if ranks[v] == least and twin not in tried:
                    tried.add(twin)
                    order.append(v)
                    extend(placed | {v})
                    order.pop()

        extend(frozenset())
        assert best is not None
        return best

    # cost -----------------------------------------------------------------------------------
    def compute(
        self, models: dict[str, ResolvedModel], mean_prompt_tokens: float, mean_completion_tokens: float
    ) -> float:
        """Projected FLOPs in 1B-call units (the Agent-REINFORCE cost model).

        A node with in-degree d reads the question plus its predecessors' answers, so its prompt is
        A + d·B tokens for a task with mean prompt A and mean completion B; it writes B tokens.
        Votes call no model and cost nothing.

        With a CEO the projection is the discussion's worst case without retries: every round runs
        the whole graph (the CEO's agent count is capped by the graph's own), sources read the best
        answer from round 2 on (one more input), and one CEO call per round reads about a question
        and an answer and writes its completion cap. A CEO that needs format retries spends more
        than this (the measured spend is recorded with each trial).
        """
        lengths = (mean_prompt_tokens, mean_completion_tokens)
        total = self._pass_flops(models, *lengths, source_inputs=0)
        if self.ceo is not None:
            later = self._pass_flops(models, *lengths, source_inputs=1)
            ceo_call = _call_flops(models, self.ceo.model, mean_prompt_tokens + mean_completion_tokens, CEO_MAX_TOKENS)
            total += (self.ceo.max_rounds - 1) * later + self.ceo.max_rounds * ceo_call
        return total / compute_unit(*lengths)

    def _pass_flops(
        self, models: dict[str, ResolvedModel], prompt: float, completion: float, *, source_inputs: int
    ) -> float:
        """FLOPs of one pass over the graph; sources read `source_inputs` extra answers."""
        return sum(
            _call_flops(models, model, prompt + inputs * completion, completion)
            for model, inputs in self.pass_calls(source_inputs)
        )

    def pass_calls(self, source_inputs: int) -> list[tuple[str, int]]:
        """One pass's model calls as (model alias, answers it reads): a node reads its predecessors'
        answers, a source `source_inputs` (the best answer so far, in a discussion's later rounds)."""
        return [
            (node.model, len(self.predecessors[index]) or source_inputs)
            for index, node in enumerate(self.nodes)
            if node.model is not None
        ]

    # the spend cap's worst case ---------------------------------------------------------------
    def worst_case_calls(self) -> int:
        """Model calls one question can make at most: every model node once; with a CEO, every round
        runs all of them (its agent count is capped by the graph's own) and the CEO may need
        `MAX_ATTEMPTS` replies a round."""
        per_pass = len(self.pass_calls(0))
        if self.ceo is None:
            return per_pass
        return self.ceo.max_rounds * (per_pass + MAX_ATTEMPTS)

    def worst_case_tokens(self, prompt_tokens: float, max_tokens: int) -> int:
        """Tokens one question can cost at most: every model call writes `max_tokens` and reads a
        prompt of `prompt_tokens` (the question's, counted generously) plus every input at full
        length; with a CEO, each later round also gives sources the best answer so far, and each CEO
        reply reads the question, the round's answers and its earlier replies (see `worst_case_calls`)."""
        prompt = int(prompt_tokens)

        def one_pass(source_inputs: int) -> int:
            return sum(prompt + inputs * max_tokens + max_tokens for _, inputs in self.pass_calls(source_inputs))

        total = one_pass(0)
        if self.ceo is not None:
            answers = len(self.pass_calls(0)) + 1  # the round's and the best so far
            ceo_reply = prompt + answers * max_tokens + CEO_PROMPT_ALLOWANCE + MAX_ATTEMPTS * CEO_MAX_TOKENS
            total += (self.ceo.max_rounds - 1) * one_pass(1) + self.ceo.max_rounds * MAX_ATTEMPTS * ceo_reply
        return total

    # conversion -----------------------------------------------------------------------------
    @property
    def node_models(self) -> frozenset[str]:
        """The model aliases the graph's nodes call (a CEO's model aside)."""
        return frozenset(n.model for n in self.nodes if n.model is not None)

    def node_id(self, index: int) -> str:
        node = self.nodes[index]
        return "out" if index == self.output else f"n{index}_{node.role}"

    def to_spec(
        self,
        name: str,
        models: dict[str, ModelSpec],
        *,
        defaults: Sampling | None = None,
        description: str = "",
        sampled_nodes: SampledNodes = "all",
        budget: Budget | None = None,
    ) -> GraphSpec:
        """A runnable graph with the models it uses (greedy nodes carry `temperature: 0`) and the
        per-question `budget` it enforces itself."""
        used = sorted(self.node_models | ({self.ceo.model} if self.ceo else set()))
        greedy = self.greedy_nodes(sampled_nodes)
        nodes = [
            NodeSpec(id=self.node_id(i), role=n.role, model=n.model, temperature=0.0 if i in greedy else None)
            for i, n in enumerate(self.nodes)
        ]
        edges = []
        for index in range(self.size):
            preds = self.predecessors[index]
            if preds:
                edges.append(", ".join(self.node_id(p) for p in preds) + " -> " + self.node_id(index))
        return GraphSpec(
            name=name,
            description=description,
            models={alias: models[alias] for alias in used},
            defaults=defaults or Sampling(),
            nodes=nodes,
            edges=edges,
            output=self.node_id(self.output),
            coordinator=None if self.ceo is None else Coordinator(model=self.ceo.model, max_rounds=self.ceo.max_rounds),
            budget=budget,
        )

    def short_name(self) -> str:
        """`single call of l8`, `majority vote of 3 x l8`, `tester of 3 x l8`, else the graph in one line."""
        models = [n.model for n in self.nodes if n.model]
        if self.size == 1 and models and self.ceo is None:  # with a CEO it is a discussion of rounds
            return f"single call of {models[0]}"
        chooser = {"vote": "majority vote", "tester": "tester"}.get(self.nodes[-1].role)
        last = self.size - 1
        # side by side: independent assistants, all read by the chooser (an assistant -> fuser -> vote is none)
        parallel = all(n.role == "assistant" and not self.predecessors[i] for i, n in enumerate(self.nodes[:last]))
        parallel = parallel and set(self.predecessors[last]) == set(range(last))
        if chooser and self.ceo is None and len(set(models)) == 1 and len(models) == last > 1 and parallel:
            return f"{chooser} of {len(models)} x {models[0]}"
        return self.diagram_line()

    def diagram_line(self) -> str:
        """The diagram in one line for tables: its levels, then the inputs of each node that does not read
        exactly the level before it (`[0:a] -> [1:a] -> [2:vote] (2 <- 0, 1)`: the levels alone read as a
        chain, a one-input vote), and the CEO. The nodes' labels alone named a fan-in and a chain of the
        same nodes alike, in the report's tables and plots."""
        line, level = self.levels()
        previous = {depth: {i for i in range(self.size) if level[i] == depth - 1} for depth in set(level.values())}
        edges = [
            f"{index} <- {', '.join(str(p) for p in preds)}"
            for index, preds in enumerate(self.predecessors)
            if preds and set(preds) != previous[level[index]]
        ]
        line += f" ({'; '.join(edges)})" if edges else ""
        if self.ceo is not None:
            line += f" + CEO {self.ceo.model} (up to {self.ceo.max_rounds} rounds)"
        return line

    def levels(self) -> tuple[str, dict[int, int]]:
        """The levels line of the diagram, and each node's level (1 for those reading the question only)."""
        level: dict[int, int] = {}
        for index in range(self.size):
            level[index] = 1 + max((level[p] for p in self.predecessors[index]), default=0)
        columns = []
        for depth in range(1, max(level.values()) + 1):
            members = [i for i in range(self.size) if level[i] == depth]
            columns.append(" ".join(f"[{i}:{self.nodes[i].label()}]" for i in members))
        return " -> ".join(columns), level

    def describe(self) -> str:
        """One line per node: `index | model | role | predecessors` (the agent-facing table form)."""
        lines = []
        for index, node in enumerate(self.nodes):
            preds = ",".join(str(p) for p in self.predecessors[index]) or "-"
            lines.append(f"{index} | {node.model or '-'} | {node.role} | {preds}")
        if self.ceo is not None:
            lines.append(f"CEO coordinator: {self.ceo.model}, up to {self.ceo.max_rounds} rounds")
        return "\n".join(lines)


def _call_flops(models: dict[str, ResolvedModel], alias: str, prompt: float, completion: float) -> float:
    flops = model_flops(models[alias], round(prompt), round(completion))
    if flops is None:
        raise ValueError(f"model {alias!r} has unknown size: set params_b in the space")
    return flops


def resolve_models(models: dict[str, ModelSpec]) -> dict[str, ResolvedModel]:
    return {alias: resolve(alias, spec) for alias, spec in models.items()}
