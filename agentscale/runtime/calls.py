"""The one path of every model call, and the one recorder of a question's rows.

:class:`ModelCalls` is what a run (a DAG run, a discussion), a handbook build or the optimizer's
feedback agent calls models through: it gives identical sampled requests their sample slots, reserves
the call's worst case in the run's budget ledger and settles it, calls the gateway (cache, retries,
spend ledger under the run id) and writes the outcome into the call's :class:`NodeTrace`. Callers
keep only what differs: how they build the prompt and what they make of the reply.

:func:`record_rows` writes what a question produced — its calls, its item, and for a
single-question run the run row — in one transaction; :func:`record_result` does it for a graph's
:class:`RunResult`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Hashable, Iterable
from dataclasses import replace
from typing import Any

from agentscale.errors import BudgetExceeded, ModelCallError
from agentscale.graphs.result import NodeTrace, RunResult, Usage
from agentscale.graphs.spec import Budget
from agentscale.models.budget import CallTime, RunLedger, Spend, cut_after_overrun, is_overrun
from agentscale.models.cost import call_usd, estimate_prompt_tokens, known_total, model_flops
from agentscale.models.gateway import CallRequest, CallResult, Gateway
from agentscale.models.registry import ResolvedModel
from agentscale.storage import sqlite_failure
from agentscale.storage.db import Row, Store, as_row, broken_status
from agentscale.storage.tables import NodeCall, Run, RunItem, utcnow

RunValues = dict[str, Any]
"""A single-question run's row as column values (`id`, `kind`, `graph_name`, ...): written with the
question's other rows when it finishes, or alone when it is interrupted."""


class SampleSlots:
    """Identical sampled requests in one run get indexes 0, 1, 2... so each has its own cache slot
    (five equal assistants at temperature > 0 are five samples, and a re-run replays all five)."""

    def __init__(self) -> None:
        self._used: Counter[str] = Counter()

    def assign(self, request: CallRequest) -> CallRequest:
        if request.temperature <= 0:
            return request
        key = request.cache_key()
        index = self._used[key]
        self._used[key] += 1
        return replace(request, sample_index=index)


class ModelCalls:
    """One run's calls: its sample slots, its budget ledger, the gateway and the run id and item key
    they are entered under. A refusal by the budget sets `stopped_reason` (the first one is kept)."""

    def __init__(
        self, gateway: Gateway, budget: Budget | None = None, run_id: str | None = None, item_key: str | None = None
    ) -> None:
        self.gateway = gateway
        self.run_id = run_id
        self.item_key = item_key
        self.ledger = RunLedger(budget)
        self.stopped_reason: str | None = None
        self._samples = SampleSlots()

    async def call(
        self, trace: NodeTrace, request: CallRequest, starts_at_s: float = 0.0, step: Hashable | None = None
    ) -> CallResult | None:
        """Reserve the call's projected spend, call, settle; the outcome lands in `trace` (`skipped`
        when the budget refuses it, `failed` on a call error: then None is returned). `starts_at_s`:
        the call's start on the run's modelled clock (its inputs' latest finish), which a latency
        cap is checked against when later than the wall clock. `step`: the calls the run starts side
        by side (a DAG's level), which count each other at their worst case (`RunLedger.reserve`)."""
        model = request.model
        request = self._samples.assign(request)
        trace.route, trace.messages = model.route, request.messages
        projected = spend_of(model, estimate_prompt_tokens(request.messages), request.max_tokens)
        try:
            reservation = self.ledger.reserve(projected, starts_at_s, step)
        except BudgetExceeded as exc:
            trace.status, trace.error = "skipped", str(exc)
            self._stop(exc)
            return None
        started = time.perf_counter()
        try:
            result = await self.gateway.complete(
                request,
                node=trace.node_id,
                clock=CallTime(self.ledger, starts_at_s),
                run_id=self.run_id,
                item_key=self.item_key,
            )
        except ModelCallError as exc:
            self.ledger.settle(reservation, None)
            trace.status, trace.error = "failed", str(exc)
            # the attempts' time (a trace read 0.0 s), without the wait for the endpoint's slot when
            # the gateway knows it, as an answered call's latency is
            trace.latency_s = exc.latency_s if exc.latency_s is not None else time.perf_counter() - started
            if exc.out_of_time:  # the run's time cap ended the call: the run says so, as for a refusal
                self._stop(self.ledger.time_is_up(starts_at_s))
            return None
        actual = spend_of(model, result.prompt_tokens, result.completion_tokens)
        self.ledger.settle(reservation, actual)
        self.stopped_reason = (
            self.stopped_reason or self.ledger.overrun() or self.ledger.late(starts_at_s + result.latency_s)
        )
        trace.completion = result.completion
        trace.prompt_tokens, trace.completion_tokens = result.prompt_tokens, result.completion_tokens
        trace.flops, trace.usd = actual.flops if model.params_b is not None else None, actual.usd
        trace.latency_s, trace.cached = result.latency_s, result.cached
        trace.truncated = result.finish_reason == "length"
        if not result.completion:  # paid, and counted, but no answer: a failure, asked again by --retry-errors
            trace.status, trace.error = "failed", _no_text(result)
            return None
        return result

    def _stop(self, refusal: BudgetExceeded) -> None:
        if self.stopped_reason is None:
            self.stopped_reason = str(refusal)
        elif is_overrun(self.stopped_reason):  # a cut is what ended the run; the overrun stays said
            self.stopped_reason = cut_after_overrun(str(refusal), self.stopped_reason)


def _no_text(result: CallResult) -> str:
    """Why a reply the server sent whole held no text to read an answer from: it was taken as an
    answered call with no answer, so an eval scored it wrong and `--retry-errors` never asked again."""
    why = {
        "stop": "",
        "length": ": it reached max_tokens first (a reasoning model may spend them all before answering)",
        "tool_calls": ": it asked for a tool call instead",
        "content_filter": ": the provider's content filter held it back",
    }.get(result.finish_reason or "", f" (finish_reason: {result.finish_reason})" if result.finish_reason else "")
    return f"the model returned no text{why}"


def spend_of(model: ResolvedModel, prompt_tokens: int, completion_tokens: int) -> Spend:
    flops = model_flops(model, prompt_tokens, completion_tokens)
    return Spend(prompt_tokens, completion_tokens, flops or 0.0, call_usd(model, prompt_tokens, completion_tokens))


def calls_usage(traces: Iterable[NodeTrace]) -> Usage:
    """Calls, tokens, FLOPs and USD of the model calls that answered (latency summed over them), a
    reply with no text among them: the server answered it, and was paid."""
    called = [t for t in traces if t.route is not None and (t.status == "ok" or t.prompt_tokens)]
    return Usage(
        calls=sum(1 for t in called if not t.cached),
        cached_calls=sum(1 for t in called if t.cached),
        prompt_tokens=sum(t.prompt_tokens for t in called),
        completion_tokens=sum(t.completion_tokens for t in called),
        flops=known_total(t.flops for t in called),
        usd=known_total(t.usd for t in called),
        latency_s=sum(t.latency_s for t in called),
    )


def call_row(run_id: str, item_key: str, trace: NodeTrace) -> Row:
    """The stored form of a node's trace (a `nodecall` row)."""
    return NodeCall, {
        "run_id": run_id,
        "item_key": item_key,
        "node_id": trace.node_id,
        "role": trace.role,
        "route": trace.route,
        "status": trace.status,
        "messages_json": json.dumps(trace.messages),
        "completion": trace.completion,
        "answer": trace.answer,
        "prompt_tokens": trace.prompt_tokens,
        "completion_tokens": trace.completion_tokens,
        "flops": trace.flops or 0.0,
        "usd": trace.usd,
        "latency_s": trace.latency_s,
        "cached": trace.cached,
        "error": trace.error,
        "truncated": trace.truncated,
    }


def record_rows(
    store: Store,
    run_id: str,
    item_key: str,
    traces: Iterable[NodeTrace],
    *,
    item: RunItem | dict[str, Any] | None = None,
    run_row: Run | RunValues | None = None,
) -> None:
    """A question's rows in one transaction: the run (a single-question run's), its calls, its item
    (`item` and `run_row` as model instances or as their column values).

    Completions are already safe in the response cache, so a crash mid-question loses no paid work,
    and one commit instead of one per call keeps the per-call overhead low."""
    rows = [call_row(run_id, item_key, t) for t in traces]
    if item is not None:
        rows.append((RunItem, item) if isinstance(item, dict) else as_row(item))
    if run_row is not None:
        rows.insert(0, (Run, run_row) if isinstance(run_row, dict) else as_row(run_row))
    store.insert(rows)


def record_result(store: Store, result: RunResult, item_key: str, run_row: RunValues | None = None) -> None:
    """A graph's answer to one question, recorded under `result.run_id` (a DAG run or a discussion;
    `run_row` is written done, with the usage, and the rounds of a discussion, as its summary). A
    discussion's rounds are kept with its item too: an eval's or a batch's items had only their calls,
    and the CEO's decisions were lost."""
    assert result.run_id is not None
    usage = result.usage.to_dict()
    rounds = None if result.rounds is None else [r.to_dict() for r in result.rounds]
    item = {
        "run_id": result.run_id,
        "item_key": item_key,
        "question": result.question,
        "answer": result.answer,
        "stopped_reason": result.stopped_reason,
        "usage_json": json.dumps(usage),
        "rounds_json": None if rounds is None else json.dumps(rounds),
        "handbook_json": None if result.handbook is None else json.dumps(result.memory_use()),
    }
    if run_row is not None:
        summary: dict[str, object] = {"n": 1, "usage": usage}
        if rounds is not None:
            summary["rounds"] = rounds
        # a question left without an answer (every node failed, a budget stopped it first) is a failed run
        answered = result.answer is not None
        status, error = ("done", None) if answered else ("failed", f"no answer: {result.stopped_reason}")
        run_row = {
            **run_row,
            "status": status,
            "error": error,
            "finished": utcnow(),
            "summary_json": json.dumps(summary),
        }
    record_rows(store, result.run_id, item_key, result.trace, item=item, run_row=run_row)


def record_broken(
    store: Store | None,
    run_row: RunValues | None,
    exc: BaseException,
    item_key: str,
    traces: Iterable[NodeTrace],
    question: str,
) -> None:
    """A single-question run that `exc` ended before its answer: keep the run row, interrupted (Ctrl-C,
    a cancel, a served request's client gone) or failed with the error (`broken_status`), with the
    node calls that had finished (`traces`): they were paid, and `runs show` said "no items
    recorded" beside a ledger that counted them; its summary keeps the `question`, which no item row
    holds then. A stop that lands after the answer was recorded (a cancel between the output's row
    and the graph's return) leaves the rows as they are, done. Nothing is written when the database
    itself failed (`exc`): the write would wait out the same lock and hide the error under its own."""
    if store is None or run_row is None or sqlite_failure(exc) is not None or store.has_run(run_row["id"]):
        return
    status, error = broken_status(exc)
    broken = {**run_row, "status": status, "error": error, "summary_json": json.dumps({"question": question})}
    record_rows(store, run_row["id"], item_key, traces, run_row=broken)
