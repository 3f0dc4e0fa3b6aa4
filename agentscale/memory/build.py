"""Building a handbook: solve → reflect → extract, from a task or from a stored run's traces.

For each item a model solves the question (or, with `--from-run`, the stored solution is taken), then
reflects on the solution (was it right, what was wasteful, which reusable behaviors would have made it
shorter), then extracts `(name, instruction)` behaviors as JSON. Checked behaviors are inserted into
the handbook with deduplication as each item finishes. Every call takes the runtime's one call path
(:class:`~agentscale.runtime.calls.ModelCalls`: response cache, retries, spend ledger under the
build's run id), and each item's three calls are recorded as
node calls (`solve`, `reflect`, `extract`) of a run of kind `handbook`, so `agentscale runs show`
shows what the model said. A failed call or a malformed extraction skips the item and is counted;
it never stops the build.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import partial
from typing import Any

from agentscale.agents.extract import extract_answer
from agentscale.errors import AgentScaleError, ModelCallError
from agentscale.graphs.result import NodeTrace, Usage
from agentscale.graphs.spec import AnswerFormat
from agentscale.memory.build_inputs import output_node
from agentscale.memory.extract import Proposal, check_proposals, contains_answer, extraction_schema
from agentscale.memory.handbook import Handbook, InsertReport
from agentscale.memory.inject import fill, prompt
from agentscale.models.gateway import CallRequest, Gateway
from agentscale.models.pull import not_pulled, refuse_unpulled
from agentscale.models.registry import ResolvedModel
from agentscale.runtime.calls import ModelCalls, calls_usage, record_rows
from agentscale.storage.db import Store
from agentscale.storage.owner import owner_alive
from agentscale.storage.tables import NodeCall, Run, RunItem
from agentscale.tasks import Task, TaskItem
from agentscale.tasks.scoring import ascore


@dataclass(frozen=True)
class BuildSettings:
    """Sampling and limits of the pipeline's calls."""

    temperature: float = 0.0
    max_tokens: int = 1024
    max_behaviors: int = 5  # per item
    concurrency: int = 4  # items in flight
    correct_only: bool = False  # extract only from solutions whose answer was checked correct
    structured_output: bool = False  # send the extraction's JSON schema (vLLM then constrains decoding)


@dataclass
class BuildReport:
    """Counts of one build (what `agentscale handbook build --json` prints)."""

    run_id: str
    handbook: str
    items: int = 0
    solved: int = 0  # items with a solution (solved now or taken from the run)
    correct: int = 0  # solutions checked correct
    unchecked: int = 0  # solutions never checked (a run of questions has no references)
    skipped_wrong: int = 0  # not extracted from (correct_only): checked wrong
    skipped_unchecked: int = 0  # not extracted from (correct_only): never checked (a run of questions)
    failed: int = 0  # a model call failed after its retries
    malformed: int = 0  # extraction replies with no usable JSON
    proposed: int = 0  # behaviors that passed the checks
    added: int = 0
    merged: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    behaviors: int = 0  # in the handbook after the build
    usage: Usage = field(default_factory=Usage)

    @classmethod
    def going_on(cls, run: Run, items_done: int, handbook: str) -> BuildReport:
        """The counts and usage of a stopped build that goes on: those it stored when it stopped
        (Ctrl-C, SIGTERM; they count recorded items only), else (killed) only how many items it
        recorded."""
        stored = json.loads(run.summary_json) if run.summary_json else {}
        counts = {f.name: stored[f.name] for f in fields(cls) if isinstance(stored.get(f.name), int)}
        counts["items"] = items_done
        usage = Usage(**stored["usage"]) if isinstance(stored.get("usage"), dict) else Usage()
        return cls(run.id, handbook, rejected=Counter(stored.get("rejected") or {}), usage=usage, **counts)

    def absorb(self, item: BuildReport) -> None:
        """Add one recorded item's counts and usage. An item counts once its row is written: a
        build stopped mid-item counted it solved (and its calls), then again when it went on
        (16 items, "18 solved")."""
        for f in fields(self):
            value = getattr(item, f.name)
            if isinstance(value, int) and f.name != "behaviors":
                setattr(self, f.name, getattr(self, f.name) + value)
        self.rejected.update(item.rejected)
        self.usage.add(item.usage)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "handbook": self.handbook,
            "items": self.items,
            "solved": self.solved,
            "correct": self.correct,
            "unchecked": self.unchecked,
            "skipped_wrong": self.skipped_wrong,
            "skipped_unchecked": self.skipped_unchecked,
            "failed": self.failed,
            "malformed": self.malformed,
            "proposed": self.proposed,
            "added": self.added,
            "merged": self.merged,
            "rejected": dict(self.rejected),
            "behaviors": self.behaviors,
            "usage": {k: v for k, v in self.usage.to_dict().items() if k != "critical_path_s"},
        }


@dataclass(frozen=True)
class _Source:
    """One item to learn from: the question, its reference (if known) and, from a run, its solution."""

    key: str
    question: str
    reference: str | None
    solution: str | None = None
    answer: str | None = None
    correct: bool | None = None
    item: TaskItem | None = None


class HandbookBuilder:
    """Runs the pipeline for one handbook with one model."""

    def __init__(
        self,
        gateway: Gateway,
        handbook: Handbook,
        model: ResolvedModel,
        settings: BuildSettings | None = None,
        *,
        topic: str | None = None,
        on_item: Callable[[BuildReport], None] | None = None,
    ) -> None:
        if gateway.store is None:
            raise AgentScaleError("building a handbook needs a database (store)")
        self.gateway = gateway
        self.store: Store = gateway.store
        self.handbook = handbook
        self.model = model
        self.settings = settings or BuildSettings()
        self.topic = topic
        self.on_item = on_item
        self.run_id: str | None = None  # the run of the latest build, named when one is interrupted
        self._lock = asyncio.Lock()

    # entry points -----------------------------------------------------------------------------
    async def from_task(self, task: Task, *, config: dict[str, Any] | None = None) -> BuildReport:
        """Solve, reflect on and extract from every item of `task`."""
        sources = [_Source(item.id, item.question, item.reference, item=item) for item in task.items]
        return await self._build(sources, task, {"source": "task", "task": task.name, **(config or {})})

    async def from_run(self, run_id: str, *, config: dict[str, Any] | None = None) -> BuildReport:
        """Reflect on and extract from the answered items of a stored run (no solving)."""
        run = self.store.get_run(run_id)
        sources = stored_solutions(self.store, run)
        if not sources:
            raise AgentScaleError(f"run {run.id} has no answered items with a stored completion to learn from")
        return await self._build(sources, None, {"source": "run", "from_run": run.id, **(config or {})})

    # the pipeline -----------------------------------------------------------------------------
    async def _build(self, sources: list[_Source], task: Task | None, config: dict[str, Any]) -> BuildReport:
        settings = self.settings
        config = {
            **config,
            "handbook": self.handbook.name,
            "model": self.model.route,
            "api_base": self.model.api_base,
            "topic": self.topic,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "max_behaviors": settings.max_behaviors,
            "correct_only": settings.correct_only,
        }
        missing = not_pulled(self.model.route)  # before the handbook and the run exist (left empty and failed)
        refuse_unpulled([missing] if missing is not None else [], "built")
        await asyncio.to_thread(self.handbook.create)
        unfinished = await asyncio.to_thread(self._unfinished_build, config)
        if unfinished is None:
            run = self.store.create_run("handbook", graph_name=None, config=config)
            report = BuildReport(run.id, self.handbook.name)
        else:  # the same build, stopped: go on with the items it has not recorded
            run = unfinished
            self.store.reopen_run(run.id)
            done = {item.item_key for item in self.store.run_items(run.id)}
            sources = [source for source in sources if source.key not in done]
            report = BuildReport.going_on(run, len(done), self.handbook.name)
            if self.on_item is not None:  # the progress starts where the build stopped (it read 0/12)
                self.on_item(report)
        self.run_id = run.id
        semaphore = asyncio.Semaphore(settings.concurrency)

        async def one(source: _Source) -> None:
            async with semaphore:
                await self._item(run.id, source, task, report)
                if self.on_item is not None:
                    self.on_item(report)

        running = [asyncio.ensure_future(one(source)) for source in sources]
        try:
            await asyncio.gather(*running)
        except BaseException as exc:
            for pending in running:
                pending.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self.handbook.row() is not None:  # what it holds now (the summary said 0)
                report.behaviors = len(self.handbook.behaviors())
            self.store.finish_broken_run(run.id, exc, report.to_dict())
            raise
        report.behaviors = len(await asyncio.to_thread(self.handbook.behaviors))
        self.store.finish_run(run.id, "done", report.to_dict())
        return report

    def _unfinished_build(self, config: dict[str, Any]) -> Run | None:
        """The latest build with this very configuration that stopped before its end (interrupted,
        failed, or left running by a process that died), if no later one finished. Running the same command
        again goes on with it: a new run re-proposed every item it had done, and the handbook counted
        their behaviors twice (merged 158 against 78, two sources per item). A build still running in a
        live process is returned too, so that taking it over is refused (`RunBusy`): the same command
        in two terminals did every item twice. Every build of the database is looked at (the latest
        200 runs were: after 200 others the same command proposed every item again), and the model's
        server address is not compared: the response cache does not, and a server moved to another
        port is the usual reason to give another `--api-base`."""
        stored = _same_build(json.loads(json.dumps(config)))  # as stored: a replicas' api_base tuple is a list
        for run in self.store.list_runs(limit=None, kind="handbook"):
            if _same_build(json.loads(run.config_json)) != stored:
                continue
            live = run.status == "running" and owner_alive(run.owner) is True
            return run if run.status in ("interrupted", "failed") or run.process_gone() or live else None
        return None

    async def _item(self, run_id: str, source: _Source, task: Task | None, report: BuildReport) -> None:
        """One item: its calls, then its behaviors and rows; counted into `report` once recorded (a
        build stopped mid-item counted it solved, then again when it went on: 16 items, "18 solved")."""
        tally = BuildReport(run_id, report.handbook)
        proposals, item, traces = await self._attempt(run_id, source, task, tally)
        if tally.usage.cached_calls:  # calls a stopped attempt at this item paid come back from the cache
            paid = await asyncio.to_thread(self.store.paid_calls_by_item, run_id)  # (a query per item was quadratic)
            tally.usage.count_own_hits_as_calls(paid.get(source.key, 0))
        tally.items = 1
        async with self._lock:  # one writer per process; other processes wait on SQLite's write lock
            # a future of the executor, not a task: a loop stopped by a signal (a background build's
            # `kill`) has asyncio.run cancel every task, and a cancelled task's result was lost while
            # its thread went on to add the behaviors and the item's row
            keep = partial(contextvars.copy_context().run, self._keep, proposals, run_id, source.key, traces, item)
            job = asyncio.get_running_loop().run_in_executor(None, keep)
            try:
                inserted = await asyncio.shield(job)
            except asyncio.CancelledError:  # the thread goes on regardless: wait for it, count it, then stop
                while not job.done():  # a build stopping cancels its items more than once
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.shield(job)
                _count_inserted(tally, job.result())
                report.absorb(tally)
                raise
        _count_inserted(tally, inserted)
        report.absorb(tally)

    async def _attempt(
        self, run_id: str, source: _Source, task: Task | None, tally: BuildReport
    ) -> tuple[list[Proposal], RunItem, list[NodeTrace]]:
        """Solve (unless the run gave the solution), reflect and extract, counting into the item's
        `tally`; returns the checked proposals, the item's row and its calls' rows."""
        fmt: AnswerFormat = task.answer_format if task is not None else "text"
        calls = _Calls(ModelCalls(self.gateway, run_id=run_id, item_key=source.key), [])
        solution, answer, correct = source.solution, source.answer, source.correct
        status, proposals = "done", list[Proposal]()
        try:
            if solution is None:
                texts = prompt("solve")
                values = {"question": source.question.strip(), "format": texts["formats"][fmt]}
                solution = await self._call("solve", texts, values, calls)
                answer = extract_answer(solution, fmt)
                if task is not None and source.item is not None:
                    score = await ascore(task, answer, source.item)
                    correct = score.correct
            tally.solved += 1
            tally.correct += bool(correct)
            tally.unchecked += correct is None
            if self.settings.correct_only and correct is None:  # was counted, and said, "wrong"
                tally.skipped_unchecked += 1
                status = "skipped: not checked"
            elif self.settings.correct_only and not correct:
                tally.skipped_wrong += 1
                status = "skipped: not correct"
            else:
                verdicts = prompt("reflect")["verdicts"]
                verdict = verdicts["unknown" if correct is None else "correct" if correct else "wrong"]
                values = {"question": source.question.strip(), "solution": solution.strip(), "verdict": verdict}
                reflection = await self._call("reflect", prompt("reflect"), values, calls)
                values = {
                    "question": source.question.strip(),
                    "reflection": reflection.strip(),
                    "max_behaviors": str(self.settings.max_behaviors),
                }
                schema = extraction_schema(self.settings.max_behaviors) if self.settings.structured_output else None
                reply = await self._call("extract", prompt("extract"), values, calls, json_schema=schema)
                status, proposals = self._checked(run_id, source, reply, answer, tally)
        except ModelCallError as exc:
            tally.failed += 1
            status = f"failed: {exc}"
        finally:  # summed over calls (their latencies overlap when items run concurrently)
            tally.usage.add(calls_usage(calls.traces))
        item = RunItem(
            run_id=run_id,
            item_key=source.key,
            question=source.question,
            answer=answer,
            stopped_reason=None if status == "done" else status,
            reference=source.reference,
            correct=correct,
            detail=status,
        )
        # the rows as before: no FLOPs or price per call (the build's report carries those)
        return proposals, item, [replace(t, flops=0.0, usd=None) for t in calls.traces]

    def _keep(
        self, proposals: list[Proposal], run_id: str, key: str, traces: list[NodeTrace], item: RunItem
    ) -> InsertReport:
        """The item's behaviors, then its rows, in one worker-thread job: a Ctrl-C cannot fall between
        them (it cannot stop a thread), so an item whose behaviors are in the handbook is recorded
        as done, and a build that goes on does not propose them again (they were merged twice)."""
        inserted = self.handbook.add(proposals) if proposals else InsertReport()
        record_rows(self.store, run_id, key, traces, item=item)
        return inserted

    def _checked(
        self, run_id: str, source: _Source, reply: str, answer: str | None, report: BuildReport
    ) -> tuple[str, list[Proposal]]:
        """The item's status and the proposals of the extraction reply that pass the checks."""
        outcome = check_proposals(
            reply,
            answer=source.reference,
            question=source.question,
            run_id=run_id,
            item_id=source.key,
            topic=self.topic,
            max_behaviors=self.settings.max_behaviors,
        )
        if outcome.malformed:
            report.malformed += 1
            return "malformed extraction", []
        if answer is not None and answer != source.reference:  # the model's own answer must not leak either
            leaked = [p for p in outcome.proposals if contains_answer(p.instruction, answer)]
            outcome.proposals = [p for p in outcome.proposals if p not in leaked]
            outcome.rejected["contains_answer"] += len(leaked)
        report.rejected.update(outcome.rejected)
        report.proposed += len(outcome.proposals)
        return "done", outcome.proposals

    async def _call(
        self,
        step: str,
        texts: dict[str, Any],
        values: dict[str, str],
        calls: _Calls,
        *,
        json_schema: dict[str, Any] | None = None,
    ) -> str:
        """One step's call (`solve`, `reflect`, `extract`) traced under the step's name; raises
        ModelCallError when it fails (the item is then skipped)."""
        messages = [
            {"role": "system", "content": fill(texts["system"], values).strip()},
            {"role": "user", "content": fill(texts["user"], values).strip()},
        ]
        request = CallRequest(
            model=self.model,
            messages=messages,
            temperature=self.settings.temperature,
            max_tokens=self.settings.max_tokens,
            json_schema=json_schema,
        )
        trace = NodeTrace(step, step)
        calls.traces.append(trace)
        result = await calls.calls.call(trace, request)
        if result is None:
            raise ModelCallError(trace.error or "the call failed")
        return result.completion


def _same_build(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two builds one: their settings but the model's server address."""
    return {key: value for key, value in config.items() if key != "api_base"}


def _count_inserted(report: BuildReport, inserted: InsertReport) -> None:
    report.added += len(inserted.added)
    report.merged += len(inserted.merged)


@dataclass
class _Calls:
    """One item's model calls (no budget) and their traces, in call order."""

    calls: ModelCalls
    traces: list[NodeTrace]


def _round_of(node_id: str) -> int:
    """A discussion's call `r3.fuse` is of round 3; a DAG's `fuse` of none (0)."""
    head, dot, _ = node_id.partition(".")
    return int(head[1:]) if dot and head.startswith("r") and head[1:].isdigit() else 0


def stored_solutions(store: Store, run: Run) -> list[_Source]:
    """The answered items of a run with the completion that produced each answer.

    The solution is the output node's completion that gave the answer (in a discussion, stored per
    round as `r<k>.<node>`, the latest round's); when no output call gave it (a `vote` makes no call, a
    discussion's round answers with its workers' majority when its aggregator gives none), the
    completion of the first node of the latest round whose answer became the final answer (else the
    last call's). A discussion's CEO and evaluator write decisions and advice, never a solution: a
    build once reflected on a round-1 worker's, on the CEO's JSON, or on an aggregator's "I cannot
    decide", told that it was checked and correct.
    """
    output = output_node(run)
    calls_by_item: dict[str, list[NodeCall]] = {}
    for call in store.node_calls(run.id):
        solving = call.node_id not in ("reflect", "extract") and call.role not in ("ceo", "evaluator")
        if call.status == "ok" and call.completion and solving:
            calls_by_item.setdefault(call.item_key, []).append(call)
    sources = []
    for item in store.run_items(run.id):
        calls = calls_by_item.get(item.item_key, [])
        if item.answer is None or not calls:
            continue
        giving = [c for c in calls if c.answer == item.answer]  # a discussion's aggregator may give none
        outputs = [c for c in giving if c.node_id == output or c.node_id.partition(".")[2] == output]
        latest = max(outputs or giving, key=lambda c: _round_of(c.node_id)) if giving else None  # ties: the first
        chosen = latest or calls[-1]
        sources.append(
            _Source(
                item.item_key,
                item.question,
                item.reference,
                solution=chosen.completion,
                answer=item.answer,
                correct=item.correct,
            )
        )
    return sources
