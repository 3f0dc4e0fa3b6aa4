"""The evaluation engine: run a graph over many task items concurrently, score, record, resume.

An evaluation is a stored run (`kind = "eval"`) whose config holds everything needed to rebuild it
(the graph's YAML, the task spec, sample size and seed), so `--resume RUN_ID` continues from the
database alone: items already answered are not asked again (an answered but unscored item is only
scored), and items interrupted mid-graph replay their finished calls from the response cache. A
resume with `retry_errors` also asks again the items whose model calls failed (a server down for a
while): their calls that answered replay from the cache.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from agentscale.errors import AgentScaleError
from agentscale.evaluate.item_records import (
    DiscussionStats,
    HandbookUse,
    asked_again_on_retry,
    discussion_stats,
    ended_early,
    handbook_use_of,
)
from agentscale.evaluate.stats import percentile, wilson_interval
from agentscale.executors import Executor, ExecutorConfig, LocalExecutor, create_executor
from agentscale.graphs.result import Usage
from agentscale.graphs.simulated import spec_is_simulated
from agentscale.graphs.validate import load_spec_text
from agentscale.memory.handbook import check_usable
from agentscale.memory.inject import record_outcome, stored_use, take_back_use, with_handbook
from agentscale.models.gateway import Gateway, store_of
from agentscale.models.pull import graph_not_pulled, refuse_unpulled
from agentscale.runtime.execute import check_callback
from agentscale.runtime.graph import Graph
from agentscale.storage import storage_errors_said
from agentscale.storage.owner import claim_in_this_process
from agentscale.storage.tables import RunItem
from agentscale.tasks import Task, TaskItem, load_task
from agentscale.tasks.registry import (
    moved_task_file,
    refuse_a_changed_task_file,
    refuse_a_missing_task_file,
    stable_task_spec,
    task_file_digest,
)
from agentscale.tasks.scoring import ascore


@dataclass
class ItemResult:
    """One scored item: its question and `reference`, the graph's `answer` (None: it gave none), the
    scorer's verdict (`correct`, `detail`: why), the item's `usage`, and `stopped_reason` when its
    graph did not finish normally (a budget, a failed output node)."""

    item_id: str
    question: str
    reference: str
    answer: str | None
    correct: bool
    detail: str
    usage: Usage
    stopped_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def first_unanswered(items: Sequence[ItemResult]) -> ItemResult | None:
    """The first of `items` when every one stopped with no model call answered (a missing key, a
    server down, a misspelt model, a budget below every first call), else None."""
    if items and all(item.stopped_reason and not item.usage.calls + item.usage.cached_calls for item in items):
        return items[0]
    return None


@dataclass
class EvalSummary:
    """An eval's totals over every scored item (resumed parts included): `correct` of `n` (`accuracy`,
    `ci95` a Wilson interval), `usage` summed, each item's wall-clock latency, the `items`, and the
    items whose model calls failed (`call_failures`); `to_dict()` is what `eval --json` prints."""

    run_id: str | None
    task: str
    n: int
    correct: int
    usage: Usage
    latencies: list[float] = field(default_factory=list)
    items: list[ItemResult] = field(default_factory=list)
    call_failures: dict[str, str] = field(default_factory=dict)  # item id -> its first failed call ('node: error')
    # item id -> its first reply cut at max_tokens ('node: cut at N tokens'): its answer may be cut short
    cut_replies: dict[str, str] = field(default_factory=dict)
    # a graph with `memory:`: how many questions were shown behaviors, and how many cited one (retrieval
    # can find nothing for most questions, and the run looked the same as one that drew on the handbook)
    handbook_use: HandbookUse | None = None
    discussions: DiscussionStats | None = None  # a `coordinator:` graph's rounds, CEO stops, fallbacks
    # the graph's models include simulated ones: its figures are the simulator's, no model's accuracy
    # (only `eval --json` said so, and an app reading `to_dict()` got them unlabelled)
    simulated: bool = False

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    @property
    def unfinished(self) -> list[ItemResult]:
        """Items whose graph did not finish normally (a failed call, a budget cap): scored as they ended,
        which is usually wrong, so a report must say how many there were and why. A cap passed by the
        calls' actual usage alone is no cut: that graph ran to its end."""
        return [item for item in self.items if ended_early(item.stopped_reason)]

    @property
    def nothing_answered(self) -> ItemResult | None:
        """The first item when no item finished and no model call answered (`first_unanswered`): the
        run's 0% measures the setup, not the graph, and a script reading the accuracy must not take it
        for a result."""
        return first_unanswered(self.items)

    @property
    def answered_despite_failures(self) -> list[ItemResult]:
        """Items that finished although some of their model calls failed (a vote of 5 samples that
        answered with 3): their verdict measures a smaller graph than the one evaluated."""
        cut = {item.item_id for item in self.unfinished}
        return [item for item in self.items if item.item_id in self.call_failures and item.item_id not in cut]

    @property
    def retryable(self) -> list[ItemResult]:
        """Items a resume with `retry_errors` asks again: a model call failed, and no budget stopped
        them (a budget's refusal would stop them again)."""
        failed = self.call_failures
        return [item for item in self.items if asked_again_on_retry(item.item_id in failed, item.stopped_reason)]

    def to_dict(self, *, include_items: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "task": self.task,
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "usage": self.usage.to_dict(),
            "latency": {  # wall clock per item (a cache replay is faster), and the modelled critical path (it is not)
                "mean_s": sum(self.latencies) / len(self.latencies) if self.latencies else 0.0,
                "p95_s": percentile(self.latencies, 95),
                "critical_path_mean_s": (
                    sum(item.usage.critical_path_s for item in self.items) / len(self.items) if self.items else 0.0
                ),
            },
            "cache_hits": self.usage.cached_calls,
            "unfinished": len(self.unfinished),
            "items_with_failed_calls": len(self.call_failures),
            "items_with_cut_replies": len(self.cut_replies),  # a reply stopped at max_tokens
            "items_to_retry": len(self.retryable),  # what --retry-errors asks again (not those a budget stopped)
            # no item finished and no call answered: the accuracy measures the setup (a server down), not the graph
            "nothing_answered": self.nothing_answered is not None,
            "simulated": self.simulated,
        }
        if self.handbook_use is not None:
            data["handbook_use"] = self.handbook_use.to_dict()
        if self.discussions is not None:
            data["discussions"] = self.discussions.to_dict()
        if include_items:
            data["items"] = [item.to_dict() for item in self.items]
        return data


async def evaluate_items(
    graph: Graph,
    task: Task,
    items: Sequence[TaskItem],
    *,
    run_id: str | None = None,
    concurrency: int = 8,
    on_item: Callable[[ItemResult], None] | None = None,
    item_prefix: str = "",
    executor: Executor | None = None,
    answered: Mapping[str, RunItem] | None = None,
) -> list[ItemResult]:
    """Answer and score `items` with `graph` (at most `concurrency` questions at once per worker).

    Items are recorded under `item_prefix + item.id` (the optimizer evaluates many graphs per run).
    `executor` decides where each item's graph runs (default: this process); scoring, recording
    the verdict and `on_item` stay here, so progress and results look the same whatever runs items.
    `answered`: the stored rows (by item id) of items answered but not scored before an
    interruption (an eval's resume): they are scored, not asked again.

    A scorer that can block (code scorers execute tests in subprocesses) runs in a worker thread, so
    the event loop that drives the other items' model calls goes on (`tasks.scoring.ascore`).
    """
    executor = executor or LocalExecutor()
    executor.check(graph)
    await executor.start()
    semaphore = asyncio.Semaphore(executor.slots(concurrency))
    store = graph.store

    def verdict(key: str, item: TaskItem, correct: bool, detail: str) -> None:
        if store is not None and run_id is not None:
            store.score_item(run_id, key, reference=item.reference, correct=correct, detail=detail)

    async def ask(item: TaskItem) -> ItemResult:
        key = item_prefix + item.id
        result = await executor.run_item(graph, item.question, run_id=run_id, item_key=key, record=run_id is not None)
        score = await ascore(task, result.answer, item)
        verdict(key, item, score.correct, score.detail)
        if store is not None and run_id is not None:
            record_outcome(store, result.memory_use(), score.correct)  # behaviors cited in a correct / wrong answer
        return ItemResult(
            item.id,
            item.question,
            item.reference,
            result.answer,
            score.correct,
            score.detail,
            result.usage,
            result.stopped_reason,
        )

    async def score_stored(item: TaskItem, row: RunItem) -> ItemResult:
        score = await ascore(task, row.answer, item)
        verdict(row.item_key, item, score.correct, score.detail)
        if store is not None:  # its citations were counted when answered, their outcome is counted now
            record_outcome(store, stored_use(row), score.correct)
        return _item_result(item, row, score.correct, score.detail)

    async def one(item: TaskItem) -> ItemResult:
        row = answered.get(item.id) if answered else None
        async with semaphore:
            outcome = await (ask(item) if row is None else score_stored(item, row))
        if on_item is not None:
            on_item(outcome)
        return outcome

    running = [asyncio.ensure_future(one(item)) for item in items]
    try:
        return list(await asyncio.gather(*running))
    except BaseException:
        # gather does not cancel the siblings of a failed task: stop them, so an interrupted eval
        # makes no further calls behind the caller's back
        for pending in running:
            pending.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise


DEFAULT_EVAL_CONCURRENCY = 8


def check_concurrency(concurrency: int) -> None:
    """Items at once must be a whole number of at least 1: 0 waited forever on a semaphore no item
    could take, a negative count raised asyncio's ValueError, both after the run was stored; "8" was
    a comparison's TypeError, and nan ran every item at once and was stored as NaN (not JSON)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int):
        raise AgentScaleError(f"concurrency must be a whole number (got {concurrency!r})")
    if concurrency < 1:
        raise AgentScaleError(f"concurrency must be at least 1 (got {concurrency})")


@dataclass(frozen=True)
class EvalConfig:
    """What an eval run stores so it can be rebuilt and resumed: the `task` (a built-in name or a
    JSONL file), `n` items sampled with `seed` (None: all), the `scorer` (a file's; None: inferred),
    items at once (`concurrency`), a `handbook` to draw on, generator `options`, where items run
    (`executor`), whether its calls used the response cache (`response_cache`: the gateway's, stored
    when the run is made, so that `eval --resume` of a `--no-cache` run asks its models again rather than
    mix fresh and cached answers) and the task file's digest. `split` instead of a sample: the test part of
    `Task.split(seed, train=..., dev=..., test=...)` given as `{"seed", "train", "dev", "test"}`, the
    very items an optimization scored its crowned graph on (`agentscale eval --split-of RUN`)."""

    task: str
    n: int | None = None
    seed: int = 0
    scorer: str | None = None
    concurrency: int = DEFAULT_EVAL_CONCURRENCY  # items at once per worker (the local executor is one worker)
    handbook: str | None = None  # run the graph with `memory: {handbook: ...}`
    options: dict[str, Any] = field(default_factory=dict)  # task generator options (reasoning-gym config)
    executor: dict[str, Any] = field(default_factory=dict)  # ExecutorConfig.to_dict(); {} = local
    task_sha256: str | None = None  # a task file's contents when the run was made (None: a named task)
    split: dict[str, int] | None = None  # the test part of this split, not a sample of n
    response_cache: bool = True  # the run's gateway's `cache` setting when the run was made

    def __post_init__(self) -> None:
        """A Path for `task`, and the executor's config object rather than its dict, are what a caller
        has at hand: taken (they failed deep inside, on `.strip` and on `**`); other types are named."""
        if isinstance(self.task, os.PathLike):
            object.__setattr__(self, "task", os.fspath(self.task))
        if not isinstance(self.task, str):
            raise TypeError(f"EvalConfig.task: a task name or a JSONL file's path, not {type(self.task).__name__}")
        check_concurrency(self.concurrency)
        if isinstance(self.executor, ExecutorConfig):
            object.__setattr__(self, "executor", self.executor.to_dict())
        ExecutorConfig.from_dict(self.executor)  # checks the kind and the workers, before any run is stored
        if self.split is not None:
            _check_split(self.split, self.n, self.seed)

    def load(self, *, stored: bool = False) -> Task:
        """The items to evaluate; `stored`: a resumed run's (see `load_task`)."""
        task = load_task(self.task, scorer=self.scorer, stored=stored, options=self.options)
        if self.split is None:
            return task.sample(self.n, self.seed)
        sizes = dict(self.split)
        return task.split(sizes.pop("seed"), **sizes).test

    @property
    def executor_config(self) -> ExecutorConfig:
        return ExecutorConfig.from_dict(self.executor)


_SPLIT_KEYS = ("seed", "train", "dev", "test")


def _check_split(split: dict[str, int], n: int | None, seed: int) -> None:
    """`EvalConfig.split` names a whole split, and then the sample's `n` and `seed` mean nothing."""
    if not isinstance(split, dict) or sorted(split) != sorted(_SPLIT_KEYS):
        raise ValueError(f"EvalConfig.split: a dict of exactly {', '.join(_SPLIT_KEYS)}, not {split!r}")
    wrong = [k for k in _SPLIT_KEYS if isinstance(split[k], bool) or not isinstance(split[k], int) or split[k] < 0]
    if wrong:
        raise ValueError(f"EvalConfig.split: {', '.join(wrong)} must be non-negative integers, not {split!r}")
    if n is not None or seed != 0:
        raise ValueError("EvalConfig.split evaluates that split's whole test part: leave n and seed (a sample's) out")


class Evaluation:
    """An eval run: create or resume, then `await evaluation.run()`.

    The executor comes from `config.executor` unless one is given (the caller then closes it);
    `executor` given to `resume` runs a resumed eval elsewhere than it was stored with. `retry_errors` (a
    resume): the items whose model calls failed are asked again (`EvalSummary.retryable`), not kept
    as they ended.
    """

    def __init__(
        self,
        graph: Graph,
        config: EvalConfig,
        run_id: str | None = None,
        *,
        executor: Executor | None = None,
        retry_errors: bool = False,
    ) -> None:
        """`graph` answers in the task's format: a graph built for another (or without the config's
        handbook) is built again from its spec, so a caller need not load the task first."""
        if not isinstance(graph, Graph):  # a path failed on "'str' object has no attribute 'runtime'"
            raise TypeError(f"Evaluation takes a Graph (agentscale.load(path)), not {type(graph).__name__}")
        if not isinstance(config, EvalConfig):
            raise TypeError(f"Evaluation's config is an EvalConfig(task=...), not {type(config).__name__}")
        if run_id is None and config.n is not None and not isinstance(config.n, bool) and config.n == 0:
            raise AgentScaleError("EvalConfig.n=0 evaluates no item: give at least 1, or None for all")
        on_ray = (executor.config() if executor is not None else config.executor_config).kind == "ray"
        if run_id is None and not on_ray:  # before its run and executor exist; Ray's workers pull their own
            refuse_unpulled(graph_not_pulled(graph.spec), "evaluated")
        self.config = config
        self.retry_errors = retry_errors
        self._owns_executor = executor is None
        self.executor = executor or create_executor(config.executor_config)
        if run_id is not None:
            refuse_a_changed_task_file(config.task, config.task_sha256, run_id, "start a new eval")
        self.task = config.load(stored=run_id is not None)
        if config.handbook is None and graph.runtime.answer_format == self.task.answer_format:
            self.graph = graph
        else:
            spec = graph.spec if config.handbook is None else with_handbook(graph.spec, config.handbook)
            self.graph = Graph(
                spec, gateway=graph.gateway, answer_format=self.task.answer_format, stored=run_id is not None
            )
        spec = self.graph.spec
        store = self.graph.store
        if store is None:
            raise AgentScaleError("an evaluation needs a database (store)")
        self.store = store
        if spec.memory is not None:  # fail before creating the run (a failed run was left per attempt)
            check_usable(store, spec.memory)
        self.executor.check(self.graph)
        if run_id is None:
            if not config.response_cache and self.graph.gateway.settings.cache:  # it was taken, and ignored
                raise AgentScaleError(
                    "EvalConfig.response_cache records the gateway's setting: to answer without the cache, give "
                    "the graph Gateway(store, GatewaySettings(cache=False))"
                )
            digest = task_file_digest(config.task)
            # a file's inferred scorer is stored: the rule may change, and its resume must not score by another
            scorer = config.scorer or (self.task.scorer_name if digest is not None else None)
            stored = replace(
                config,
                task=stable_task_spec(config.task),
                task_sha256=digest,
                scorer=scorer,
                response_cache=self.graph.gateway.settings.cache,
                executor=self.executor.config().to_dict(),  # one given runs it: stored as local, resumed so
            )
            run_id = store.create_run(  # claimed when it runs: made here, it may run in another process
                "eval", graph_name=graph.name, graph_yaml=self.graph.to_yaml(), config=asdict(stored), claim=False
            ).id
        self.run_id = run_id

    @classmethod
    def resume(
        cls,
        run_id: str,
        gateway: Gateway,
        *,
        executor: ExecutorConfig | None = None,
        concurrency: int | None = None,
        task_file: str | os.PathLike[str] | None = None,
        retry_errors: bool = False,
    ) -> Evaluation:
        """Rebuild an eval from the database: the stored graph YAML and task config, not the files.

        The stored executor and concurrency are used unless given (this session only; not stored): both
        change where and how fast items run, not what they answer (`--concurrency` was ignored).
        `task_file`: where the run's task file is now, when it was moved (the same bytes, checked by
        their sha256; a moved file left the run unresumable). `retry_errors`: ask again the items
        whose model calls failed.
        """
        run = store_of(gateway, "resuming an evaluation").refuse_if_busy(run_id)
        if run.kind != "eval":
            raise AgentScaleError(f"{run.made_by()}, not `agentscale eval`")
        if run.graph_yaml is None:
            raise AgentScaleError(f"run {run.id} has no stored graph")
        stored = json.loads(run.config_json)
        if concurrency is not None:  # before the config checks it: a stored 0 is mended by a given value
            stored["concurrency"] = concurrency
        stored["executor"] = ExecutorConfig.from_stored(stored.get("executor")).to_dict()
        config = EvalConfig(**stored)
        if task_file is not None:
            moved = moved_task_file(config.task, config.task_sha256, os.fspath(task_file), run.id)
            config = replace(config, task=moved)
        else:
            refuse_a_missing_task_file(config.task, config.task_sha256, run.id)
        if executor is not None:
            config = replace(config, executor=executor.to_dict())
        graph = Graph(load_spec_text(run.graph_yaml, f"run {run.id}", stored=True), gateway=gateway, stored=True)
        return cls(graph, config, run.id, retry_errors=retry_errors)

    def pending(self) -> list[TaskItem]:
        """The items still to answer (or, answered before an interruption, to score); with
        `retry_errors`, also those whose model calls failed."""
        done = {item.item_key for item in self.store.run_items(self.run_id) if item.correct is not None}
        if self.retry_errors:
            done -= {item.item_id for item in self.summary().retryable}
        return [item for item in self.task.items if item.id not in done]

    async def run(self, on_item: Callable[[ItemResult], None] | None = None) -> EvalSummary:
        """Answer the pending items, then summarise every item of the run."""
        if on_item is not None:
            check_callback(on_item, "on_item")
        with claim_in_this_process(self.store.path, self.run_id), storage_errors_said(self.store.path, "evaluating"):
            return await self._run(on_item)

    async def _run(self, on_item: Callable[[ItemResult], None] | None) -> EvalSummary:
        try:
            self.store.reopen_run(self.run_id)  # first: refused while another process runs it
            if self.retry_errors:  # after the claim: another process may be answering them
                self._forget_retryable()
            try:
                await evaluate_items(
                    self.graph,
                    self.task,
                    self.pending(),
                    run_id=self.run_id,
                    concurrency=self.config.concurrency,
                    on_item=on_item,
                    executor=self.executor,
                    answered={i.item_key: i for i in self.store.run_items(self.run_id) if i.correct is None},
                )
            except BaseException as exc:
                self.store.finish_broken_run(self.run_id, exc)
                raise
        finally:
            if self._owns_executor:
                self.executor.close()
        summary = self.summary()
        first = summary.nothing_answered
        if first is not None:  # stored "done", runs list read it as a run that measured the graph
            error = f"no item finished and no model call answered (first: {first.item_id}: {first.stopped_reason})"
            self.store.finish_run(self.run_id, "failed", summary.to_dict(), error=error)
        else:
            self.store.finish_run(self.run_id, "done", summary.to_dict())
        return summary

    def _forget_retryable(self) -> None:
        """Delete the rows of the items a retry asks again, and take back what they counted in a
        handbook: the new attempt counts its retrievals and citations anew (they were counted twice)."""
        again = {item.item_id for item in self.summary().retryable}
        rows = [row for row in self.store.run_items(self.run_id) if row.item_key in again]
        self.store.forget_items(self.run_id, sorted(again))
        for row in rows:  # after the rows are gone: a crash between counts twice, as before, never takes back twice
            take_back_use(self.store, row)

    def summary(self) -> EvalSummary:
        """Totals over every scored item of the run (resumed parts included)."""
        rows = {row.item_key: row for row in self.store.run_items(self.run_id) if row.correct is not None}
        paid = self.store.paid_calls_by_item(self.run_id)
        usage, latencies, items = Usage(), [], []
        for item in self.task.items:
            row = rows.get(item.id)
            if row is None:
                continue
            result = _item_result(item, row, bool(row.correct), row.detail or "")
            result.usage.count_own_hits_as_calls(paid.get(item.id, 0))
            usage.add(result.usage)
            latencies.append(result.usage.latency_s)
            items.append(result)
        correct = sum(1 for i in items if i.correct)
        failures = self.store.failed_calls_by_item(self.run_id)
        call_failures = {item.item_id: failures[item.item_id] for item in items if item.item_id in failures}
        summary = EvalSummary(self.run_id, self.task.name, len(items), correct, usage, latencies, items, call_failures)
        cut = self.store.cut_calls_by_item(self.run_id)
        summary.cut_replies = {item.item_id: cut[item.item_id] for item in items if item.item_id in cut}
        summary.discussions = discussion_stats(rows[item.item_id].rounds_json for item in items)
        summary.simulated = spec_is_simulated(self.graph.spec)
        if self.graph.spec.memory is not None:
            summary.handbook_use = handbook_use_of(rows[item.item_id].handbook_json for item in items)
        return summary


def _item_result(item: TaskItem, row: RunItem, correct: bool, detail: str) -> ItemResult:
    """A stored item's result, with its verdict."""
    usage = Usage(**json.loads(row.usage_json))
    return ItemResult(item.id, item.question, item.reference, row.answer, correct, detail, usage, row.stopped_reason)
