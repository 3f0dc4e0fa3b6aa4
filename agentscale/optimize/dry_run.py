"""`--dry-run`: what a search would spend, projected before any call is made.

Counts every evaluation the run will make (single calls, pilot, search, crowning, test; not the
Pareto front's test evaluations of `objective.pareto`, which the search decides) and the items each
answers, and a feedback agent's calls (in `search`, as the run counts them: after every round but
the last, a prompt about the round and a reply at its max_tokens); calls and tokens per item come
from 256 graphs drawn from the initial distribution (tokens per model node: the task's mean prompt
plus one mean answer per input, plus one answer; a
CEO-led graph runs every round and makes one CEO call a round, see `_per_item`). It
counts no answer cached by earlier runs (a fresh database), ignores the singles' race (every model on
the whole train split), and counts the crowning race at its typical share, so for a fresh run it is
an estimate mostly above the calls made (a test holds a run on scripted replies within 25% above and
40% below it), and an upper bound on short-spoken real models: the quickstart demo's search on the
135M model made 308 calls against 557 projected (2026-12-07). What a run asks again (minibatch
items in the crowning race) the response cache answers; with `--no-cache` it pays those too: 936
calls against 580 projected on a new user's space, 2,880 against 2,086 on another.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentscale.graphs.io import read_text
from agentscale.graphs.located import load_located
from agentscale.models.cost import call_usd, known_total
from agentscale.models.registry import ResolvedModel
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import agent_prompt
from agentscale.optimize.methods import METHODS
from agentscale.optimize.methods.agent_reinforce import AgentReinforce
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import max_samples, single
from agentscale.optimize.problem import SearchProblem, not_pulled_here
from agentscale.optimize.race import RaceOutcome
from agentscale.optimize.runner import AGENT_MAX_TOKENS, CROWN_POOL, load_task_split, method_and_seed
from agentscale.optimize.space import SpaceSpec, feedback_agent, space_from_data

DRAWS = 256
# of the crowning pool times the train split, what its race answers (graphs the leader clearly beats
# leave early): 0.42, 0.46 and 0.71 measured on a test space, math-b18-large and mmlu-b42-large (SIMULATED)
RACED_SHARE = 0.5
# a CEO call's typical prompt beyond the question and the answers (agents/prompts/coordinator.yaml,
# 2.4 KB, at about 4 characters a token) and its reply, a JSON decision (sim/ CEOs write 40 tokens);
# the spend cap's worst case (`CEO_PROMPT_ALLOWANCE`, the completion cap, retries) is no estimate
CEO_INSTRUCTION_TOKENS = 600
CEO_DECISION_TOKENS = 64
CHARS_PER_TOKEN = 4  # of the feedback agent's prompt, English text and graph tables


def _per_item(problem: SearchProblem, candidate: CandidateGraph) -> tuple[int, float, float | None]:
    """Calls, tokens and USD of one question. A CEO-led graph is counted as its compute is projected
    (`CandidateGraph.compute`): every round runs the graph, sources read the best answer so far from
    the second round on, and one CEO call a round reads the question, the round's answers and its
    instructions and writes a decision; counted at one pass, a CEO space's dry run was half of what
    its run spent."""
    prompt, answer = problem.mean_prompt_tokens, problem.mean_completion_tokens
    calls: list[tuple[str, float, float]] = []  # (model alias, prompt tokens, completion tokens)
    rounds = 1 if candidate.ceo is None else candidate.ceo.max_rounds
    for round_index in range(rounds):
        team = candidate.pass_calls(0 if round_index == 0 else 1)
        calls += [(model, prompt + inputs * answer, answer) for model, inputs in team]
        if candidate.ceo is not None:
            ceo_prompt = prompt + (len(team) + 1) * answer + CEO_INSTRUCTION_TOKENS
            calls.append((candidate.ceo.model, ceo_prompt, CEO_DECISION_TOKENS))
    prices = [call_usd(problem.models[model], round(read), round(written)) for model, read, written in calls]
    usd = known_total(prices)
    return len(calls), sum(read + written for _, read, written in calls), usd


def project_space(
    space: SpaceSpec, *, method: str | None = None, seed: int | None = None, score_test: bool = True
) -> dict[str, Any]:
    """`project` for a run of `space` as :class:`~agentscale.optimize.runner.Optimization` would make it:
    the same method and seed (given, else the space's), search problem and train/test split."""
    name, seed = method_and_seed(space, method, seed)
    problem = SearchProblem.from_space(space)
    _, train, test = load_task_split(space)
    return project(space, problem, name, seed, len(train), len(test), score_test=score_test)


def project_space_file(
    path: str | Path, *, method: str | None = None, seed: int | None = None, score_test: bool = True
) -> dict[str, Any]:
    """`project_space` for the space in the file `path`; its budget and task errors name the file's line."""
    located = load_located(read_text(path), str(path))
    with located.locating(str(path)):
        return project_space(space_from_data(located, str(path)), method=method, seed=seed, score_test=score_test)


def project(
    space: SpaceSpec,
    problem: SearchProblem,
    method: str,
    seed: int,
    train: int,
    test: int,
    *,
    score_test: bool = True,
) -> dict[str, Any]:
    """Evaluations, answered items, calls, tokens and USD of a run, stage by stage (see the module
    docstring): single calls on the train split, pilot and search on minibatches, crowning on the
    train split, and the crowned graph, every single call and the best one's vote on the test split."""
    settings = space.optimizer
    rng = np.random.default_rng(seed)
    draws = [GraphDistribution(problem).sample(rng) for _ in range(DRAWS)]
    typical = _mean_per_item(problem, draws)
    singles = [single(alias) for alias in problem.aliases if problem.fits(single(alias))]
    instance = METHODS[method](problem, seed=seed, agent=None) if not METHODS[method].needs_agent else None
    pilot: list[CandidateGraph] = []
    sampled = settings.iterations * settings.samples
    if isinstance(instance, AgentReinforce):  # its first iteration is the pilot
        level = [Observation(c, 0.5, problem.compute(c), 0.0, train, 0.5) for c in singles]
        instance.learn_from_singles(RaceOutcome(level, [], capped=False))
        pilot, sampled = instance.propose(settings.samples), (settings.iterations - 1) * settings.samples
    minibatch = min(settings.minibatch, train)
    # (stage, as the run's `usage.calls_by_stage` names it; graphs evaluated, items, per item); the
    # singles' race and the crowning's count one per graph, and the singles' items are their most (a
    # model far behind stops after a quarter of the split)
    stages: list[tuple[str, int, float, tuple[float, float, float | None]]] = [
        ("single calls", len(singles), len(singles) * train, _mean_per_item(problem, singles)),
        ("pilot", len(pilot), len(pilot) * minibatch, _mean_per_item(problem, pilot)),
        ("search", sampled, sampled * minibatch, typical),
        ("crowning", CROWN_POOL, RACED_SHARE * CROWN_POOL * train, typical),
    ]
    agent = feedback_agent(space) if METHODS[method].uses_agent else None
    if agent is not None:  # its calls count as search, as the run's `calls_by_stage` counts them
        asks = METHODS[method].agent_calls(settings.iterations)
        stages.append(("search", 0, asks, _agent_call(problem, agent, draws[: settings.samples], minibatch)))
    if score_test:
        stages += [
            ("test", 1, test, typical),
            ("test", len(singles), len(singles) * test, _mean_per_item(problem, singles)),
        ]
        # the best single's vote (unknown yet): the mean over the models, none where only one call fits
        votes = [max_samples(problem, alias, chooser=problem.chooser) for alias in problem.aliases]
        kept = [v if v is not None and v.size > 1 else None for v in votes]
        share = sum(v is not None for v in kept) / max(1, len(kept))
        stages.append(("test", round(share), round(share * test), _mean_per_item(problem, kept)))
    usd: float | None = 0.0
    for _, _, items, (_, _, price) in stages:
        usd = None if usd is None or price is None else usd + items * price
    by_stage: dict[str, float] = {}
    for name, _, items, (calls, _, _) in stages:  # where the calls go: the crowning race, often
        by_stage[name] = by_stage.get(name, 0.0) + items * calls
    calls_by_stage = {name: round(calls) for name, calls in by_stage.items()}
    figures: dict[str, Any] = {
        "evaluations": sum(count for _, count, _, _ in stages),
        "items_answered": round(sum(items for _, _, items, _ in stages)),
        "calls": sum(calls_by_stage.values()),  # the parts printed add up to it
        "calls_by_stage": calls_by_stage,
        "tokens": round(sum(items * tokens for _, _, items, (_, tokens, _) in stages)),
        "usd": usd,
    }
    notes = [
        "projected for a fresh database with the response cache on (with --no-cache a run pays what it asks "
        "again: up to ≈ 1.6x the calls), the crowning race at its typical share (an estimate); "
        "evaluations count a graph once per stage, where the run's count adds each step of its races"
    ]
    if score_test and space.objective.pareto:
        notes.append(
            f"not counted: each graph on the Pareto front on the {test} test items (objective.pareto), "
            "as many as the search puts there"
        )
    notes += not_pulled_here(space)
    cap = space.optimizer.max_spend
    for unit, limit in (("calls", cap.calls), ("tokens", cap.tokens), ("usd", cap.usd)):
        if limit is not None and figures[unit] is not None and figures[unit] > limit:
            notes.append(
                f"max_spend.{unit}={limit} stops the run before this: it refuses an evaluation that could cross it"
            )
    return {**figures, "note": "; ".join(notes)}


def _agent_call(
    problem: SearchProblem, agent: ResolvedModel, graphs: list[CandidateGraph], items: int
) -> tuple[float, float, float | None]:
    """One feedback call: its prompt as the search writes it about a round of `graphs`, and a reply
    at its max_tokens (a real 0.5B agent's two replies both ran to it). The dry run left the agent
    out: a run on the real 0.5B spent 11% of its tokens and all of its USD there."""
    observations = [Observation(g, 0.5, problem.compute(g), 0.0, items, 0.5) for g in graphs]
    system, user = agent_prompt(GraphDistribution(problem), observations, insights=True)
    prompt = (len(system) + len(user)) // CHARS_PER_TOKEN
    return 1.0, float(prompt + AGENT_MAX_TOKENS), call_usd(agent, prompt, AGENT_MAX_TOKENS)


def _mean_per_item(
    problem: SearchProblem, graphs: Sequence[CandidateGraph | None]
) -> tuple[float, float, float | None]:
    """Mean calls, tokens and USD per answered item over some graphs (0 when there are none)."""
    known = [g for g in graphs if g is not None]
    if not known:
        return 0.0, 0.0, 0.0
    per_item = [_per_item(problem, g) for g in known]
    prices = [p[2] for p in per_item]
    usd = None if any(p is None for p in prices) else float(np.mean([p or 0.0 for p in prices]))
    return float(np.mean([p[0] for p in per_item])), float(np.mean([p[1] for p in per_item])), usd
