"""The search-space YAML: what `agentscale optimize` searches and under which budget.

A space names a task, the models and roles a graph may use, a node limit, a per-question budget
every sampled graph must satisfy, the objective, the optimizer's settings and a hard cap on the
whole search's spend. Like graph files, spaces are validated with YAML paths and lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from agentscale.errors import SpecError, SpecIssue
from agentscale.graphs.io import read_text
from agentscale.graphs.located import LocatedData, load_located
from agentscale.graphs.spec import (
    NAME_PATTERN,
    AnswerFormat,
    Budget,
    GraphSpec,
    ModelSpec,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    Sampling,
    StrictModel,
)
from agentscale.graphs.validate import alias_issues, looks_like_best_known, validate_fields
from agentscale.models.registry import ResolvedModel, resolve
from agentscale.models.routes import model_route_issues, route_problem
from agentscale.optimize.candidate import CandidateGraph, SampledNodes
from agentscale.storage.tables import Run
from agentscale.tasks.errors import MAX_GENERATED

Scorer = Literal["exact", "numeric", "choice", "math", "code"]
RoleName = Literal["assistant", "critic", "fuser", "verifier", "vote", "tester"]
DEFAULT_ROLES: tuple[RoleName, ...] = ("assistant", "fuser", "vote")


SplitSize = Annotated[int, Field(ge=1, le=MAX_GENERATED)]  # a generated task makes them all (10^20 hung `validate`)
Seed = Annotated[int, Field(ge=0)]  # numpy's generators refuse a negative seed (the search crashed after starting)
# and optuna's TPE (numpy's legacy RandomState) a search seed of 2**32 or more (a task's seed may be larger)
MAX_SEED = 2**32 - 1
SearchSeed = Annotated[int, Field(ge=0, le=MAX_SEED)]
MeanTokens = Annotated[float, Field(gt=0.0, le=1_000_000.0, allow_inf_nan=False)]


class TaskRef(StrictModel):
    """The task to optimize for: a built-in task name or a JSONL file, and how to split it."""

    name: Annotated[str, Field(min_length=1)] | None = None  # "" was a traceback (validate stopped there)
    path: Annotated[str, Field(min_length=1)] | None = None
    scorer: Scorer | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # generator options, e.g. reasoning-gym's config
    train: SplitSize = 20
    dev: Annotated[int, Field(ge=0, le=MAX_GENERATED)] = 0
    test: SplitSize = 50
    seed: Seed = 0
    mean_prompt_tokens: MeanTokens | None = None
    mean_completion_tokens: MeanTokens | None = None

    @model_validator(mode="after")
    def _one_source(self) -> TaskRef:
        if (self.name is None) == (self.path is None):
            raise ValueError("give exactly one of `name` (a built-in task) or `path` (a JSONL file)")
        if self.train + self.dev + self.test > MAX_GENERATED:
            raise ValueError(f"train, dev and test ask for more than {MAX_GENERATED:,} items in all")
        return self

    @property
    def spec(self) -> str:
        """The task as `load_task` takes it: the built-in task's name or the JSONL file's path."""
        spec = self.name or self.path
        assert spec is not None  # `_one_source`
        return spec

    def load_options(self) -> dict[str, Any]:
        """The options the task is loaded with: a generated task (rg:, sim:) makes a bank of
        max(train + dev + test, 200) items unless `size` is set. One place, because the runner, the
        simulator's truth and `eval --split-of` must draw the very same items."""
        options = dict(self.options)
        if self.spec.startswith(("rg:", "sim:")):
            options.setdefault("size", max(self.train + self.dev + self.test, 200))
        return options

    def split_sizes(self) -> dict[str, int]:
        """`Task.split`'s arguments for this space's split (the seed and the three sizes)."""
        return {"seed": self.seed, "train": self.train, "dev": self.dev, "test": self.test}


class SpaceBudget(StrictModel):
    """Per-question constraint every sampled graph must satisfy.

    `compute` is in 1B-call units: FLOPs normalised by one call of a 1B model on the task's mean
    prompt and completion lengths (so `compute: 18` reads "eighteen 1B-calls' worth"); the search
    keeps to it by projection before it runs a graph. `max_tokens`, `max_usd` and `max_latency_s`
    depend on what models write and how fast they answer, which no projection knows: every graph the
    search runs, and the crowned graph's file, carries them as its own per-question budget, enforced
    before each call (`per_question_caps`), so a graph that overruns them scores what it answers
    within them.
    """

    compute: PositiveFloat | None = None
    max_tokens: PositiveInt | None = None
    max_usd: PositiveFloat | None = None
    max_latency_s: PositiveFloat | None = None

    @model_validator(mode="after")
    def _at_least_one(self) -> SpaceBudget:
        if all(v is None for v in (self.compute, self.max_tokens, self.max_usd, self.max_latency_s)):
            raise ValueError("set at least one of compute, max_tokens, max_usd, max_latency_s")
        return self

    def per_question_caps(self) -> Budget | None:
        """The caps a graph enforces itself at run time (all but `compute`), or None without any."""
        if self.max_tokens is None and self.max_usd is None and self.max_latency_s is None:
            return None
        return Budget(max_tokens=self.max_tokens, max_usd=self.max_usd, max_latency_s=self.max_latency_s)


class Objective(StrictModel):
    """Weights of the scalar objective (accuracy up, cost and latency down): they crown one graph.

    `pareto: true` makes the front the main output besides: every graph on it is scored on the test
    split too (more test calls) and written as a runnable graph file (`front-1.yaml`, ... beside
    `best.yaml`, most accurate first), so a cheaper point can be picked with its own test score."""

    accuracy: NonNegativeFloat = 1.0
    cost: NonNegativeFloat = 0.0
    latency: NonNegativeFloat = 0.0
    pareto: bool = False


class MaxSpend(StrictModel):
    """Hard cap on the whole search, resumes included."""

    tokens: PositiveInt | None = None
    usd: PositiveFloat | None = None
    calls: PositiveInt | None = None


class OptimizerSettings(StrictModel):
    method: Literal["agent-reinforce", "random", "bayes", "reinforce", "llm"] = "agent-reinforce"
    # bounded where a search still makes sense: 10^20 iterations passed validate and the dry run
    # projected 10^40 evaluations
    iterations: Annotated[int, Field(ge=1, le=10_000)] = 8
    samples: Annotated[int, Field(ge=1, le=1_000)] = 4
    minibatch: Annotated[int, Field(ge=1, le=MAX_GENERATED)] = 8
    seed: SearchSeed = 0
    # an alias of `models:` (then also a search candidate), a bare route, or a model of its own
    # ({model: ROUTE, api_base: ..., api_key_env: ...}: an endpoint without being searched)
    agent_model: str | ModelSpec | None = None
    max_spend: MaxSpend = Field(default_factory=MaxSpend)


class CoordinatorSearch(StrictModel):
    """The CEO coordinator as a search dimension: no coordinator, or one of `models` as the CEO.

    With `optional: false` every graph gets a CEO (only its model is searched). A graph with a CEO
    runs up to `max_rounds` discussion rounds, and its projected compute counts every round, so it
    must fit the same per-question budget as a single pass.
    """

    models: Annotated[list[str], Field(min_length=1)]
    max_rounds: Annotated[int, Field(ge=1, le=100)] = 3
    optional: bool = True


class SpaceSpec(StrictModel):
    """A whole search space."""

    version: Literal[1] = 1
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    description: str = ""
    task: TaskRef
    models: Annotated[dict[str, ModelSpec], Field(min_length=1)]
    roles: Annotated[list[RoleName], Field(min_length=1)] = Field(default_factory=lambda: list(DEFAULT_ROLES))
    max_nodes: Annotated[int, Field(ge=1, le=32)] = 6
    budget: SpaceBudget
    defaults: Sampling = Field(default_factory=Sampling)
    # Which model nodes sample at `defaults.temperature`: `all`, or `parallel`: only answers drawn side
    # by side (two or more nodes without inputs); a lone answer, critics and fusers answer greedily;
    # or `greedy_first`: as `parallel`, but each model's first parallel answer is greedy too.
    sampled_nodes: SampledNodes = "all"
    answer_format: AnswerFormat | None = None  # refused (the task's scorer decides); stored runs' spaces may hold it
    objective: Objective = Field(default_factory=Objective)
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    coordinator: CoordinatorSearch | None = None

    def graph_spec(self, candidate: CandidateGraph, name: str, *, description: str = "") -> GraphSpec:
        """A graph of this space as a runnable graph: the models it uses, the space's sampling and its
        per-question caps (every graph a search runs and every graph it writes is made here)."""
        return candidate.to_spec(
            name,
            dict(self.models),
            defaults=self.defaults,
            sampled_nodes=self.sampled_nodes,
            budget=self.budget.per_question_caps(),
            description=description,
        )

    @field_validator("roles")
    @classmethod
    def _needs_an_answering_role(cls, roles: list[str]) -> list[str]:
        if "assistant" not in roles:
            raise ValueError("must include 'assistant' (every graph needs a node that answers alone)")
        return roles


def space_from_data(located: LocatedData, source: str | None = None, *, stored: bool = False) -> SpaceSpec:
    """A search space, validated; `stored`: the space of a stored run (shown, reported or resumed), which
    skips the rules added since it may have been written."""
    if isinstance(located.data, dict) and "nodes" in located.data and "task" not in located.data:
        message = (
            "this is a graph file (`nodes:`, no `task:`), not a search space (task, models, roles, budget): "
            "run it with `agentscale run` or `agentscale eval`"
        )
        raise SpecError([located.issue(("nodes",), message)], source)
    if looks_like_best_known(located.data):  # it sits beside its space, with a name like it
        message = (
            f"this is the best-known record of space {located.data['space']!r} (`agentscale sim best-known`'s), "
            "not a search space: give the space file"
        )
        raise SpecError([located.issue(("space",), message)], source)
    space = validate_fields(located, SpaceSpec, "search space", source, stored=stored)
    issues = alias_issues(space.models, located, stored=stored)
    if not stored and (space.task.mean_prompt_tokens is None) != (space.task.mean_completion_tokens is None):
        message = "give both mean_prompt_tokens and mean_completion_tokens, or neither (one alone was ignored)"
        issues.append(located.issue(("task",), message))
    agent = space.optimizer.agent_model
    if isinstance(agent, str) and "/" not in agent and agent not in space.models:
        issues.append(located.issue(("optimizer", "agent_model"), f"unknown model alias {agent!r}"))
    else:  # a route, checked as the models' are (it was not: a misspelt one failed each feedback call, exit 0)
        own = own_agent_model(space)
        problem = None if own is None else route_problem(own.model, own.api_base)
        if problem:
            path = ("optimizer", "agent_model") + (("model",) if isinstance(agent, ModelSpec) else ())
            issues.append(located.issue(path, problem))
    ceo_models = space.coordinator.models if space.coordinator is not None else []
    for index, alias in enumerate(ceo_models):
        if alias not in space.models:
            known = ", ".join(sorted(space.models))
            issues.append(
                located.issue(("coordinator", "models", index), f"unknown model alias {alias!r} (known: {known})")
            )
    if len(set(ceo_models)) < len(ceo_models):
        issues.append(located.issue(("coordinator", "models"), "lists a model twice"))
    issues += model_route_issues(space.models, located)
    if not stored:
        issues += _settings_issues(space, located)
        if source is not None:
            space, issue = _task_file_beside(space, Path(source), located)
            issues += [issue] if issue is not None else []
    if issues:
        raise SpecError(issues, source)
    return space


def _task_file_beside(space: SpaceSpec, space_file: Path, located: LocatedData) -> tuple[SpaceSpec, SpecIssue | None]:
    """`task.path` relative to the space file's folder, as a user writing the two files side by side
    means it (it was read from the working directory: `optimize spaces/s.yaml` failed with "task file
    not found" unless run from spaces/). So is a `task.name` naming a file (`data.jsonl`), as
    `--task` takes one. A path found only from the working directory still works; found from both as
    different files, it is ambiguous."""
    field = "path" if space.task.path is not None else "name"
    written = Path(getattr(space.task, field) or "")
    if field == "name" and written.suffix.lower() not in (".jsonl", ".json"):
        return space, None  # a built-in task
    beside = space_file.parent / written
    if written.is_absolute() or not beside.is_file():
        return space, None
    if written.is_file() and not written.samefile(beside):
        message = (
            f"{written} names two files: {beside} (beside the space file, read first) and {written.resolve()} "
            "(from the working directory); rename one, or give an absolute path"
        )
        return space, located.issue(("task", field), message)
    return space.model_copy(update={"task": space.task.model_copy(update={field: str(beside)})}), None


def _settings_issues(space: SpaceSpec, located: LocatedData) -> list[SpecIssue]:
    """Settings a run would accept and then quietly not honour."""
    issues = []  # (a method's own needs, which --method may change, are checked by runner.method_and_seed)
    objective = space.objective
    if objective.accuracy == objective.cost == objective.latency == 0:
        message = "every weight is 0: every graph scores 0 and the crown is arbitrary (give accuracy a weight)"
        issues.append(located.issue(("objective",), message))
    if space.answer_format is not None:
        message = (
            "is the task's: its scorer decides how answers are read (task.scorer for a JSONL task); "
            "a space's answer_format was ignored"
        )
        issues.append(located.issue(("answer_format",), message))
    twice = sorted({role for role in space.roles if space.roles.count(role) > 1})
    if twice:  # the sampler's prior counted the role twice, and its updates reached only one copy
        issues.append(located.issue(("roles",), f"lists {', '.join(twice)} twice"))
    return issues


def own_agent_model(space: SpaceSpec) -> ModelSpec | None:
    """The feedback agent when it is no model of the space's (a route, or a model given in place):
    then no search candidate. None for an alias of `models:`, or without an agent."""
    agent = space.optimizer.agent_model
    if isinstance(agent, ModelSpec):
        return agent
    return ModelSpec(model=agent) if agent is not None and agent not in space.models else None


def feedback_agent(space: SpaceSpec) -> ResolvedModel | None:
    """The model `optimizer.agent_model` names, resolved (its name: the alias, or its route)."""
    agent = space.optimizer.agent_model
    if agent is None:
        return None
    own = own_agent_model(space)
    if own is not None:
        return resolve(own.model, own)
    assert isinstance(agent, str)  # an alias of the space's (own_agent_model covers the others)
    return resolve(agent, space.models[agent])


def space_from_text(text: str, source: str | None = None, *, stored: bool = False) -> SpaceSpec:
    """Parse and validate a search space's YAML text; errors name `source` (a file, or a stored run)."""
    return space_from_data(load_located(text, source), source, stored=stored)


def stored_space(run: Run) -> SpaceSpec:
    """The search space an optimization run was started with (the text stored in its config)."""
    return space_from_text(json.loads(run.config_json)["space_yaml"], f"run {run.id}", stored=True)


def load_space(path: str | Path) -> SpaceSpec:
    """Parse and validate a search-space file."""
    return space_from_text(read_text(path), str(path))
