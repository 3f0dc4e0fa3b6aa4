"""Feedback that turns evaluated graphs into updates of the probabilistic graph.

Two kinds, as in Agent-REINFORCE's "sample → feedback → update":
- rule-based: the paper's three insights applied as deterministic rules (no LLM needed);
- textual: an LLM agent reads the sampled graphs as tables, their scores, cost and latency, the
  current probabilities (and, for Agent-REINFORCE, the insights and rules) and returns a JSON update.
  The update is validated with pydantic; malformed or out-of-range output is rejected and logged,
  never applied, so a model's text cannot push the search outside the space or its budget.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentscale.agents.coordinator import json_objects
from agentscale.agents.json_repair import open_brackets
from agentscale.graphs.spec import MODEL_FREE_ROLES
from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.distribution import GraphDistribution, ceo_name, repair
from agentscale.optimize.objective import Observation

log = logging.getLogger("agentscale.optimize")

AgentCall = Callable[[str, str], Awaitable[str]]
"""`await agent(system, user) -> text`: an LLM used for textual feedback (through the gateway)."""

Probability = float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProposedNode(_Strict):
    role: str
    model: str | None = None


class ProposedGraph(_Strict):
    nodes: list[ProposedNode] = Field(min_length=1, max_length=32)
    edges: list[tuple[int, int]] = Field(default_factory=list)
    coordinator: str = "off"  # "off" or the CEO's model alias (spaces that search the coordinator)


class AgentUpdate(_Strict):
    """What the agent may change: node-count, model, edge and coordinator probabilities, and one
    proposed graph."""

    size: dict[int, Probability] | None = None
    models: dict[str, Probability] | None = None
    edges: list[tuple[int, int, Probability]] | None = None
    coordinator: dict[str, Probability] | None = None  # "off" or a CEO alias -> probability
    graph: ProposedGraph | None = None

    def parts(self) -> int:
        """How many entries it gives (a probability each, and the graph): each is applied, or
        rejected with one reason (`apply_agent_update`)."""
        counted = (self.size, self.models, self.edges, self.coordinator)
        return sum(len(entries) for entries in counted if entries) + (self.graph is not None)


def parse_agent_update(text: str) -> tuple[AgentUpdate | None, str | None]:
    """The update in a reply (JSON, possibly inside prose or a code fence), or (None, why not).

    A reply cut before its object closes (at the agent's max_tokens) gives the fields that closed
    before the cut: the real 0.5B agent's two replies ran to 1,024 tokens repeating its proposed
    graph's nodes, its probabilities complete before them, and the first complete object inside
    (its `size` probabilities) was taken for the update and refused ("Extra inputs are not
    permitted at ('1',)"), which said nothing of the cut."""
    cut = _members_before_a_cut(text)
    if cut is not None:
        if not cut:
            return None, "the reply stopped before its JSON object closed (cut at its max_tokens?), no field complete"
        objects = [cut]
        log.info("agent reply cut before its JSON closed: its %d complete field(s) used", len(cut))
    else:
        objects = json_objects(text)  # the first one is the update
    if not objects:
        return None, "no JSON object in the reply"
    return _valid_fields(objects[0])


def _valid_fields(data: dict[str, Any]) -> tuple[AgentUpdate | None, str | None]:
    """The update of the reply's fields that are valid, and why any was dropped. A field of its own
    whose value is malformed is dropped alone: the real 0.5B agent gave `graph.edges` as [i, j, p]
    triples beside valid probabilities, and the whole reply was refused. A key the update does not
    have (`budget`) refuses the reply whole: it asks for what the agent may not change."""
    try:
        return AgentUpdate.model_validate(data), None
    except ValidationError as exc:
        errors = exc.errors()
        why = f"invalid update: {errors[0]['msg']} at {errors[0]['loc']}"
    broken = {str(error["loc"][0]) for error in errors if error["loc"]}
    if not broken <= set(AgentUpdate.model_fields) or any(error["type"] == "extra_forbidden" for error in errors):
        return None, why
    kept = {key: value for key, value in data.items() if key not in broken}
    if not kept:
        return None, why
    try:
        update = AgentUpdate.model_validate(kept)
    except ValidationError:
        return None, why
    return update, f"{', '.join(sorted(broken))} dropped ({why})"


def _members_before_a_cut(text: str) -> dict[str, Any] | None:
    """The key/value pairs of the reply's first object that closed before the reply ended, when the
    reply ends inside that object; None when there is no such cut object (it closes, or what the
    first brace opens is no JSON object: prose)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    if start == -1:
        return None
    try:
        decoder.raw_decode(text, start)
        return None  # it closes
    except (json.JSONDecodeError, RecursionError):
        pass
    members: dict[str, Any] = {}
    index = start + 1
    while True:
        index = _past_blanks(text, index)
        try:
            key, index = decoder.raw_decode(text, index)
            index = _past_blanks(text, index)
            if index < len(text) and (not isinstance(key, str) or text[index] != ":"):
                return None  # no object member here: prose, or a broken object
            index = _past_blanks(text, index + 1)
            value, index = decoder.raw_decode(text, index)
        except (json.JSONDecodeError, RecursionError):
            # a key or value the reply's end cut: what came before stands; one broken elsewhere is no cut
            return members if _runs_to_the_end(text, index) else None
        members[key] = value
        index = _past_blanks(text, index)
        if index >= len(text):
            return members
        if text[index] != ",":
            return None  # a closing brace after all, or a broken object
        index += 1


def _past_blanks(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _runs_to_the_end(text: str, index: int) -> bool:
    """Whether the JSON key or value starting at `index` is cut by the text's end rather than broken:
    nothing is left, or a bracket or string it opens is still open where the text ends."""
    rest = text[index:].strip()
    if not rest or any(word.startswith(rest) for word in ("true", "false", "null")):
        return True
    opened, in_string, underflow = open_brackets(text[index:])
    return not underflow and (bool(opened) or in_string)


def apply_agent_update(
    distribution: GraphDistribution, update: AgentUpdate, mix: float = 0.5
) -> tuple[CandidateGraph | None, list[str]]:
    """Blend the agent's probabilities into the logits; return its proposed graph if it fits."""
    problem = distribution.problem
    problems: list[str] = []

    def to_logit(p: float) -> float:
        p = min(max(p, 0.02), 0.98)
        return float(np.log(p / (1 - p)))

    def check(p: float, what: str) -> bool:
        if not 0.0 <= p <= 1.0:
            problems.append(f"{what}: probability {p} outside [0, 1]")
            return False
        return True

    for size, p in (update.size or {}).items():
        if not 1 <= size <= problem.max_nodes:
            problems.append(f"size {size} outside 1..{problem.max_nodes}")
        elif check(p, f"size {size}"):
            distribution.size_logits[size - 1] = (1 - mix) * distribution.size_logits[size - 1] + mix * to_logit(p)
    for alias, p in (update.models or {}).items():
        if alias not in problem.aliases:
            problems.append(f"unknown model {alias!r}")
        elif check(p, f"model {alias}"):
            column = problem.aliases.index(alias)
            distribution.model_logits[:, column] = (1 - mix) * distribution.model_logits[:, column] + mix * to_logit(p)
    for i, j, p in update.edges or []:
        if not 0 <= i < j < problem.max_nodes:
            problems.append(f"edge {i}->{j} is not a forward edge within {problem.max_nodes} nodes")
        elif check(p, f"edge {i}->{j}"):
            distribution.edge_logits[i, j] = (1 - mix) * distribution.edge_logits[i, j] + mix * to_logit(p)
    choices = {ceo_name(c): index for index, c in enumerate(problem.ceo_options)}
    for name, p in (update.coordinator or {}).items():
        if name not in choices:
            problems.append(f"coordinator choice {name!r} is not one of {sorted(choices)}")
        elif check(p, f"coordinator {name}"):
            index = choices[name]
            distribution.ceo_logits[index] = (1 - mix) * distribution.ceo_logits[index] + mix * to_logit(p)
    proposed = None
    if update.graph is not None:
        nodes = tuple(NodeChoice(n.role, None if n.role in MODEL_FREE_ROLES else n.model) for n in update.graph.nodes)
        edges = {(i, j) for i, j in update.graph.edges if 0 <= i < j < len(nodes)}
        ceo_index = choices.get(update.graph.coordinator)
        candidate = repair(nodes, edges, None if ceo_index is None else problem.ceo_options[ceo_index])
        unknown = [n.model for n in nodes if n.model is not None and n.model not in problem.aliases]
        if unknown or any(n.role not in problem.roles for n in nodes):
            problems.append("proposed graph uses models or roles outside the space")
        elif ceo_index is None:
            problems.append(f"proposed coordinator {update.graph.coordinator!r} is not one of {sorted(choices)}")
        elif misfits := problem.misfits(candidate):
            problems.append(f"proposed graph rejected: {'; '.join(misfits)}")
        else:
            proposed = candidate
    how = "as a whole" if len(problems) == update.parts() else "in part"
    for problem_text in problems:
        log.warning("agent update rejected %s: %s", how, problem_text)
    return proposed, problems


INSIGHTS = """\
Insights about compute-optimal collaboration graphs (Agent-REINFORCE):
1. Tasks prefer particular model families and sizes: lean toward the models that scored best alone.
2. Width (parallel answers) and depth (sequential refinement) each have a task-dependent optimum;
   past it, more compute hurts.
3. Width and depth interact: wider graphs want shallower depth, deeper graphs narrower width.
Rules: respect the budget exactly; raise only edges that were used and helped; grow the graph from
the output node (the last node); keep in-degree and depth small for small models."""


def agent_prompt(
    distribution: GraphDistribution, observations: list[Observation], *, insights: bool
) -> tuple[str, str]:
    """The system and user messages of one feedback call."""
    problem = distribution.problem
    system = (
        "You optimise multi-LLM collaboration graphs. Nodes are numbered in topological order; the last "
        "node is the output. Reply with one JSON object and nothing else."
    )
    tables = []
    for index, observation in enumerate(sorted(observations, key=lambda o: -o.reward)):
        tables.append(
            f"Graph {index + 1}: score {observation.reward:.3f}, accuracy {observation.accuracy:.2f} on "
            f"{observation.n_items} items, compute {observation.compute:.2f}, latency {observation.latency_s:.2f}s\n"
            "node | model | role | predecessors\n" + observation.candidate.describe()
        )
    budget = "none" if problem.budget is None else f"{problem.budget:g} compute units (1B-model calls)"
    searches_ceo = problem.ceo_options != (None,)
    ceo_text = (
        f" Coordinator choices (a CEO that runs the graph as up to several discussion rounds): "
        f"{', '.join(ceo_name(c) for c in problem.ceo_options)}."
        if searches_ceo
        else ""
    )
    user = "\n\n".join(
        [
            *([INSIGHTS] if insights else []),
            f"Models: {', '.join(problem.aliases)}. Roles: {', '.join(problem.roles)}. "
            f"At most {problem.max_nodes} nodes. Budget per question: {budget}.{ceo_text}",
            "Current probabilities:\n" + distribution.describe(),
            "Graphs just evaluated:\n" + "\n\n".join(tables),
            'Return JSON: {"size": {"<node count>": p, ...}, "models": {"<alias>": p, ...}, '
            '"edges": [[i, j, p], ...], '
            + ('"coordinator": {"<off or CEO alias>": p, ...}, ' if searches_ceo else "")
            + '"graph": {"nodes": [{"role": "...", "model": "..."}, ...], "edges": [[i, j], ...]'
            + (', "coordinator": "<off or CEO alias>"' if searches_ceo else "")
            + "}}. Every field is optional; probabilities are in [0, 1].",
        ]
    )
    return system, user


async def ask_agent(
    agent: AgentCall,
    distribution: GraphDistribution,
    observations: list[Observation],
    *,
    insights: bool,
    unused: list[str],
) -> CandidateGraph | None:
    """One textual-feedback step: ask `agent` about `observations`, blend its valid probabilities into
    `distribution`, and return the graph it proposes when that fits (to be measured next). A failing
    agent or an unreadable reply is a logged warning, never the search's end; its reason is added to
    `unused`, which the run's warnings report (a log line alone left the report listing the agent's
    calls as if the search had used them)."""
    system, user = agent_prompt(distribution, observations, insights=insights)
    try:
        reply = await agent(system, user)
    except Exception as exc:  # the numeric step (where the method has one) has applied already
        log.warning("agent feedback call failed: %s", exc)
        unused.append(f"the call failed: {exc}")
        return None
    update, why = parse_agent_update(reply)
    if update is None:
        log.warning("agent feedback ignored: %s", why)
        unused.append(f"its reply was ignored: {why}")
        return None
    if why is not None:
        log.warning("agent feedback partly used: %s", why)
    proposed, rejected = apply_agent_update(distribution, update)  # it logs what it rejected
    if rejected and len(rejected) == update.parts():  # an unknown model, an over-budget graph: said nowhere
        unused.append(f"every part of its reply was rejected: {rejected[0]}")
    return proposed


class InsightRules:
    """The insights as deterministic updates, applied after the numeric REINFORCE step."""

    def __init__(self, rate: float = 0.5) -> None:
        self.rate = rate
        self.best_reward = -np.inf
        self.stale = 0

    def apply(
        self,
        distribution: GraphDistribution,
        history: list[Observation],
        batch: list[Observation],
        *,
        elite: CandidateGraph | None = None,
    ) -> None:
        """`elite`: the graph to step toward (default: the best reward seen, one minibatch's luck)."""
        problem = distribution.problem
        # Insight 1: lean toward models whose graphs score well.
        by_model: dict[str, list[float]] = defaultdict(list)
        by_size: dict[int, list[float]] = defaultdict(list)
        by_ceo: dict[int, list[float]] = defaultdict(list)
        for observation in history:
            for node in observation.candidate.nodes:
                if node.model is not None:
                    by_model[node.model].append(observation.reward)
            by_size[observation.candidate.size].append(observation.reward)
            if observation.candidate.ceo in problem.ceo_options:
                by_ceo[problem.ceo_options.index(observation.candidate.ceo)].append(observation.reward)
        if len(by_model) > 1:
            means = {alias: float(np.mean(values)) for alias, values in by_model.items()}
            centre = float(np.mean(list(means.values())))
            for alias, mean in means.items():
                distribution.model_logits[:, problem.aliases.index(alias)] += self.rate * 2 * (mean - centre)
        # Like insight 1 for the coordinator: lean toward the choice (no CEO, or a CEO model) that pays.
        if len(by_ceo) > 1:
            ceo_means = {index: float(np.mean(values)) for index, values in by_ceo.items()}
            centre = float(np.mean(list(ceo_means.values())))
            for index, mean in ceo_means.items():
                distribution.ceo_logits[index] += self.rate * 2 * (mean - centre)
        # Insight 2: move the node-count distribution toward sizes that scored well.
        if len(by_size) > 1:
            means_size = {size: float(np.mean(values)) for size, values in by_size.items()}
            centre = float(np.mean(list(means_size.values())))
            for size, mean in means_size.items():
                if size <= problem.max_nodes:
                    distribution.size_logits[size - 1] += self.rate * 2 * (mean - centre)
        # Insight 3 and "raise edges that were used and helped": pull toward the elite graph.
        best = max(history, key=lambda o: o.reward)
        baseline = float(np.mean([o.reward for o in batch])) if batch else best.reward
        if elite is not None:
            distribution.step(distribution.gradient(elite), self.rate)
        elif best.reward >= baseline:
            distribution.step(distribution.gradient(best.candidate), self.rate)
        # Stagnation: flatten a little to explore again.
        if best.reward > self.best_reward + 1e-9:
            self.best_reward, self.stale = best.reward, 0
        else:
            self.stale += 1
            if self.stale >= 2:
                for array in (
                    distribution.size_logits,
                    distribution.model_logits,
                    distribution.edge_logits,
                    distribution.ceo_logits,
                ):
                    array *= 0.7
                self.stale = 0
