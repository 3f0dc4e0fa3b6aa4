"""solve → reflect → extract against the scripted server (real HTTP): storage, filters, failures, --from-run."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agentscale import Gateway, Store
from agentscale.errors import AgentScaleError, RunBusy
from agentscale.evaluate.engine import EvalConfig, Evaluation
from agentscale.graphs.spec import ModelSpec
from agentscale.memory import BuildReport, BuildSettings, Handbook, HandbookBuilder, InsertReport, resolve_model
from agentscale.models.registry import ResolvedModel
from agentscale.storage.tables import Run
from agentscale.tasks import Task, load_task
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml
from tests.memory.conftest import EXTRACT, REFLECT, SOLVE, extraction, script_item, write_task
from tests.sim.helpers import DISCUSSION

UNITS = ("behavior_units_first", "Convert every quantity to one unit before combining them.")
ESTIMATE = ("Estimate First", "Estimate the size of the result first so slips stand out.")
CARRY = ("behavior_carry_digits", "Add column by column from the right, carrying tens to the next column.")


def _builder(gateway: Gateway, scripted: ScriptedServer, name: str = "math", **settings: object) -> HandbookBuilder:
    model = resolve_model("hosted_vllm/scripted", api_base=scripted.api_base, aliases=None)
    return HandbookBuilder(gateway, Handbook(gateway.store, name), model, BuildSettings(**settings), topic="arith")  # type: ignore[arg-type]


async def test_build_from_task_stores_checked_behaviors_with_provenance(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    task = load_task(str(write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 15 + 27?", "42")])))
    script_item(
        scripted,
        "What is 3 + 4?",
        solution="3 + 4 = 7.\nFinal answer: 7",
        reflection="Correct, but I recounted twice. Estimating first would have been quicker.",
        reply=extraction(UNITS, ESTIMATE, ("behavior_leak", "Remember that the sum here is 7, always.")),
    )
    script_item(
        scripted,
        "What is 15 + 27?",
        solution="15 + 27 = 43.\nFinal answer: 43",  # wrong
        reflection="The carry was dropped.",
        reply="```json\n"
        + extraction(
            CARRY,
            ("behavior_estimate_first", "Estimate the answer roughly first."),
            ("behavior_own", "Remember that the total for this sum is 43 exactly."),  # the model's own wrong answer
            ("behavior_restated", "Take 15 and add 27 to it, carefully."),  # its question's numbers
        )
        + "\n```",
    )
    report = await _builder(gateway, scripted).from_task(task)

    assert (report.items, report.solved, report.correct, report.malformed, report.failed) == (2, 2, 1, 0, 0)
    assert report.rejected == {"contains_answer": 2, "quotes_question": 1}
    assert (report.proposed, report.added, report.merged, report.behaviors) == (4, 3, 1, 3)
    assert report.usage.calls == 6 and report.usage.completion_tokens > 0

    book = Handbook(store, "math", embedder=None)
    rows = {r.name: r for r in book.behaviors()}
    assert sorted(rows) == ["behavior_carry_digits", "behavior_estimate_first", "behavior_units_first"]
    assert rows["behavior_units_first"].instruction == UNITS[1]
    assert (rows["behavior_carry_digits"].source_run, rows["behavior_carry_digits"].source_item) == (
        report.run_id,
        "q1",
    )
    assert rows["behavior_carry_digits"].topic == "arith"
    estimate = rows["behavior_estimate_first"]
    assert estimate.merged == 1 and sorted(s.item_id or "" for s in book.sources(estimate)) == ["q0", "q1"]

    # the reflection is told whether the answer was right, never the reference itself
    reflects = [r for r in scripted.completion_requests if REFLECT in json.dumps(r["messages"])]
    text = {("3 + 4" in json.dumps(r)): json.dumps(r["messages"]) for r in reflects}
    assert "checked and is correct" in text[True] and "checked and is wrong" in text[False]
    assert "42" not in text[False].replace("15 + 27", "")
    # the build is a stored run with its calls, so `runs show` explains every behavior
    run = store.get_run(report.run_id)
    assert run.kind == "handbook" and run.status == "done"
    assert json.loads(run.summary_json)["added"] == 3
    assert [c.node_id for c in store.node_calls(run.id, "q0")] == ["solve", "reflect", "extract"]
    assert {i.item_key: i.correct for i in store.run_items(run.id)} == {"q0": True, "q1": False}


async def test_malformed_extractions_and_failed_calls_are_skipped_and_counted(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    rows = [("What is 1 + 1?", "2"), ("What is 2 + 2?", "4"), ("What is 5 + 5?", "10"), ("What is 6 + 6?", "12")]
    task = load_task(str(write_task(tmp_path / "t.jsonl", rows)))
    script_item(
        scripted, "What is 1 + 1?", solution="Final answer: 2", reflection="Fine.", reply="Sorry, no JSON today."
    )
    script_item(scripted, "What is 2 + 2?", solution="Final answer: 4", reflection="Fine.", reply='{"behaviors": [')
    scripted.add_rule(Rule(pattern=f"{REFLECT}.*What is 5 \\+ 5", status=500))  # fails after its retries
    script_item(scripted, "What is 6 + 6?", solution="Final answer: 12", reflection="Fine.", reply=extraction(CARRY))
    report = await _builder(gateway, scripted).from_task(task)
    assert (report.items, report.malformed, report.failed, report.added) == (4, 2, 1, 1)
    assert [r.name for r in Handbook(store, "math", embedder=None).behaviors()] == ["behavior_carry_digits"]
    details = {i.item_key: i.detail for i in store.run_items(report.run_id)}
    assert details["q0"] == "malformed extraction" and details["q2"].startswith("failed:") and details["q3"] == "done"
    assert [c.status for c in store.node_calls(report.run_id, "q2")] == ["ok", "failed"]


async def test_correct_only_skips_wrong_solutions(tmp_path: Path, scripted: ScriptedServer, gateway: Gateway) -> None:
    task = load_task(str(write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 15 + 27?", "42")])))
    script_item(scripted, "What is 3 + 4?", solution="Final answer: 7", reflection="ok", reply=extraction(UNITS))
    script_item(scripted, "What is 15 + 27?", solution="Final answer: 41", reflection="ok", reply=extraction(CARRY))
    report = await _builder(gateway, scripted, correct_only=True).from_task(task)
    assert (report.correct, report.skipped_wrong, report.added) == (1, 1, 1)
    extracts = [r for r in scripted.completion_requests if EXTRACT in json.dumps(r["messages"])]
    assert len(extracts) == 1


async def test_build_from_a_stored_eval_run_uses_its_solutions(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    from agentscale import Graph

    data = write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 15 + 27?", "42")])
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"), gateway=gateway
    )
    summary = await Evaluation(graph, EvalConfig(task=str(data))).run()  # default replies: right answers
    assert summary.correct == 2
    scripted.reset()
    script_item(scripted, "What is 3 + 4?", solution="unused", reflection="Right.", reply=extraction(UNITS))
    script_item(scripted, "What is 15 + 27?", solution="unused", reflection="Right.", reply=extraction(CARRY))
    report = await _builder(gateway, scripted).from_run(summary.run_id or "")
    assert (report.items, report.correct, report.added) == (2, 2, 2)
    prompts = [json.dumps(r["messages"]) for r in scripted.completion_requests]
    assert not any(SOLVE in p for p in prompts) and len(prompts) == 4
    reflect = next(p for p in prompts if REFLECT in p and "15 + 27" in p)
    assert "15 + 27 = 42" in reflect and "checked and is correct" in reflect  # the stored completion
    sources = {r.name: r.source_run for r in Handbook(store, "math", embedder=None).behaviors()}
    assert set(sources.values()) == {report.run_id}


async def test_correct_only_names_unchecked_solutions_as_such(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """`--from-run` of a run of questions (no references) with `--correct-only` reported its
    solutions as "wrong"."""
    from agentscale import Graph

    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"), gateway=gateway
    )
    run = store.create_run("run", graph_name="g", graph_yaml=graph.to_yaml())
    for key, question in (("a", "What is 3 + 4?"), ("b", "What is 15 + 27?")):
        await graph.arun(question, run_id=run.id, item_key=key)
    report = await _builder(gateway, scripted, correct_only=True).from_run(run.id)
    assert (report.items, report.skipped_unchecked, report.skipped_wrong, report.proposed) == (2, 2, 0, 0)
    assert {i.detail for i in store.run_items(report.run_id)} == {"skipped: not checked"}
    # counted as such without --correct-only too: "2 items (0 solved correctly)" read as all wrong
    assert (report.correct, report.unchecked, report.to_dict()["unchecked"]) == (0, 2, 2)


async def test_structured_output_sends_the_extraction_schema_only_to_extract(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway
) -> None:
    task = load_task(str(write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7")])))
    script_item(scripted, "What is 3 + 4?", solution="Final answer: 7", reflection="ok", reply=extraction(UNITS))
    report = await _builder(gateway, scripted, structured_output=True, max_behaviors=3).from_task(task)
    assert report.added == 1
    with_schema = [r for r in scripted.completion_requests if "response_format" in r]
    assert len(with_schema) == 1 and EXTRACT in json.dumps(with_schema[0]["messages"])
    schema = with_schema[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["behaviors"]["maxItems"] == 3
    assert schema["properties"]["behaviors"]["minItems"] == 1  # an empty list is what a small model picks
    name = schema["properties"]["behaviors"]["items"]["properties"]["name"]
    assert re.fullmatch(name["pattern"], "behavior_" + "x" * 71) and not re.fullmatch(
        name["pattern"], "behavior_" + "x" * 72
    )
    assert not re.fullmatch(name["pattern"], "behavior_") and not re.fullmatch(name["pattern"], "unit_check")
    # vLLM's xgrammar backend rejects a string schema with a pattern and a length bound together
    strings = [p for p in schema["properties"]["behaviors"]["items"]["properties"].values() if p["type"] == "string"]
    assert all(not ("pattern" in p and ("minLength" in p or "maxLength" in p)) for p in strings)


async def test_a_discussions_solution_is_its_last_rounds_output(tmp_path: Path) -> None:
    """A discussion stores its calls per round (`r2.fuse`): `--from-run` matched none to the output
    `fuse` and reflected on a round-1 worker's completion, or on the CEO's decision."""
    from agentscale import Graph
    from agentscale.memory.build import stored_solutions

    store = Store(tmp_path / "d.db")
    graph = Graph.from_yaml(DISCUSSION, store=store)
    evaluation = Evaluation(graph, EvalConfig(task="sim:math", n=3))
    await evaluation.run()
    run = store.get_run(evaluation.run_id)
    calls = store.node_calls(run.id)
    for source in stored_solutions(store, run):
        fused = [c for c in calls if c.item_key == source.key and c.node_id.endswith(".fuse")]
        last = max(fused, key=lambda c: int(c.node_id.split(".")[0][1:]))
        assert source.solution == last.completion and last.answer == source.answer


def test_a_voted_runs_solution_is_a_solving_call_with_its_answer_else_the_last_call(store: Store) -> None:
    """A vote (the output) makes no call: the solution is the first solving call whose answer became
    the run's answer, never an evaluator's advice even when it named that answer first; when no call's
    answer matches the stored one (the vote normalised "7.0" and "7.00" to "7"), the last call's."""
    from agentscale.graphs.result import NodeTrace
    from agentscale.memory.build import stored_solutions
    from agentscale.runtime.calls import record_rows

    body = "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    body += "  - {id: v, role: vote}\nedges: ['a, b -> v']\n"
    run = store.create_run("run", graph_name="g", graph_yaml=graph_yaml("http://127.0.0.1:9/v1", body))
    said = {
        "q1": [
            ("judge", "evaluator", "42", "42 is right"),
            ("a", "assistant", "41", "a: 41"),
            ("b", "assistant", "42", "b: 42"),
        ],
        "q2": [("a", "assistant", "7.0", "a: 7.0"), ("b", "assistant", "7.00", "b: 7.00")],
    }
    for key, answer in (("q1", "42"), ("q2", "7")):
        traces = [NodeTrace(node, role, completion=text, answer=given) for node, role, given, text in said[key]]
        item = {"run_id": run.id, "item_key": key, "question": f"{key}?", "answer": answer}
        record_rows(store, run.id, key, traces, item=item)
    solutions = {source.key: source.solution for source in stored_solutions(store, run)}
    assert solutions == {"q1": "b: 42", "q2": "b: 7.00"}


def test_a_discussions_solution_is_a_reply_that_gave_its_answer(store: Store) -> None:
    """A round whose aggregator gave no answer answers with its workers' majority: the build reflected
    on the aggregator's "I cannot decide", told it was checked and correct (a new user's walk). The
    solution is the aggregator's latest reply that gave the answer, else the first reply of the latest
    round that gave it (a worker's, or a copy's the CEO added)."""
    from agentscale.graphs.result import NodeTrace
    from agentscale.memory.build import stored_solutions
    from agentscale.runtime.calls import record_rows

    body = "name: g\nnodes:\n  - {id: s1, role: assistant, model: m}\n  - {id: s2, role: assistant, model: m}\n"
    body += "  - {id: f, role: fuser, model: m}\nedges: ['s1, s2 -> f']\ncoordinator: {model: m, max_rounds: 3}\n"
    run = store.create_run("run", graph_name="g", graph_yaml=graph_yaml("http://127.0.0.1:9/v1", body))
    said = {
        "undecided": [
            ("r1.ceo", "ceo", None, '{"decision": "continue"}'),
            ("r1.s1", "assistant", "42", "s1: 42"),
            ("r1.s2", "assistant", "42", "s2: 42"),
            ("r1.f", "fuser", None, "I cannot decide between these candidates."),
        ],
        "fused": [
            ("r1.s1", "assistant", "41", "s1: 41"),
            ("r1.f", "fuser", "42", "f1: 42"),
            ("r2.s1", "assistant", "42", "s1 again: 42"),
            ("r2.s1#2", "assistant", "42", "copy: 42"),
            ("r2.f", "fuser", None, "no idea"),
        ],
    }
    for key, traces in said.items():
        rows = [NodeTrace(node, role, completion=text, answer=given) for node, role, given, text in traces]
        record_rows(store, run.id, key, rows, item={"run_id": run.id, "item_key": key, "question": "?", "answer": "42"})
    solutions = {source.key: source.solution for source in stored_solutions(store, run)}
    assert solutions == {"undecided": "s1: 42", "fused": "f1: 42"}


def _four_sums(tmp_path: Path, scripted: ScriptedServer) -> Task:
    """Four items whose extractions all propose the same behavior: one added, three merged."""
    questions = [(f"What is {i} + 3?", str(i + 3)) for i in range(4)]
    for question, answer in questions:
        script_item(
            scripted, question, solution=f"Final answer: {answer}", reflection="Fine.", reply=extraction(ESTIMATE)
        )
    return load_task(str(write_task(tmp_path / "t.jsonl", questions)))


def _assert_built_once(store: Store, report: BuildReport) -> None:
    """The handbook of an uninterrupted build of `_four_sums`: every item's behavior counted once."""
    assert store.get_run(report.run_id).status == "done"
    assert (report.items, report.added, report.merged) == (4, 1, 3)
    book = Handbook(store, "math", embedder=None)
    estimate = book.behaviors()[0]
    assert estimate.merged == 3 and sorted(s.item_id or "" for s in book.sources(estimate)) == ["q0", "q1", "q2", "q3"]
    assert sorted(i.item_key for i in store.run_items(report.run_id)) == ["q0", "q1", "q2", "q3"]


@pytest.mark.parametrize("case", ["one endpoint", "replicas", "another address", "after 200 other runs"])
async def test_a_stopped_build_goes_on_where_it_stopped_when_run_again(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store, case: str
) -> None:
    """ "Run the same command again to go on" started a new run that proposed every item again: the
    handbook counted the first items' behaviors twice (merged 158 against 78 in a 60-item build).
    Again, the same build goes on in its run with the items it had not recorded, and the handbook
    equals an uninterrupted build's. A model with replicas (its endpoints a tuple, stored as a list)
    never matched its stopped build; nor did one whose server address was written another way (the
    response cache ignores it), nor one stopped 200 runs before."""
    task = _four_sums(tmp_path, scripted)
    moved = scripted.api_base.replace("127.0.0.1", "localhost")
    endpoints = (scripted.api_base, moved)

    def model_at(api_base: str | tuple[str, ...]) -> ResolvedModel:
        return resolve_model(
            "m", api_base=None, aliases={"m": ModelSpec(model="hosted_vllm/scripted", api_base=api_base)}
        )

    model = model_at(endpoints if case == "replicas" else scripted.api_base)

    def builder() -> HandbookBuilder:
        return HandbookBuilder(gateway, Handbook(store, "math"), model, BuildSettings(concurrency=1), topic="arith")

    def stop_after_two(report: object) -> None:
        if getattr(report, "items", 0) == 2:  # as a Ctrl-C stops it, without stopping pytest
            raise RuntimeError("stopped")

    stopped = builder()
    stopped.on_item = stop_after_two
    with pytest.raises(RuntimeError, match="stopped"):
        await stopped.from_task(task)
    assert (
        stopped.run_id is not None and store.get_run(stopped.run_id).status == "failed"
    )  # goes on as an interrupted one does
    if case == "another address":
        model = model_at(moved)
    elif case == "after 200 other runs":
        for _ in range(201):
            store.create_run("eval", graph_name="g", claim=False)
    going_on = builder()
    seen: list[int] = []
    going_on.on_item = lambda report: seen.append(getattr(report, "items", -1))
    report = await going_on.from_task(task)
    assert report.run_id == stopped.run_id and report.proposed == 4
    assert seen == [2, 3, 4]  # the progress starts at the 2 items done (it read 0/4)
    _assert_built_once(store, report)


async def test_a_build_stopped_mid_item_counts_each_item_and_call_once_when_it_goes_on(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """A build stopped while an item's reflection was in flight had counted that item solved; going
    on counted it again (16 items, "18 solved"), and the report kept only the second session's calls."""
    scripted.add_rule(Rule(pattern=f"{REFLECT}.*What is 2 \\+ 3", replies=["Fine."], latency_s=1.0))
    task = _four_sums(tmp_path, scripted)
    model = resolve_model("hosted_vllm/scripted", api_base=scripted.api_base, aliases=None)

    def builder() -> HandbookBuilder:
        return HandbookBuilder(gateway, Handbook(store, "math"), model, BuildSettings(concurrency=1), topic="arith")

    stopped = builder()
    build = asyncio.ensure_future(stopped.from_task(task))
    while not any("What is 2 + 3" in json.dumps(r) and REFLECT in json.dumps(r) for r in scripted.completion_requests):
        await asyncio.sleep(0.02)
    build.cancel()
    with pytest.raises(asyncio.CancelledError):
        await build
    assert stopped.run_id is not None
    interrupted = json.loads(store.get_run(stopped.run_id).summary_json or "{}")
    assert (interrupted["items"], interrupted["solved"], interrupted["usage"]["calls"]) == (2, 2, 6)
    report = await builder().from_task(task)
    assert (report.items, report.solved, report.correct, report.proposed) == (4, 4, 4, 4)
    assert (report.usage.calls, report.usage.cached_calls) == (12, 0)  # q2's solve: paid before the stop
    assert report.usage.tokens == store.spend(report.run_id)["tokens"]
    _assert_built_once(store, report)


async def test_the_same_build_running_in_another_live_process_is_refused(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """The same `handbook build` in two terminals did every item twice (merged 124 where 62 was
    right): the second saw the first's run as live and started a run of its own."""
    task = _four_sums(tmp_path, scripted)
    model = resolve_model("hosted_vllm/scripted", api_base=scripted.api_base, aliases=None)

    def builder() -> HandbookBuilder:
        return HandbookBuilder(gateway, Handbook(store, "math"), model, BuildSettings(concurrency=1), topic="arith")

    def stop_after_two(report: object) -> None:
        if getattr(report, "items", 0) == 2:
            raise RuntimeError("stopped")

    first = builder()
    first.on_item = stop_after_two
    with pytest.raises(RuntimeError, match="stopped"):
        await first.from_task(task)
    assert first.run_id is not None
    other = subprocess.Popen(  # another live process, as the run's owner
        [
            sys.executable,
            "-c",
            "from agentscale.storage.owner import current_owner; print(current_owner(), flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None
        owner = other.stdout.readline().strip()
        with store.session() as session:
            run = session.get(Run, first.run_id)
            assert run is not None
            run.status, run.owner = "running", owner
            session.add(run)
            session.commit()
        # "resume again" sent the user to a --resume a build does not have
        with pytest.raises(RunBusy, match=f"run {first.run_id} is being run by .* and try again$"):
            await builder().from_task(task)
    finally:
        other.kill()
        other.wait()
    assert [r.id for r in store.list_runs() if r.kind == "handbook"] == [first.run_id]  # no second run
    report = await builder().from_task(task)  # its owner gone: the build goes on in its run
    assert report.run_id == first.run_id
    _assert_built_once(store, report)


@pytest.mark.parametrize("cancelled", ["the build", "every task"])
async def test_a_build_cancelled_while_it_stores_an_items_behaviors_records_the_item(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store, cancelled: str
) -> None:
    """A Ctrl-C while a worker thread added an item's behaviors left the item without its row (the
    thread went on, the row was never written): going on proposed it again (sources q0, q0, q1).
    `every task`: a `kill` of a build run in a script's background (SIGINT ignored) stops the loop, and
    asyncio.run cancels every task, the thread's own: the item was recorded but not counted, and
    the build that went on said "added 0" of the behaviors it had added (a new user's walk)."""
    task = _four_sums(tmp_path, scripted)
    before = asyncio.all_tasks()
    adding, release = threading.Event(), threading.Event()

    class SlowHandbook(Handbook):
        def add(self, *args: Any, **kwargs: Any) -> InsertReport:
            adding.set()
            release.wait(10)
            return super().add(*args, **kwargs)

    model = resolve_model("hosted_vllm/scripted", api_base=scripted.api_base, aliases=None)
    slow = HandbookBuilder(gateway, SlowHandbook(store, "math"), model, BuildSettings(concurrency=1), topic="arith")
    build = asyncio.ensure_future(slow.from_task(task))
    await asyncio.to_thread(adding.wait, 10)
    for stopped in asyncio.all_tasks() - before - {asyncio.current_task()} if cancelled == "every task" else [build]:
        stopped.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await build
    await asyncio.sleep(0.5)  # the worker thread finishes its job: the behaviors and the item's row
    report = await _builder(gateway, scripted, concurrency=1).from_task(task)
    _assert_built_once(store, report)


async def test_an_interrupted_build_stores_how_many_behaviors_its_handbook_holds(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """Its stored summary said "behaviors": 0 beside "added": 2: the count was taken at the end only."""
    task = load_task(str(write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7"), ("What is 5 + 6?", "11")])))
    script_item(scripted, "What is 3 + 4?", solution="Final answer: 7", reflection="ok", reply=extraction(CARRY, UNITS))
    scripted.add_rule(Rule(pattern=r"What is 5 \+ 6", latency_s=30.0))
    builder = _builder(gateway, scripted, concurrency=1)
    build = asyncio.ensure_future(builder.from_task(task))
    while not (builder.run_id and store.run_items(builder.run_id)):
        await asyncio.sleep(0.05)
    build.cancel()
    with pytest.raises(asyncio.CancelledError):
        await build
    summary = json.loads(store.get_run(builder.run_id).summary_json)
    assert (summary["added"], summary["behaviors"]) == (2, 2)


async def test_a_build_on_a_bundled_model_not_pulled_here_leaves_nothing_behind(
    tmp_path: Path, gateway: Gateway, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's first handbook line with the 1.5B not pulled stopped at its first call, leaving an
    empty handbook (a later `eval --handbook` then refused it as empty) and a failed build run."""
    from agentscale.models import catalog
    from tests.models.test_weights import fake_model

    model = fake_model("unpulled_curator")  # its parts' packages exist nowhere
    monkeypatch.setitem(catalog.BUNDLED, model.name, model)
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    curator = resolve_model(f"local/{model.name}", aliases=None)
    builder = HandbookBuilder(gateway, Handbook(store, "math"), curator, BuildSettings())
    task = load_task(str(write_task(tmp_path / "t.jsonl", [("What is 3 + 4?", "7")])))
    with pytest.raises(
        AgentScaleError, match=f"local/{model.name} is not pulled .* here; get it with .*nothing was built"
    ):
        await builder.from_task(task)
    assert not Handbook(store, "math").exists() and store.list_runs() == []
