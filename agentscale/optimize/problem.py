"""The search problem every optimizer sees: which graphs are allowed and what they cost.

Built from a search space; holds the resolved models, the roles, the node limit and the per-question
budget in `compute` units (1B-calls on the task's mean prompt and completion lengths), and decides
whether a candidate fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentscale.errors import SpecError, SpecIssue
from agentscale.graphs.spec import DEFAULT_MAX_TOKENS
from agentscale.models.cost import estimate_prompt_tokens, price_is_known
from agentscale.models.registry import ResolvedModel
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice, resolve_models
from agentscale.optimize.space import SpaceSpec, feedback_agent, own_agent_model

# Mean prompt/completion tokens of the paper's tasks (from its code), used when a space gives none.
DEFAULT_LENGTHS = {"math": (202.0, 275.0), "mmlu": (213.0, 215.0), "humaneval": (180.0, 115.0)}
FALLBACK_LENGTHS = (200.0, 200.0)


def task_lengths(space: SpaceSpec) -> tuple[float, float]:
    """Mean prompt and completion tokens for the compute unit: the space's, else a known default."""
    return _known_lengths(space) or FALLBACK_LENGTHS


def not_pulled_here(space: SpaceSpec) -> list[str]:
    """The space's bundled `local/` models whose weights are not on this machine, its aliases and a
    feedback agent of its own, as notes (`validate`, `optimize` as it starts, and its dry run)."""
    from agentscale.models.pull import not_pulled_notes

    notes = not_pulled_notes({alias: model.model for alias, model in space.models.items()})
    agent = own_agent_model(space)
    if agent is not None:  # a model of its own is no alias of `models:`
        notes += not_pulled_notes({"agent_model": agent.model}, "optimizer")
    return notes


def guessed_lengths_note(space: SpaceSpec, questions: list[str]) -> str | None:
    """What `validate` says of a space whose task lengths are a guess: its `compute` unit is then a
    1B call on 200 + 200 tokens, whatever the task (a file of 20-token sums was budgeted so without a
    word); `questions` (the train items') give the prompt's own mean for the hint."""
    if _known_lengths(space) is not None:
        return None
    mean = sum(estimate_prompt_tokens([{"content": q}]) for q in questions) / max(1, len(questions))
    prompt, completion = FALLBACK_LENGTHS
    return (
        f"task.mean_prompt_tokens, task.mean_completion_tokens: not set, and the task is none of the paper's "
        f"({', '.join(DEFAULT_LENGTHS)}), so budget.compute counts 1B calls of {prompt:.0f} prompt and "
        f"{completion:.0f} completion tokens; set both to this task's means (its train questions average "
        f"≈ {mean:.0f} tokens, at 3 characters a token) for a budget in this task's own units"
    )


def _known_lengths(space: SpaceSpec) -> tuple[float, float] | None:
    """The space's mean lengths, else those of the paper's task it names, else None (a guess then)."""
    task = space.task
    if task.mean_prompt_tokens and task.mean_completion_tokens:
        return task.mean_prompt_tokens, task.mean_completion_tokens
    name = (task.name or "").lower()
    return next((lengths for key, lengths in DEFAULT_LENGTHS.items() if key in name), None)


@dataclass
class SearchProblem:
    models: dict[str, ResolvedModel]
    roles: tuple[str, ...]
    max_nodes: int
    budget: float | None  # compute units per question; None = no compute cap
    mean_prompt_tokens: float
    mean_completion_tokens: float
    ceo_options: tuple[CeoChoice | None, ...] = (None,)  # the coordinator dimension (None: no CEO)
    accuracy_weight: float = 1.0  # the objective's weight on accuracy (rewards are compared per item)
    _cost: dict[str, float] = field(default_factory=dict, repr=False)

    @classmethod
    def from_space(cls, space: SpaceSpec) -> SearchProblem:
        models = resolve_models(space.models)
        unknown = [alias for alias, model in models.items() if model.params_b is None]
        if unknown and space.budget.compute is not None:
            raise SpecError(
                [
                    SpecIssue(f"models.{alias}", "unknown model size: set params_b (the compute budget needs it)")
                    for alias in unknown
                ]
            )
        # each graph enforces budget.max_usd itself, and the run its optimizer.max_spend.usd: both need
        # every call's price (without one, the cap refused the run's first evaluation: no graph measured)
        caps = (("budget.max_usd", space.budget.max_usd), ("optimizer.max_spend.usd", space.optimizer.max_spend.usd))
        usd_caps = [name for name, cap in caps if cap is not None]
        unpriced = [a for a, m in models.items() if not price_is_known(m)] if usd_caps else []
        issues = []
        if unpriced:
            needs = f"{' and '.join(usd_caps)} {'needs' if len(usd_caps) == 1 else 'need'} it"
            issues = [SpecIssue(f"models.{alias}", f"unknown price: set price ({needs})") for alias in unpriced]
        agent = feedback_agent(space) if own_agent_model(space) is not None else None  # no alias: unchecked above
        if agent is not None and space.optimizer.max_spend.usd is not None and not price_is_known(agent):
            # each of its calls was refused by the cap, and the search went on without it, exit 0
            message = "unknown price: give it in place with one, {model: ROUTE, price: {...}} (max_spend.usd needs it)"
            issues.append(SpecIssue("optimizer.agent_model", message))
        if issues:
            raise SpecError(issues)
        prompt, completion = task_lengths(space)
        problem = cls(
            models,
            tuple(space.roles),
            space.max_nodes,
            space.budget.compute,
            prompt,
            completion,
            ceo_options(space),
            space.objective.accuracy,
        )
        problem._check_a_single_call_fits()
        _check_a_call_fits_max_tokens(space)
        problem._check_every_model_fits(space)
        problem._check_ceo_affordable(space)
        return problem

    def _check_every_model_fits(self, space: SpaceSpec) -> None:
        """A model whose one call is over the budget could never be in a graph: the search would
        leave it out without a word (a user listing llama-70b under budget 20 saw it nowhere). The
        optimizer's agent and the CEOs are exempt: they are listed for those roles."""
        if self.budget is None:
            return
        other_roles = {*(space.coordinator.models if space.coordinator else [])}
        if isinstance(space.optimizer.agent_model, str):
            other_roles.add(space.optimizer.agent_model)
        issues = []
        for alias in self.aliases:
            if alias in other_roles:
                continue
            cost = self.compute(_one_call(alias))
            if cost > self.budget + 1e-9:
                issues.append(
                    SpecIssue(
                        f"models.{alias}",
                        f"one call of {alias!r} costs {cost:.2f} compute units per question, over budget.compute="
                        f"{self.budget:g}: no graph could use it; remove it or raise the budget",
                    )
                )
        if issues:
            raise SpecError(issues)

    def _check_a_single_call_fits(self) -> None:
        """The cheapest single call must fit the budget: every graph calls a model at least once, so
        otherwise nothing could be searched, raced or crowned."""
        if self.budget is None:
            return
        cheapest = self.cheapest_single()
        cost = self.compute(cheapest)
        if cost > self.budget + 1e-9:
            alias = cheapest.nodes[0].model
            assert alias is not None
            shape = ""
            model = self.models[alias]
            if model.n_layers is None or model.d_model is None:  # `compute: 1` refused a 1B model at "1.00"
                shape = (
                    "; a unit is one call of Llama-3.2-1B's shape (16 layers, width 2048), and the shape of "
                    f"{alias!r} is estimated from its size: set its n_layers and d_model to count it exactly"
                )
            raise SpecError(
                [
                    SpecIssue(
                        "budget.compute",
                        f"{self.budget:g} is below the cheapest single call ({alias!r}: {_above(cost, self.budget)} "
                        f"compute units per question{shape}): raise budget.compute or add a smaller model",
                    )
                ]
            )

    def _check_ceo_affordable(self, space: SpaceSpec) -> None:
        """Each CEO offered must fit the budget over its rounds with the cheapest one-node team;
        otherwise the choice could never be sampled and the search would silently ignore it."""
        if space.coordinator is None or self.budget is None:
            return
        cheapest = self.cheapest_single()
        issues = []
        for index, alias in enumerate(space.coordinator.models):
            cost = self.compute(
                CandidateGraph(cheapest.nodes, cheapest.edges, CeoChoice(alias, space.coordinator.max_rounds))
            )
            if cost > self.budget + 1e-9:
                issues.append(
                    SpecIssue(
                        f"coordinator.models[{index}]",
                        f"a CEO {alias!r} over {space.coordinator.max_rounds} rounds costs at least {cost:.2f} "
                        f"compute units with a one-node team, over budget.compute={self.budget:g}: lower "
                        "coordinator.max_rounds or raise the budget",
                    )
                )
        if issues:
            raise SpecError(issues)

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(self.models)

    def cheapest_single(self) -> CandidateGraph:
        """One call of the cheapest model: the least any graph of the space can cost."""
        return min((_one_call(alias) for alias in self.aliases), key=self.compute)

    @property
    def chooser(self) -> str:
        """The model-free node that picks among samples: the tester where the space offers it (a
        majority vote of sampled programs is its first input: they rarely agree character for
        character), else the vote. The pilot's self-consistency and the test baseline both use it."""
        return "tester" if "tester" in self.roles else "vote"

    def compute(self, candidate: CandidateGraph) -> float:
        key = candidate.canonical_key
        if key not in self._cost:
            self._cost[key] = candidate.compute(self.models, self.mean_prompt_tokens, self.mean_completion_tokens)
        return self._cost[key]

    def fits(self, candidate: CandidateGraph) -> bool:
        return not self.misfits(candidate)

    def misfits(self, candidate: CandidateGraph) -> list[str]:
        """Why `candidate` is no graph of this space (empty when it is one): the feedback agent's
        rejected proposal names them, so its log says what to fix."""
        found = candidate.problems()
        if candidate.size > self.max_nodes:
            found.append(f"{candidate.size} nodes, over max_nodes={self.max_nodes}")
        found += [f"role {n.role!r} is not in the space" for n in candidate.nodes if n.role not in self.roles]
        # a stored record may name an alias the space no longer has
        found += [
            f"model {n.model!r} is not in the space"
            for n in candidate.nodes
            if n.model is not None and n.model not in self.models
        ]
        if not found and self.budget is not None:
            cost = self.compute(candidate)
            if cost > self.budget + 1e-9:
                found.append(f"compute {_above(cost, self.budget)} over budget.compute={self.budget:g}")
        return found


def _above(cost: float, budget: float) -> str:
    """`cost` with as many decimals (2 to 6) as it takes to read above `budget` (1.0024 is not "1.00")."""
    for decimals in range(2, 7):
        text = f"{cost:.{decimals}f}"
        if float(text) > budget:
            return text
    return f"{cost:.6f}"


def _check_a_call_fits_max_tokens(space: SpaceSpec) -> None:
    """Each graph enforces `budget.max_tokens` by reserving a call's prompt plus its full completion
    cap before the call: a cap below one call's reservation refused every call, and the search
    crowned a graph that had answered nothing (0% everywhere, 0 calls, exit 0). The prompt counts
    where the task's mean length is known (the space's, or the paper's task); otherwise only the
    completion cap is certain."""
    cap = space.budget.max_tokens
    if cap is None:
        return
    completion_cap = space.defaults.max_tokens or DEFAULT_MAX_TOKENS
    known = _known_lengths(space)
    prompt = known[0] if known else 0.0
    if cap < prompt + completion_cap:
        reserved = f"a prompt of ≈ {prompt:.0f} tokens on this task plus " if known else ""
        message = (
            f"{cap} is below one call's reservation ({reserved}max_tokens {completion_cap}, reserved before "
            "each call): every call would be refused; raise it or lower defaults.max_tokens"
        )
        raise SpecError([SpecIssue("budget.max_tokens", message)])


def ceo_options(space: SpaceSpec) -> tuple[CeoChoice | None, ...]:
    """The coordinator choices a graph of this space may take (just None without `coordinator:`)."""
    search = space.coordinator
    if search is None:
        return (None,)
    choices = tuple(CeoChoice(alias, search.max_rounds) for alias in search.models)
    return ((None,) if search.optional else ()) + choices


def _one_call(alias: str, ceo: CeoChoice | None = None) -> CandidateGraph:
    return CandidateGraph((NodeChoice("assistant", alias),), frozenset(), ceo)
