"""An optimization run: search, crown the best graph, score it and the baselines on the test split.

Stages (each evaluation is a stored trial, see :mod:`agentscale.optimize.trials`):
0. singles: every model alone, one call per item, raced on the train split like the crowning: a
   model the best one clearly beats on the items answered so far stops there (its partial score
   still informs the model prior); the others answer the whole split and are always finalists;
1. search: `iterations` rounds of propose → evaluate on a minibatch of the train split → observe;
   every proposal of a round sees the same minibatch, so rewards within a round are comparable;
2. crowning (:mod:`agentscale.optimize.crowning`): the most promising graphs by a shrunk, paired
   estimate are scored on the whole train split beside the singles; the leader is crowned unless it
   is a searched graph the train split cannot separate from a single call, which is then crowned;
   a warning says when the top finalists overlap;
3. test: the crowned graph, every single model and the best single's majority vote on the test
   split, with Wilson intervals and the crowned graph's paired difference from the best single call;
   with `objective.pareto` every graph of the run's Pareto front too (each also written as a file).
The search stops after `iterations`, when the spend cap would be crossed, or when three rounds in a
row propose nothing new (converged). `usage.calls_by_stage` splits the model calls by stage.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agentscale.errors import AgentScaleError, ModelCallError, RunBusy, SpecError, SpecIssue
from agentscale.evaluate.engine import check_concurrency
from agentscale.evaluate.stats import format_p, wilson_interval
from agentscale.executors import Executor, ExecutorConfig, create_executor
from agentscale.graphs.io import dump_graph_spec, read_text, write_output
from agentscale.graphs.located import load_located
from agentscale.graphs.result import NodeTrace
from agentscale.graphs.simulated import is_simulated
from agentscale.models.gateway import CallRequest, Gateway, store_of
from agentscale.models.pull import refuse_unpulled
from agentscale.optimize._side_by_side import side_by_side
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.crowning import Crowning, best_single, crown, on_shared_items, rank
from agentscale.optimize.methods import METHODS
from agentscale.optimize.methods.base import AgentCall, SearchMethod
from agentscale.optimize.objective import Observation
from agentscale.optimize.paired import PairedDifference, paired_difference
from agentscale.optimize.pilot import max_samples, model_of_single, single, why_no_vote
from agentscale.optimize.problem import SearchProblem, not_pulled_here
from agentscale.optimize.progress import Progress, ProgressReporter
from agentscale.optimize.race import RaceOutcome, race
from agentscale.optimize.search import StopSearch, run_search
from agentscale.optimize.space import Objective, SpaceSpec, feedback_agent, space_from_data, stored_space
from agentscale.optimize.trials import (
    AGENT_KEY,
    TRAIN_KINDS,
    SpendCapReached,
    TrialEvaluator,
    budget_stops_by_trial,
    calls_by_stage,
    cut_replies,
    failed_calls_by_trial,
    stored_front,
)
from agentscale.runtime.calls import ModelCalls, record_rows
from agentscale.runtime.execute import check_callback
from agentscale.storage import storage_errors_said
from agentscale.storage.db import Store
from agentscale.storage.owner import claim_in_this_process
from agentscale.storage.tables import Run
from agentscale.tasks import Task, TaskError, TaskItem, TaskOptionError, TaskScorerError, load_task
from agentscale.tasks.registry import (
    moved_task_file,
    refuse_a_changed_task_file,
    refuse_a_missing_task_file,
    stable_task_spec,
    task_file_digest,
)

PATIENCE = 3
CROWN_POOL = 6  # graphs raced on the train split beside the single calls
MIN_SEARCHED = 3  # of them at least this many are the search's best, whatever the method nominates
DEFAULT_CONCURRENCY = 8  # items answered at once per evaluation
AGENT_MAX_TOKENS = 1024  # the feedback agent's reply: a JSON update of the distribution


@dataclass
class TestScore:
    name: str
    candidate: CandidateGraph
    accuracy: float
    n: int
    compute: float
    latency_s: float
    outcomes: dict[str, bool] = field(default_factory=dict, repr=False)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(round(self.accuracy * self.n), self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.candidate.short_name(),  # not `name`: the crowned graph's row is named "best"
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "n": self.n,
            "compute": self.compute,
            "latency_s": self.latency_s,
            "graph": self.candidate.describe(),
        }


@dataclass
class Advantage:
    """The crowned graph against the best single call on the test items (paired)."""

    over: list[str]  # the single(s) with the best test accuracy: several when tied
    difference: PairedDifference
    crowned_is_it: bool = False  # the crowned graph is that single call: compared with itself

    def to_dict(self) -> dict[str, Any]:
        return {
            "over": self.over,
            "tie_among_singles": len(self.over) > 1,
            "crowned_is_the_single": self.crowned_is_it,
            **self.difference.to_dict(),
        }


@dataclass
class _TestSplit:
    """What the test split scored: the crowned graph, the baselines, every single model and the
    crowned graph's advantage, each missing when the spend cap refused it (`refused` says which)."""

    best: TestScore | None = None
    baselines: dict[str, TestScore] = field(default_factory=dict)
    singles: dict[str, TestScore] = field(default_factory=dict)
    advantage: Advantage | None = None
    refused: str | None = None
    front: dict[str, TestScore] = field(default_factory=dict)  # by graph key, with `objective.pareto`
    no_vote: str | None = None  # why the best single's self-consistency is no baseline


@dataclass
class OptimizeResult:
    """What `Optimization.run()` returns: the crowned graph (`best` on the test split, `best_train`
    its train evaluation, `best_path`/`best_yaml` to load it), the baselines and every model alone
    (`singles`) on the test split, the crowned graph's paired `advantage` over the best of them,
    the search (`history`, `curve`, `pareto`, `crowning`), spend (`usage`) and `warnings`;
    `to_dict()` is what `optimize --json` prints."""

    run_id: str
    method: str
    best: TestScore | None  # None when the spend cap refused the crowned graph's test split
    best_train: Observation
    best_path: Path
    best_yaml: str
    baselines: dict[str, TestScore]
    pareto: list[Observation]
    curve: list[tuple[int, float]]
    usage: dict[str, Any]
    evaluations: int
    replayed: int
    stopped_reason: str
    artifacts: Path
    history: list[Observation] = field(default_factory=list)
    singles: dict[str, TestScore] = field(default_factory=dict)  # every model alone, on the test split
    advantage: Advantage | None = None
    crowning: Crowning | None = None
    warnings: list[str] = field(default_factory=list)
    front_tests: dict[str, TestScore] = field(default_factory=dict)  # `objective.pareto`: by graph key
    front_paths: dict[str, Path] = field(default_factory=dict)  # and each front graph's YAML
    # the space's models include simulated ones: its figures are the simulator's, no model's accuracy
    # (only `optimize --json` said so, and an app reading `to_dict()` got them unlabelled)
    simulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "method": self.method,
            "best": {
                "path": str(self.best_path),
                **(
                    self.best.to_dict()
                    if self.best
                    else {
                        "accuracy": None,
                        "ci95": None,
                        "compute": self.best_train.compute,
                        "latency_s": self.best_train.latency_s,
                        "graph": self.best_train.candidate.describe(),
                    }
                ),
                "train_accuracy": self.best_train.accuracy,
            },
            "baselines": {name: score.to_dict() for name, score in self.baselines.items()},
            "singles": {alias: score.to_dict() for alias, score in self.singles.items()},
            "advantage": None if self.advantage is None else self.advantage.to_dict(),
            "crowning": None if self.crowning is None else self.crowning.to_dict(),
            "warnings": self.warnings,
            "pareto": [self._front_point(p) for p in self.pareto],
            "usage": self.usage,
            "evaluations": self.evaluations,
            "replayed_evaluations": self.replayed,
            "stopped_reason": self.stopped_reason,
            "simulated": self.simulated,
        }

    def _front_point(self, point: Observation) -> dict[str, Any]:
        """A front graph: on the train items it answered, and with `objective.pareto` its YAML and
        its test split."""
        key = point.candidate.canonical_key
        data: dict[str, Any] = {
            "accuracy": point.accuracy,
            "n_items": point.n_items,  # the printed front says it: "66.7% (12 items)"
            "compute": point.compute,
            "latency_s": point.latency_s,
            "graph": point.candidate.describe(),
        }
        if key in self.front_paths:
            data["path"] = str(self.front_paths[key])
        if key in self.front_tests:
            data["test"] = self.front_tests[key].to_dict()
        return data


def method_and_seed(
    space: SpaceSpec, method: str | None = None, seed: int | None = None, *, stored: bool = False
) -> tuple[str, int]:
    """The search method and seed of a run: those given (command-line flags), else the space's
    `optimizer:`. An unknown method, one that needs the space's agent model when it names none, a
    space's agent model its own method never calls (another --method may), or a REINFORCE method
    with fewer than 2 samples is refused here (so also by `validate` and the dry
    run), before any task is loaded or run row written; `stored`: a resumed run, taken as started."""
    name = space.optimizer.method if method is None else method  # "" is an unknown method, not the space's
    if name not in METHODS:  # a --method flag (the space's own is checked with the space)
        raise AgentScaleError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    given = "--method" if method is not None else "optimizer.method:"
    if METHODS[name].needs_agent and space.optimizer.agent_model is None:
        message = (
            f"{given} {name} needs an agent model: set optimizer.agent_model to one of the space's models, "
            "or to a model of its own ({model: ROUTE, api_base: ...}), which is not searched"
        )
        raise SpecError([SpecIssue("optimizer.agent_model", message)])
    if space.optimizer.agent_model is not None and not METHODS[name].uses_agent and method is None and not stored:
        users = ", ".join(sorted(n for n, m in METHODS.items() if m.uses_agent))
        message = f"{given} {name} makes no agent calls (only {users} do): remove agent_model, or use one of them"
        raise SpecError([SpecIssue("optimizer.agent_model", message)])
    if name in ("agent-reinforce", "reinforce") and space.optimizer.samples < 2 and not stored:
        message = (
            f"{given} {name} needs 2 or more: its update compares an iteration's samples, and agent-reinforce "
            "also re-evaluates its best graph in one of them (with 1 it sampled nothing new and stopped as "
            "'converged')"
        )
        raise SpecError([SpecIssue("optimizer.samples", message)])
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):  # failed inside numpy, run stored
        raise AgentScaleError(f"seed must be a whole number (got {seed!r})")
    return name, space.optimizer.seed if seed is None else seed


def load_task_split(space: SpaceSpec, *, stored: bool = False) -> tuple[Task, list[TaskItem], list[TaskItem]]:
    """The task and its deterministic train and test items; `stored`: a resumed run's (see `load_task`)."""
    ref = space.task
    spec = ref.spec
    if ref.dev and not stored:  # accepted and set aside, read by nothing: a user would think it served
        message = (
            f"optimize holds out no dev split (the search and the crowning use train, the report test): "
            f"leave dev out, or add its {ref.dev} items to train or test"
        )
        raise SpecError([SpecIssue("task.dev", message)])
    total = ref.train + ref.dev + ref.test
    try:
        task = load_task(spec, scorer=ref.scorer, stored=stored, options=ref.load_options())
    except TaskError as exc:
        where = "task.name" if ref.name else "task.path"
        if isinstance(exc, TaskOptionError) and ref.options:  # not when the refused option is our `size`
            where = "task.options"
        elif isinstance(exc, TaskScorerError):
            where = "task.scorer"
        raise SpecError([SpecIssue(where, str(exc))]) from None
    if "tester" in space.roles and task.answer_format != "code":
        raise SpecError(
            [
                SpecIssue(
                    "roles",
                    f"'tester' runs candidate programs on the examples in a question, but task {spec!r} answers "
                    f"in {task.answer_format!r}, not code: drop 'tester' from roles",
                )
            ]
        )
    if task.size < total:
        raise SpecError(
            [SpecIssue("task", f"task {spec!r} has {task.size} items; the space asks for {total} (train+dev+test)")]
        )
    sizes = ref.split_sizes()
    split = task.split(sizes.pop("seed"), **sizes)
    return task, list(split.train.items), list(split.test.items)


def space_with_its_task_file(
    run: Run, task_file: str | os.PathLike[str] | None = None, start_anew: str = "start a new optimization"
) -> tuple[SpaceSpec, dict[str, Any]]:
    """An optimization run's space as it was stored (`stored_space`), and the run's config, for what
    runs on its task again (a resume, `eval --split-of`): its task file checked to be the one the
    run started on (edited, its items would no longer be the run's; `start_anew` says what to do
    instead) or found at `task_file` when it moved (the same bytes, by sha256), and the task's
    absolute path and inferred scorer put back in the space (runs stored before have none)."""
    config = json.loads(run.config_json)
    _find_the_task_file(config, run.id, task_file, start_anew)
    space = stored_space(run)
    kept = (("path", "task_path"), ("name", "task_name"), ("scorer", "task_scorer"))
    task = {key: config[stored] for key, stored in kept if config.get(stored)}
    if task:
        space = space.model_copy(update={"task": space.task.model_copy(update=task)})
    return space, config


def _find_the_task_file(
    config: dict[str, Any], run_id: str, moved_to: str | os.PathLike[str] | None, start_anew: str
) -> None:
    """A stored run's task file, checked (see `space_with_its_task_file`): its stored place updated in `config`
    when it moved."""
    key = "task_path" if config.get("task_path") else "task_name" if config.get("task_name") else None
    digest = config.get("task_sha256")
    if moved_to is not None:
        if key is None:
            raise AgentScaleError(
                f"run {run_id} answers a named task, not a task file it could find elsewhere: drop --task"
            )
        config[key] = moved_task_file(config[key], digest, os.fspath(moved_to), run_id)
    elif key is not None:
        refuse_a_missing_task_file(config[key], digest, run_id)
        refuse_a_changed_task_file(config[key], digest, run_id, start_anew)


def _failed_calls_warning(failed: dict[int, dict[str, str]]) -> str | None:
    """What to say when items of the run's evaluations had model calls that failed (an outage): they
    were scored as they ended, which lowers those graphs' scores; the run said nothing of it."""
    if not failed:
        return None
    items = sum(len(by_item) for by_item in failed.values())
    seq = min(failed)
    item, failure = next(iter(failed[seq].items()))
    return (
        f"{items} items in {len(failed)} evaluations had model calls that failed after the gateway's retries and "
        f"were scored as they ended, so those graphs score lower than they would (first: evaluation {seq}, item "
        f"{item}: {failure}); once the models answer, resume the run with --retry-errors to ask them again"
    )


class Optimization:
    """Create with a space (or `resume`), then `await run()`."""

    def __init__(
        self,
        space: SpaceSpec,
        gateway: Gateway,
        *,
        space_text: str,
        method: str | None = None,
        seed: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        run_id: str | None = None,
        executor: ExecutorConfig | None = None,
        score_test: bool = True,
        retry_errors: bool = False,
    ) -> None:
        """`executor` says where evaluation items run (default local); it is stored with the run.
        `score_test=False` stops after crowning: the test split is not scored (no test spend).
        `retry_errors` (a resumed run): the evaluations from the first one with a failed model call on
        are asked again (`TrialEvaluator.forget_from`), not replayed as they ended."""
        check_concurrency(concurrency)
        if executor is not None and not isinstance(executor, ExecutorConfig):  # a dict: "no attribute 'kind'"
            raise TypeError(
                f"Optimization's executor is an ExecutorConfig(kind, address=, workers=), not {type(executor).__name__}"
            )
        self.retry_errors = retry_errors
        self.space = space
        self.gateway = gateway
        self.store = store_of(gateway, "an optimization")
        self.method_name, self.seed = method_and_seed(space, method, seed, stored=run_id is not None)
        self.concurrency = concurrency
        self.score_test = score_test
        self.problem = SearchProblem.from_space(space)
        self.task, self.train, self.test = load_task_split(space, stored=run_id is not None)
        if run_id is None and (executor is None or executor.kind != "ray"):  # before its run exists (a resume
            refuse_unpulled(not_pulled_here(space), "optimized")  # may need replays only; Ray's workers pull)
        self.executor_config = executor or ExecutorConfig()
        self.executor: Executor = create_executor(self.executor_config)  # fails now if Ray is missing
        if run_id is None:
            config = {
                "space_yaml": space_text,
                "method": self.method_name,
                "seed": self.seed,
                "concurrency": concurrency,
                "score_test": score_test,
                "executor": self.executor_config.to_dict(),
                "response_cache": gateway.settings.cache,  # kept by `optimize --resume` (`--no-cache`)
            }
            if space.task.path is not None:  # relative to where it started: --resume finds it from anywhere
                config["task_path"] = stable_task_spec(space.task.path)
            elif space.task.name is not None and Path(stable_task_spec(space.task.name)).is_file():
                config["task_name"] = stable_task_spec(space.task.name)  # a file named as the task, made absolute
            if space.task.scorer is None and (space.task.path is not None or "task_name" in config):
                config["task_scorer"] = self.task.scorer_name  # inferred: its resume keeps it, whatever the rule
            task_file = config.get("task_path") or config.get("task_name")
            if isinstance(task_file, str):  # its resume checks the file is the same (an edited one was read as is)
                config["task_sha256"] = task_file_digest(task_file)
            run_id = self.store.create_run("optimize", graph_name=space.name, config=config, claim=False).id
        self.run_id = run_id
        self.evaluator = self._evaluator()
        self._ran = False  # a second run() goes on from the stored trials, as a resume does
        self._progress = ProgressReporter(None, lambda: 0)  # run() installs the caller's

    def _evaluator(self) -> TrialEvaluator:
        """The run's evaluator, which reads the trials stored so far (a resumed run replays them)."""
        return TrialEvaluator(
            self.run_id,
            self.space,
            self.problem,
            self.task,
            self.gateway,
            self.concurrency,
            method=self.method_name,
            executor=self.executor,
        )

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        gateway: Gateway,
        *,
        method: str | None = None,
        seed: int | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        executor: ExecutorConfig | None = None,
        score_test: bool = True,
    ) -> Optimization:
        """A new run of the search space in the file `path`, read once: the text validated is the text
        stored with the run, which `resume` reads back (the file may change or go afterwards)."""
        text = read_text(path)
        located = load_located(text, str(path))
        with located.locating(str(path)):  # the budget and task checks name the file and line
            return cls(
                space_from_data(located, str(path)),
                gateway,
                space_text=text,
                method=method,
                seed=seed,
                concurrency=concurrency,
                executor=executor,
                score_test=score_test,
            )

    @classmethod
    def resume(
        cls,
        run_id: str,
        gateway: Gateway,
        *,
        executor: ExecutorConfig | None = None,
        concurrency: int | None = None,
        retry_errors: bool = False,
        task_file: str | os.PathLike[str] | None = None,
    ) -> Optimization:
        """Continue a stored run; with the executor and concurrency it was started with unless given
        (both change where and how fast items run, not what they answer). `retry_errors`: ask again
        the evaluations whose model calls failed (and those after them, which the search chose
        from their scores). `task_file`: where the run's task file is now, when it was moved (the
        same bytes, checked by their sha256). A task file edited since the run started is refused:
        read as it was, half the run's verdicts were the old file's and half the new one's, and it
        crowned a graph neither file would."""
        run = store_of(gateway, "resuming an optimization").refuse_if_busy(run_id)
        if run.kind != "optimize":
            raise AgentScaleError(f"{run.made_by()}, not `agentscale optimize`")
        space, config = space_with_its_task_file(run, task_file)
        return cls(
            space,
            gateway,
            space_text=config["space_yaml"],
            method=config["method"],
            seed=config["seed"],
            concurrency=config.get("concurrency", DEFAULT_CONCURRENCY) if concurrency is None else concurrency,
            score_test=config.get("score_test", True),
            run_id=run.id,
            executor=executor or ExecutorConfig.from_stored(config.get("executor")),
            retry_errors=retry_errors,
        )

    # the agent used for textual feedback ------------------------------------------------------
    def _agent(self) -> AgentCall | None:
        model = feedback_agent(self.space)
        if model is None:
            return None
        calls = ModelCalls(self.gateway, run_id=self.run_id, item_key=AGENT_KEY)  # held against max_spend per call
        stored = _stored_agent_outcomes(self.store, self.run_id)

        async def call(system: str, user: str) -> str:
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            replayed = stored.get(json.dumps(messages))
            if replayed:  # asked before this run was stopped: what it said then, as the search used it
                status, text = replayed.pop(0)
                if status != "ok":
                    raise ModelCallError(text)
                return text
            trace = NodeTrace(AGENT_KEY, AGENT_KEY, model=model.name)
            request = CallRequest(model, messages, temperature=0.0, max_tokens=AGENT_MAX_TOKENS)
            held = self.evaluator.reserve_agent_call(model, messages, AGENT_MAX_TOKENS)  # or SpendCapReached
            # minutes on a real model, while the status showed the last round's, frozen (the real 0.5B walk)
            self._progress.restage(f"search: asking the feedback agent {model.name}")
            try:
                result = await calls.call(trace, request)
            finally:
                self.evaluator.release(held)
            record_rows(self.store, self.run_id, AGENT_KEY, [trace])  # in the run's calls, like the trials'
            if result is None:
                raise ModelCallError(trace.error or "the call failed")
            return result.completion

        return call

    def _minibatch(self, iteration: int) -> list[TaskItem]:
        size = min(self.space.optimizer.minibatch, len(self.train))
        order = self._train_order()
        start = (iteration * size) % len(order)
        return [order[(start + k) % len(order)] for k in range(size)]

    # the run ----------------------------------------------------------------------------------
    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> OptimizeResult:
        if on_progress is not None:
            check_callback(on_progress, "on_progress")
        with claim_in_this_process(self.store.path, self.run_id), storage_errors_said(self.store.path, "optimizing"):
            return await self._run_claimed(on_progress)

    async def _run_claimed(self, on_progress: Callable[[Progress], None] | None) -> OptimizeResult:
        if self._ran:  # run again (after a cancel, or done): it searched anew, storing every trial twice
            self.executor = create_executor(self.executor_config)  # the last run closed its own
            self.evaluator = self._evaluator()
        self._ran = True
        try:
            self.store.reopen_run(self.run_id)  # refused while another process runs it
        except RunBusy:
            self.executor.close()  # started for this run (a Ray cluster): not left open
            raise
        failed = failed_calls_by_trial(self.store, self.run_id) if self.retry_errors else {}
        if failed:  # after the claim: another process may have been answering them
            self.evaluator.forget_from(min(failed))
            # what the run crowned and scored came from trials it drops: a stop before it crowns
            # again showed the old crown (and a finished run's test scores) as this run's
            self.store.save_summary(self.run_id, {})
        self._progress = ProgressReporter(on_progress, lambda: self.store.spend(self.run_id)["calls"])
        try:
            async with self._progress.refreshing():
                result = await self._run()
                self._progress.restage("done")  # the bar stood at the test split's first calls (729 of 772)
        except BaseException as exc:
            self.store.finish_broken_run(self.run_id, exc)
            raise
        finally:
            self.executor.close()
        self.store.finish_run(self.run_id, "done", result.to_dict())
        return result

    async def _run(self) -> OptimizeResult:
        settings = self.space.optimizer
        method = METHODS[self.method_name](self.problem, seed=self.seed, agent=self._agent())

        def report(iteration: int, history: list[Observation], stage: str = "search") -> None:
            best = max(history, key=lambda o: o.reward, default=None)
            self._progress.report(
                Progress(
                    iteration,
                    settings.iterations,
                    len(history),
                    best.reward if best else None,
                    best.accuracy if best else None,
                    self._progress.spent_calls(),
                    stage,
                )
            )

        async def evaluate(candidate: CandidateGraph, iteration: int) -> Observation:
            try:
                return await self.evaluator.evaluate(
                    candidate, self._minibatch(iteration), kind="search", iteration=iteration
                )
            except SpendCapReached as exc:
                raise StopSearch(f"spend cap: {exc}") from None

        report(0, [], "single calls")
        singles = await self._singles_on_train()
        unanswered = self._singles_warnings(singles)
        method.learn_from_singles(singles)
        outcome = await run_search(
            method,
            evaluate,
            iterations=settings.iterations,
            samples=settings.samples,
            patience=PATIENCE,
            on_iteration=report,
        )
        history, curve, stopped = outcome.history, outcome.curve, outcome.stopped_reason
        if not history and not singles.raced:
            raise AgentScaleError(f"the search evaluated no graph ({stopped})")
        report(settings.iterations, history, "crowning")
        crowning = await self._crown(method, history, singles, stopped)
        best_train = crowning.crowned
        artifacts = self.store.run_folder(self.run_id)
        best_yaml = self._graph_yaml(best_train.candidate, "best")
        best_path = artifacts / "best.yaml"
        write_output(best_path, best_yaml)  # whole or not at all, as every file a user is pointed to
        if "best" not in json.loads(self.store.get_run(self.run_id).summary_json):  # a replay keeps the final one
            self.store.save_summary(self.run_id, _crown_record(best_train, best_path, crowning))
        # every graph with all it answered (minibatches, race steps), read back as the report and `runs
        # show` read it: from the race's merged steps its latency came out 2.27 s, the report's 2.31 s
        front = stored_front(self.store, self.run_id, self.space, None)  # in trial order
        pareto = self.space.objective.pareto
        if self.score_test:  # with --no-test the progress said "testing" all the same
            report(settings.iterations, history, "testing")
        tested = await self._test(best_train, singles, front if pareto else []) if self.score_test else _TestSplit()
        if tested.refused:
            stopped += f"; {tested.refused}"
        front_paths = {}
        for index, point in enumerate(front if pareto else [], start=1):
            front_paths[point.candidate.canonical_key] = path = artifacts / f"front-{index}.yaml"
            write_output(path, self._graph_yaml(point.candidate, f"front-{index}"))
        spent = self.store.spend(self.run_id)
        by_stage = calls_by_stage(self.store, self.run_id, self.method_name)
        warnings = unanswered + ([crowning.warning] if crowning.warning else [])
        agent_warning = method.agent_warning()
        if agent_warning is not None:
            warnings.append(agent_warning)
        failed_calls = _failed_calls_warning(failed_calls_by_trial(self.store, self.run_id))
        if failed_calls is not None:
            warnings.append(failed_calls)
        budget_stops = self._budget_stops_warning(best_train)
        if budget_stops is not None:
            warnings.append(budget_stops)
        cut, replies = cut_replies(self.store, self.run_id)
        if cut:
            warnings.append(
                f"{cut} of {replies} model replies of its evaluations stopped at their max_tokens: their answers "
                "may be cut short and were scored as they ended, so graphs were ranked partly on the cut; raise "
                "defaults.max_tokens in the space"
            )
        if not history and singles.raced and stopped.startswith("spend cap:"):  # iterations would not help
            warnings.append(
                f"the search evaluated no graph beyond the single calls: the spend cap stopped it first ({stopped}): "
                "the crowned graph is a single call; raise optimizer.max_spend to search graphs"
            )
        elif not history and singles.raced:  # exit 0 and "finished 1 iterations" said nothing of it
            warnings.append(
                f"the search evaluated no graph beyond the single calls ({stopped}; iterations "
                f"{settings.iterations}, max_nodes {self.problem.max_nodes}: every graph it proposed was a "
                "single call already measured, or none fitted): the crowned graph is a single call; raise "
                "optimizer.iterations or max_nodes to search graphs"
            )
        if tested.no_vote is not None:
            warnings.append(f"no self-consistency baseline of the best single call on the test split: {tested.no_vote}")
        if tested.advantage is not None and len(tested.advantage.over) > 1:
            warnings.append(f"single calls tie on the test split: {', '.join(tested.advantage.over)}")
        warnings += _baselines_above_the_crown(tested, self.space.objective)
        return OptimizeResult(
            run_id=self.run_id,
            method=self.method_name,
            best=tested.best,
            best_train=best_train,
            best_path=best_path,
            best_yaml=best_yaml,
            baselines=tested.baselines,
            pareto=front,
            curve=curve,
            usage={**spent, "search_evaluations": len(history), "calls_by_stage": by_stage},
            evaluations=self.evaluator.evaluated,
            replayed=self.evaluator.replayed,
            stopped_reason=stopped,
            artifacts=artifacts,
            history=history,
            singles=tested.singles,
            advantage=tested.advantage,
            crowning=crowning,
            warnings=warnings,
            front_tests=tested.front,
            front_paths=front_paths,
            simulated=self.simulated,
        )

    def _budget_stops_warning(self, crowned: Observation) -> str | None:
        """What to say when the space's budget stopped the crowned graph (or was passed by it) on train
        items: a `max_latency_s` below every call's latency stopped all 115 items of a run, which
        crowned a graph at 0.70 s without a word, and best.yaml keeps the cap."""
        key = crowned.candidate.canonical_key
        seqs = {t.seq for t in self.store.trials(self.run_id) if t.key == key and t.kind in TRAIN_KINDS}
        stopped: dict[str, str] = {}
        for seq, by_item in sorted(budget_stops_by_trial(self.store, self.run_id).items()):
            if seq in seqs:
                stopped.update({item: reason for item, reason in by_item.items() if item not in stopped})
        if not stopped:
            return None
        item, reason = next(iter(stopped.items()))
        return (
            f"the space's budget stopped the crowned graph, or was passed by it, on {len(stopped)} of the "
            f"{max(crowned.n_items, len(stopped))} train items it answered (first, item {item}: {reason}): it is "
            "scored on what it answered within the budget, and best.yaml keeps the budget"
        )

    @property
    def simulated(self) -> bool:
        """Whether the space's models include simulated ones (sim/ routes): every figure the run shows,
        its progress included, is then labelled as no model's."""
        return is_simulated(model.model for model in self.space.models.values())

    def _graph_yaml(self, candidate: CandidateGraph, suffix: str) -> str:
        """A searched graph as a runnable graph file, answering in the task's format."""
        description = f"found by agentscale optimize ({self.method_name}), run {self.run_id}"
        if self.simulated:  # its figures are no model's
            description += " on the SIMULATED population (sim/ models: no model accuracy)"
        spec = self.space.graph_spec(candidate, f"{self.space.name}-{suffix}", description=description)
        return dump_graph_spec(spec.model_copy(update={"answer_format": self.task.answer_format}))

    async def _singles_on_train(self) -> RaceOutcome:
        """Every model alone on the train split, raced (stage 0; see the module docstring): the
        finalists have answered the whole split (unless the spend cap stopped the race), the others the
        prefix they left on; each group in the order of the space's models.

        Why race: a model far behind the best one (SmolLM2 beside Qwen 1.5B: 6 of 64 against 40) needs
        no more items to say so, and the singles were ≈ half of a run's calls before its search."""
        candidates = [single(alias) for alias in self.problem.aliases if self.problem.fits(single(alias))]
        outcome = await self._race(
            candidates, "baseline", "single calls", before_step=lambda: self._refuse_if_no_single_answered(candidates)
        )
        self._refuse_if_no_single_answered(candidates)  # a race of one step
        position = {alias: index for index, alias in enumerate(self.problem.aliases)}

        def in_order(observations: list[Observation]) -> list[Observation]:
            return sorted(observations, key=lambda o: position[model_of_single(o.candidate)])

        return RaceOutcome(in_order(outcome.finished), in_order(outcome.behind), outcome.capped)

    def _refuse_if_no_single_answered(self, candidates: list[CandidateGraph]) -> None:
        """Stop the run when every model's calls failed (a server down, a key missing): the search
        would rank graphs that all score 0 and crown one of them (it did: exit 0, "0 model calls").
        Checked at each step of the singles' race, so a dead endpoint costs one quarter of its retries."""
        failed = [c for c in candidates if c.canonical_key in self.evaluator.unanswered]
        if failed and len(failed) == len(candidates):
            first = failed[0]
            # what was stored measured the outage: a resume (the server back) asks again, where it
            # replayed those zeros as the models' scores
            self.store.drop_trials(self.run_id)
            raise AgentScaleError(
                "every model call of the single calls failed on the train split, so no graph can be measured "
                f"(first, model {model_of_single(first)}: {self.evaluator.unanswered[first.canonical_key]})"
            )

    def _singles_warnings(self, singles: RaceOutcome) -> list[str]:
        """A warning per model whose every call failed in the singles' race (it scored 0 and left), and
        per model the spend cap refused before its first item (the run went on without a word)."""
        failed = [
            f"every call of model {model_of_single(o.candidate)} failed on the train split, so it scored 0: "
            f"{self.evaluator.unanswered[o.candidate.canonical_key]}"
            for o in singles.raced
            if o.candidate.canonical_key in self.evaluator.unanswered
        ]
        raced = {model_of_single(o.candidate) for o in singles.raced}
        refused = [alias for alias in self.problem.aliases if alias not in raced and self.problem.fits(single(alias))]
        if singles.capped and refused:
            failed.append(
                f"the spend cap (optimizer.max_spend) refused the single call of {', '.join(refused)} before its "
                "first item: nothing was measured of it; raise the cap to compare every model"
            )
        return failed

    async def _race(
        self,
        candidates: list[CandidateGraph],
        kind: str,
        stage: str,
        before_step: Callable[[], None] = lambda: None,
    ) -> RaceOutcome:
        """Race graphs on the train split (`optimize.race`), each step a stored trial of `kind`; the
        progress names the step (`single calls: 3 graphs on items 1-16 of 64`); `before_step` may
        stop the race by raising."""

        async def evaluate(candidate: CandidateGraph, items: list[TaskItem]) -> Observation:
            return await self.evaluator.evaluate(candidate, items, kind=kind, iteration=-1)

        def on_step(graphs: int, first: int, last: int, total: int) -> None:
            before_step()
            self._progress.restage(f"{stage}: {graphs} graph{'s' * (graphs != 1)} on items {first}-{last} of {total}")

        return await race(
            candidates,
            self._train_order(),
            evaluate,
            accuracy_weight=self.problem.accuracy_weight,
            on_step=on_step,
            rescore=self._rescore,
        )

    def _rescore(self, observation: Observation) -> Observation:
        """The observation's reward on the run's current latency reference (the slowest mean latency
        seen so far): a reward is stored with the reference of its evaluation, so graphs evaluated
        early (the single calls) carry a larger latency penalty than the same latency later; every
        comparison of the crowning rescores first. Without a latency weight nothing changes."""
        return replace(
            observation, reward=self.evaluator.reward(observation.accuracy, observation.compute, observation.latency_s)
        )

    async def _crown(
        self, method: SearchMethod, history: list[Observation], singles: RaceOutcome, stopped: str
    ) -> Crowning:
        """Race the pool on the train split, then decide among the last graphs and the singles
        (see `optimize.crowning`); `stopped` says why the search ended (for the error when nothing
        crownable was evaluated)."""
        allowed = [o for o in history if o.candidate.ceo in self.problem.ceo_options]  # pilots may lack a CEO
        weight = self.problem.accuracy_weight
        contenders = [o for o in singles.finished if o.candidate.ceo in self.problem.ceo_options]
        if not allowed and not contenders:
            what = (
                "coordinator.optional is false, so only a CEO-led graph can be crowned, but the search evaluated "
                "none (the pilot's graphs run without a CEO)"
                if None not in self.problem.ceo_options
                else "the search evaluated no graph to crown"
            )
            raise AgentScaleError(
                f"{what}; the search stopped: {stopped}. Raise optimizer.iterations"
                + (" or max_spend" if "spend cap" in stopped else "")
                + " and run again (the response cache answers the calls already made)"
            )
        outcome = await self._race(self._pool(method, allowed, singles), "crown", "crowning")
        contenders += _most_answered(outcome.finished)  # the cap may have stopped some a step short
        contenders = [self._rescore(o) for o in on_shared_items(contenders)]
        if not contenders:  # the spend cap stopped the race's first step: the best minibatch graph stands in
            fallback = max(allowed, key=lambda o: o.reward)
            return Crowning(fallback, fallback, "the spend cap stopped crowning: best minibatch objective")
        crowning = crown(
            contenders, accuracy_weight=weight, baselines={o.candidate.canonical_key for o in singles.raced}
        )
        if outcome.capped and crowning.leader.n_items < len(self.train):
            crowning.reason += (
                f"; the spend cap stopped the crowning race, so every finalist is compared on the "
                f"{crowning.leader.n_items} of {len(self.train)} train items they all answered"
            )
        return crowning

    def _pool(self, method: SearchMethod, history: list[Observation], singles: RaceOutcome) -> list[CandidateGraph]:
        """What races for the crown: the method's nominees that were evaluated, then the search's
        most promising graphs by a cautious estimate (`rank(cautious=True)`: a lucky minibatch does
        not push out a graph measured on many items), at least `MIN_SEARCHED`, `CROWN_POOL` in all
        when there is room."""
        evaluated = {o.candidate.canonical_key for o in history}
        single_keys = {o.candidate.canonical_key for o in singles.raced}
        nominees = [c for c in method.nominees() if c.canonical_key in evaluated - single_keys]
        room = max(MIN_SEARCHED, CROWN_POOL - len(nominees))
        named = {c.canonical_key for c in nominees}
        ranked = [
            c
            for c in rank(
                [self._rescore(o) for o in history],
                [self._rescore(o) for o in singles.finished],
                accuracy_weight=self.problem.accuracy_weight,
                cautious=True,
            )
            if c.canonical_key not in named | single_keys
        ]
        return nominees + ranked[:room]

    def _train_order(self) -> list[TaskItem]:
        """The train split in the order the minibatches walk it (crowning races on its prefixes)."""
        order = np.random.default_rng([self.seed, 7919]).permutation(len(self.train))
        return [self.train[int(i)] for i in order]

    async def _test(self, crowned: Observation, singles: RaceOutcome, front: Sequence[Observation] = ()) -> _TestSplit:
        """The crowned graph, every single model, the best single's vote and the `front` graphs on the
        test split, side by side. What the spend cap refuses is left out and named; what the others
        scored is kept (the crowned graph's advantage needs every single call scored: the best one
        may be missing)."""
        raced = singles.raced
        others = [o.candidate for o in raced if o.candidate.canonical_key != crowned.candidate.canonical_key]
        top = best_single(self._rescore(o) for o in singles.finished)  # on the crowning's latency reference
        top_model = model_of_single(top.candidate) if top is not None else None
        votes = max_samples(self.problem, top_model, chooser=self.problem.chooser) if top_model is not None else None
        if votes is not None and votes.size <= 1:
            votes = None
        graphs = [crowned.candidate, *others]
        no_vote = (
            why_no_vote(self.problem, top_model, self.problem.chooser)
            if votes is None and top_model is not None
            else None
        )
        if votes is not None and votes.canonical_key != crowned.candidate.canonical_key:
            graphs.append(votes)  # when the vote was crowned, its one evaluation serves both rows
        scored = {c.canonical_key for c in graphs}
        graphs += [p.candidate for p in front if p.candidate.canonical_key not in scored]
        names = ["best", *(c.short_name() for c in graphs[1:])]
        scores, refused = await side_by_side(
            [self._score(name, candidate) for name, candidate in zip(names, graphs, strict=True)], SpendCapReached
        )
        by_key = {score.candidate.canonical_key: score for score in scores}
        tested = _TestSplit(best=by_key.get(crowned.candidate.canonical_key), no_vote=no_vote)
        tested.singles = {
            model_of_single(o.candidate): by_key[o.candidate.canonical_key]
            for o in raced
            if o.candidate.canonical_key in by_key
        }
        if top_model is not None and top_model in tested.singles:
            tested.baselines["single"] = tested.singles[top_model]
        if votes is not None and votes.canonical_key in by_key:
            tested.baselines["vote"] = replace(by_key[votes.canonical_key], name=votes.short_name())
        tested.front = {
            p.candidate.canonical_key: by_key[p.candidate.canonical_key]
            for p in front
            if p.candidate.canonical_key in by_key
        }
        if refused is not None:
            missing = [
                "the crowned graph" if name == "best" else name
                for name, candidate in zip(names, graphs, strict=True)
                if candidate.canonical_key not in by_key
            ]
            tested.refused = f"test split: {', '.join(missing)} not scored ({refused})"
        if tested.best is not None and tested.singles and len(tested.singles) == len(raced):
            highest = max(score.accuracy for score in tested.singles.values())
            over = [alias for alias, score in tested.singles.items() if score.accuracy == highest]
            versus = tested.singles[over[0]]
            itself = versus.candidate.canonical_key == tested.best.candidate.canonical_key
            tested.advantage = Advantage(over, paired_difference(tested.best.outcomes, versus.outcomes), itself)
        return tested

    async def _score(self, name: str, candidate: CandidateGraph) -> TestScore:
        observation = await self.evaluator.evaluate(candidate, self.test, kind="test", iteration=-1)
        return TestScore(
            name,
            candidate,
            observation.accuracy,
            observation.n_items,
            observation.compute,
            observation.latency_s,
            observation.outcomes,
        )


def _most_answered(raced: list[Observation]) -> list[Observation]:
    """The crowning race's finalists that answered the whole train split, else (the spend cap cut
    the race) those that answered most: `crown` decides among graphs scored on the same items."""
    most = max((o.n_items for o in raced), default=0)
    return [o for o in raced if o.n_items == most]


def _stored_agent_outcomes(store: Store, run_id: str) -> dict[str, list[tuple[str, str]]]:
    """The feedback agent's stored calls of a run, by prompt, in order: (status, reply or error). A
    resumed run (or a second `run()`) replays them instead of asking again: a call that had failed
    (its server down) and answered on the resume proposed another graph, and the resume stopped on
    "evaluation N differs from the stored one", again at every try; an agent whose reply varies
    (the cache off) did the same by chance. Keyed by prompt: a search that went another way since
    (trials dropped for `--retry-errors`) asks anew where its prompt is new."""
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for row in store.node_calls(run_id, AGENT_KEY):
        said = row.completion if row.status == "ok" else (row.error or "the call failed")
        outcomes.setdefault(row.messages_json, []).append((row.status, said or ""))
    return outcomes


def _baselines_above_the_crown(tested: _TestSplit, objective: Objective) -> list[str]:
    """A baseline graph (the best single call's self-consistency) that scored above the crowned graph on
    the test split, in words: the run named the crown's advantage over the best single call only, and
    a vote of four ahead by 10 points in four demo runs out of four was a row of a table (the demo
    walk). The single calls are the advantage's own sentence. Where the objective weighs compute or
    latency and the crowned graph spends less of it, more train items are not the fix: the weights
    ranked the cheaper graph first. Where it spends more, they did not (the real 0.5B walk: "the
    objective weighs compute, which ranked the crowned graph first" of a crown costlier than the vote)."""
    best = tested.best
    if best is None:
        return []
    said = []
    for kind, score in tested.baselines.items():
        if kind == "single" or score.accuracy <= best.accuracy:
            continue
        spares = [
            name
            for name, weight, ours, theirs in (
                ("compute", objective.cost, best.compute, score.compute),
                ("latency", objective.latency, best.latency_s, score.latency_s),
            )
            if weight > 0 and ours < theirs
        ]
        fix = (
            f"the objective weighs {' and '.join(spares)}, of which the crowned graph spends less, and that "
            "ranked it first"
            if spares
            else "the train split did not rank it first: add train items to tell them apart"
        )
        paired = paired_difference(score.outcomes, best.outcomes)
        said.append(
            f"the {kind} baseline ({score.name}) scored {score.accuracy:.1%} on the test items, "
            f"{100 * (score.accuracy - best.accuracy):.1f} points above the crowned graph (paired on "
            f"{paired.n} items: right only with it {paired.only_first}, only with the crowned graph "
            f"{paired.only_second}, exact McNemar p={format_p(paired.p_value)}); {fix}"
        )
    return said


def _crown_record(crowned: Observation, path: Path, crowning: Crowning) -> dict[str, Any]:
    """The run's summary between crowning and the end of its test split: an interrupted run keeps
    which graph was crowned, where its YAML is and why (the final summary replaces it)."""
    return {
        "crowned": {
            "graph": crowned.candidate.describe(),
            "path": str(path),
            "train_accuracy": crowned.accuracy,
            "compute": crowned.compute,
        },
        "crowning": crowning.to_dict(),
    }
