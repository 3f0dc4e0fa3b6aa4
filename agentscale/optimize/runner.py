"""An optimization run: search, crown the best graph, score it and the baselines on the test split.

Stages (each evaluation is a stored trial, see :mod:`agentscale.optimize.trials`):
1. search: `iterations` rounds of propose → evaluate on a minibatch of the train split → observe;
   every proposal of a round sees the same minibatch, so rewards within a round are comparable;
2. crowning: the three best distinct graphs are re-evaluated on the whole train split and the best
   by the objective is kept (a lucky minibatch cannot crown a graph);
3. test: the crowned graph and the baselines (the best single model with one call; that model's
   majority vote of as many samples as the budget allows) on the test split, with Wilson intervals.
The search stops after `iterations`, when the spend cap would be crossed, or when three rounds in a
row propose nothing new (converged).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentscale.errors import AgentScaleError
from agentscale.evaluate.stats import wilson_interval
from agentscale.executors import Executor, ExecutorConfig, create_executor
from agentscale.graphs._yaml import load_located
from agentscale.graphs.io import dump_graph_spec
from agentscale.models.gateway import CallRequest, Gateway
from agentscale.models.registry import resolve
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.methods import METHODS
from agentscale.optimize.methods.base import AgentCall
from agentscale.optimize.objective import Observation, pareto_front
from agentscale.optimize.pilot import max_votes, single
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.search import StopSearch, run_search
from agentscale.optimize.space import SpaceSpec, space_from_data
from agentscale.optimize.trials import SpendCapReached, TrialEvaluator
from agentscale.tasks import Task, TaskItem, load_task

PATIENCE = 3
CROWN_CANDIDATES = 3


@dataclass
class Progress:
    iteration: int
    iterations: int
    evaluations: int
    best_reward: float | None
    best_accuracy: float | None
    spent_calls: int
    stage: str


@dataclass
class TestScore:
    name: str
    candidate: CandidateGraph
    accuracy: float
    n: int
    compute: float
    latency_s: float

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(round(self.accuracy * self.n), self.n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "n": self.n,
            "compute": self.compute,
            "latency_s": self.latency_s,
            "graph": self.candidate.describe(),
        }


@dataclass
class OptimizeResult:
    run_id: str
    method: str
    best: TestScore | None  # None when the spend cap left nothing for the test split
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
                    }
                ),
                "train_accuracy": self.best_train.accuracy,
            },
            "baselines": {name: score.to_dict() for name, score in self.baselines.items()},
            "pareto": [
                {
                    "accuracy": p.accuracy,
                    "compute": p.compute,
                    "latency_s": p.latency_s,
                    "graph": p.candidate.describe(),
                }
                for p in self.pareto
            ],
            "usage": self.usage,
            "evaluations": self.evaluations,
            "replayed_evaluations": self.replayed,
            "stopped_reason": self.stopped_reason,
        }


def load_task_split(space: SpaceSpec) -> tuple[Task, list[TaskItem], list[TaskItem]]:
    """The task and its deterministic train and test items."""
    ref = space.task
    spec = ref.name or ref.path
    assert spec is not None
    total = ref.train + ref.dev + ref.test
    options: dict[str, Any] = dict(ref.options)
    if (spec.startswith("rg:") or spec.startswith("sim:")) and "size" not in options:
        options["size"] = max(total, 200)
    task = load_task(spec, scorer=ref.scorer, **options)
    if task.size < total:
        raise AgentScaleError(f"task {spec!r} has {task.size} items; the space asks for {total} (train+dev+test)")
    split = task.split(ref.seed, train=ref.train, dev=ref.dev, test=ref.test)
    return task, list(split.train.items), list(split.test.items)


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
        concurrency: int = 8,
        run_id: str | None = None,
        executor: ExecutorConfig | None = None,
    ) -> None:
        """`executor` says where evaluation items run (default local); it is stored with the run."""
        if gateway.store is None:
            raise AgentScaleError("an optimization needs a database (store)")
        self.space = space
        self.gateway = gateway
        self.store = gateway.store
        self.method_name = method or space.optimizer.method
        if self.method_name not in METHODS:
            raise AgentScaleError(f"unknown method {self.method_name!r}; choose from {', '.join(sorted(METHODS))}")
        self.seed = space.optimizer.seed if seed is None else seed
        self.concurrency = concurrency
        self.problem = SearchProblem.from_space(space)
        self.task, self.train, self.test = load_task_split(space)
        self.executor_config = executor or ExecutorConfig()
        self.executor: Executor = create_executor(self.executor_config)  # fails now if Ray is missing
        if run_id is None:
            config = {
                "space_yaml": space_text,
                "method": self.method_name,
                "seed": self.seed,
                "concurrency": concurrency,
                "executor": self.executor_config.to_dict(),
            }
            run_id = self.store.create_run("optimize", graph_name=space.name, config=config).id
        self.run_id = run_id
        self.evaluator = TrialEvaluator(
            run_id, space, self.problem, self.task, gateway, concurrency, executor=self.executor
        )

    @classmethod
    def resume(cls, run_id: str, gateway: Gateway, *, executor: ExecutorConfig | None = None) -> Optimization:
        """Continue a stored run; with the executor it was started with unless `executor` is given."""
        assert gateway.store is not None
        run = gateway.store.get_run(run_id)
        if run.kind != "optimize":
            raise AgentScaleError(f"run {run.id} is a {run.kind!r} run, not an optimization")
        config = json.loads(run.config_json)
        space = space_from_data(load_located(config["space_yaml"], f"run {run.id}"), f"run {run.id}")
        return cls(
            space,
            gateway,
            space_text=config["space_yaml"],
            method=config["method"],
            seed=config["seed"],
            concurrency=config.get("concurrency", 8),
            run_id=run.id,
            executor=executor or ExecutorConfig.from_dict(config.get("executor")),
        )

    # the agent used for textual feedback ------------------------------------------------------
    def _agent(self) -> AgentCall | None:
        alias = self.space.optimizer.agent_model
        if alias is None:
            return None
        model = resolve(alias, self.space.models.get(alias))
        calls = 0

        async def call(system: str, user: str) -> str:
            nonlocal calls
            calls += 1
            request = CallRequest(
                model,
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                temperature=0.0,
                max_tokens=1024,
                sample_index=calls,
            )
            result = await self.gateway.complete(request, node="optimizer-agent", run_id=self.run_id)
            return result.completion

        return call

    def _minibatch(self, iteration: int) -> list[TaskItem]:
        size = min(self.space.optimizer.minibatch, len(self.train))
        order = np.random.default_rng([self.seed, 7919]).permutation(len(self.train))
        start = (iteration * size) % len(self.train)
        picks = [order[(start + k) % len(self.train)] for k in range(size)]
        return [self.train[int(i)] for i in picks]

    # the run ----------------------------------------------------------------------------------
    async def run(self, on_progress: Callable[[Progress], None] | None = None) -> OptimizeResult:
        try:
            result = await self._run(on_progress)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
            self.store.finish_run(self.run_id, status, error=str(exc) or type(exc).__name__)
            raise
        finally:
            self.executor.close()
        self.store.finish_run(self.run_id, "done", result.to_dict())
        return result

    async def _run(self, on_progress: Callable[[Progress], None] | None) -> OptimizeResult:
        settings = self.space.optimizer
        method = METHODS[self.method_name](self.problem, seed=self.seed, agent=self._agent())

        def report(iteration: int, history: list[Observation], stage: str = "search") -> None:
            if on_progress is None:
                return
            best = max(history, key=lambda o: o.reward, default=None)
            spent = int(self.store.spend(self.run_id)["calls"] or 0)
            on_progress(
                Progress(
                    iteration,
                    settings.iterations,
                    len(history),
                    best.reward if best else None,
                    best.accuracy if best else None,
                    spent,
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

        outcome = await run_search(
            method,
            evaluate,
            iterations=settings.iterations,
            samples=settings.samples,
            patience=PATIENCE,
            on_iteration=report,
        )
        history, curve, stopped = outcome.history, outcome.curve, outcome.stopped_reason
        if not history:
            raise AgentScaleError(f"the search evaluated no graph ({stopped})")
        report(settings.iterations, history, "crowning")
        best_train = await self._crown(history)
        report(settings.iterations, history, "testing")
        try:
            best, baselines = await self._test(best_train.candidate)
        except SpendCapReached as exc:
            best, baselines = None, {}
            stopped += f"; test split not scored ({exc})"
        artifacts = self.store.path.parent / "runs" / self.run_id
        artifacts.mkdir(parents=True, exist_ok=True)
        spec = best_train.candidate.to_spec(
            f"{self.space.name}-best",
            dict(self.space.models),
            defaults=self.space.defaults,
            description=f"found by agentscale optimize ({self.method_name}), run {self.run_id}",
        )
        best_yaml = dump_graph_spec(spec.model_copy(update={"answer_format": self.task.answer_format}))
        best_path = artifacts / "best.yaml"
        best_path.write_text(best_yaml)
        spent = self.store.spend(self.run_id)
        return OptimizeResult(
            run_id=self.run_id,
            method=self.method_name,
            best=best,
            best_train=best_train,
            best_path=best_path,
            best_yaml=best_yaml,
            baselines=baselines,
            pareto=pareto_front(history),
            curve=curve,
            usage={**spent, "evaluations": len(history)},
            evaluations=self.evaluator.evaluated,
            replayed=self.evaluator.replayed,
            stopped_reason=stopped,
            artifacts=artifacts,
            history=history,
        )

    async def _crown(self, history: list[Observation]) -> Observation:
        """Re-evaluate the best few distinct graphs on the whole train split; keep the best."""
        totals: dict[str, list[Observation]] = {}
        for observation in history:
            if observation.candidate.ceo in self.problem.ceo_options:  # pilots may lack a required CEO
                totals.setdefault(observation.candidate.canonical_key, []).append(observation)

        def mean_reward(key: str) -> float:
            return float(np.mean([o.reward for o in totals[key]]))

        finalists = sorted(totals, key=mean_reward, reverse=True)[:CROWN_CANDIDATES]
        crowned = []
        for key in finalists:
            candidate = totals[key][0].candidate
            try:
                crowned.append(await self.evaluator.evaluate(candidate, self.train, kind="crown", iteration=-1))
            except SpendCapReached:
                break  # keep what was measured; the best minibatch graph stands in
        if not crowned:
            return max(history, key=lambda o: o.reward)
        return max(crowned, key=lambda o: o.reward)

    async def _test(self, candidate: CandidateGraph) -> tuple[TestScore, dict[str, TestScore]]:
        singles = []
        for alias in self.problem.aliases:
            one = single(alias)
            if self.problem.fits(one):
                singles.append(await self.evaluator.evaluate(one, self.train, kind="baseline", iteration=-1))
        best = await self._score("best", candidate)
        baselines: dict[str, TestScore] = {}
        if singles:
            top = max(singles, key=lambda o: o.accuracy)
            alias = next(n.model for n in top.candidate.nodes if n.model)
            baselines["single"] = await self._score(f"single call of {alias}", top.candidate)
            votes = max_votes(self.problem, alias)
            if votes is not None and votes.size > 1:
                baselines["vote"] = await self._score(f"majority vote of {votes.size - 1} x {alias}", votes)
        return best, baselines

    async def _score(self, name: str, candidate: CandidateGraph) -> TestScore:
        observation = await self.evaluator.evaluate(candidate, self.test, kind="test", iteration=-1)
        return TestScore(
            name, candidate, observation.accuracy, observation.n_items, observation.compute, observation.latency_s
        )
