"""The eval engine over real HTTP: scoring, recording, cache, resume (also after kill -9)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from agentscale import Gateway, GatewaySettings, Graph, RunBusy, Store
from agentscale.errors import AgentScaleError
from agentscale.evaluate.engine import EvalConfig, Evaluation
from agentscale.evaluate.stats import percentile, wilson_interval
from agentscale.executors import ExecutorConfig
from agentscale.report.items import read_items
from agentscale.tasks import TaskScorerError, load_task
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml, with_default_sigint


class _Stop(Exception):
    """Stops a run from inside (a real KeyboardInterrupt would stop pytest itself): the run is
    `failed`, which resumes as an interrupted one does."""


ONE_NODE = "name: ev\nnodes:\n  - {id: a, role: assistant, model: m}\n"


def _questions(path: Path, count: int, wrong: set[int] = frozenset()) -> Path:  # type: ignore[assignment]
    lines = [
        json.dumps({"id": f"q{i}", "question": f"What is {i} + 10?", "answer": str(i + 10 + (1 if i in wrong else 0))})
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_wilson_and_percentile() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    for n in range(1, 400):  # exact at the ends: 0/3 once had 5.55e-17 as its lower bound
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0, n
    assert percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)


async def test_eval_scores_records_and_summarises(tmp_path: Path, make_graph, store: Store) -> None:  # type: ignore[no-untyped-def]
    data = _questions(tmp_path / "q.jsonl", 10, wrong={3, 7})
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data)))
    summary = await evaluation.run()
    assert (summary.n, summary.correct) == (10, 8)
    assert summary.to_dict()["ci95"] == pytest.approx(list(wilson_interval(8, 10)))
    assert summary.usage.calls == 10
    rows = {row.item_key: row for row in store.run_items(evaluation.run_id)}
    assert rows["q3"].correct is False and rows["q3"].reference == "14" and rows["q1"].correct is True
    assert store.get_run(evaluation.run_id).status == "done"


async def test_second_eval_of_the_same_items_is_served_from_the_cache(
    tmp_path: Path, make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    data = _questions(tmp_path / "q.jsonl", 6)
    graph = make_graph(ONE_NODE)
    await Evaluation(graph, EvalConfig(task=str(data))).run()
    scripted.reset()
    again = await Evaluation(graph, EvalConfig(task=str(data))).run()
    assert scripted.completion_requests == [] and again.usage.calls == 0 and again.usage.cached_calls == 6
    assert again.correct == 6
    # asked for no cache in the config, a user got every answer from it and a run stored as cached
    with pytest.raises(AgentScaleError, match=r"GatewaySettings\(cache=False\)"):
        Evaluation(graph, EvalConfig(task=str(data), response_cache=False))


async def test_resume_after_interruption_asks_nothing_twice(
    tmp_path: Path, make_graph, scripted: ScriptedServer, gateway: Gateway
) -> None:  # type: ignore[no-untyped-def]
    data = _questions(tmp_path / "q.jsonl", 8)
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), concurrency=1))
    seen = 0

    def stop_after_three(_: object) -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            raise _Stop

    with pytest.raises(_Stop):
        await evaluation.run(on_item=stop_after_three)
    store = gateway.store
    assert store is not None and store.get_run(evaluation.run_id).status == "failed"
    answered = {row.question for row in store.run_items(evaluation.run_id)}
    assert len(answered) == 3
    scripted.reset()
    fresh_gateway = Gateway(Store(store.path), GatewaySettings(cache=False))  # no cache: only skipping saves calls
    # the stored concurrency unless another is given (`eval --resume ID --concurrency N` was ignored)
    assert Evaluation.resume(evaluation.run_id, fresh_gateway, concurrency=4).config.concurrency == 4
    resumed = Evaluation.resume(evaluation.run_id, fresh_gateway)
    assert resumed.config.concurrency == 1
    summary = await resumed.run()
    asked = [r["messages"][-1]["content"] for r in scripted.completion_requests]
    assert not any(question in text for question in answered for text in asked)
    assert len(asked) == 5 and summary.n == 8 and summary.correct == 8


async def test_a_resume_scores_an_answer_stored_without_its_verdict(
    tmp_path: Path, make_graph, scripted: ScriptedServer, gateway: Gateway
) -> None:  # type: ignore[no-untyped-def]
    """A process killed between storing an item's answer and its verdict: the resume scores the
    stored answer and asks nothing again."""
    data = _questions(tmp_path / "q.jsonl", 4, wrong={1})
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data)))
    await evaluation.run()
    store = gateway.store
    assert store is not None
    with sqlite3.connect(store.path) as connection:  # the kill: answers stored, two verdicts not
        connection.execute("UPDATE runitem SET correct = NULL WHERE item_key IN ('q0', 'q1')")
        connection.execute("UPDATE run SET status = 'interrupted'")
    scripted.reset()
    summary = await Evaluation.resume(evaluation.run_id, Gateway(Store(store.path), GatewaySettings(cache=False))).run()
    assert scripted.completion_requests == []
    assert (summary.n, summary.correct) == (4, 3)
    rows = Store(store.path).run_items(evaluation.run_id)
    assert sorted(row.item_key for row in rows) == ["q0", "q1", "q2", "q3"]
    assert {row.item_key: row.correct for row in rows} == {"q0": True, "q1": False, "q2": True, "q3": True}


async def test_resuming_with_a_changed_task_file_is_refused(tmp_path: Path, make_graph, gateway: Gateway) -> None:  # type: ignore[no-untyped-def]
    """The file grew after an interruption: the resume sampled its items again, dropped finished ones
    and ran new ones (the summary said 5/5, its report 5/7); an edited item kept its old verdict."""
    data = _questions(tmp_path / "q.jsonl", 4)
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), n=3))
    run_id = evaluation.run_id
    assert Evaluation.resume(run_id, gateway).config.task_sha256 is not None  # unchanged: it resumes
    _questions(data, 6)
    with pytest.raises(AgentScaleError, match=f"task file {data} has changed since run {run_id} started"):
        Evaluation.resume(run_id, gateway)


async def test_a_moved_task_file_is_found_by_its_contents(tmp_path: Path, make_graph, gateway: Gateway) -> None:  # type: ignore[no-untyped-def]
    """A resumed file task whose folder had moved could not be resumed (--task was refused with
    --resume): the file is given where it is now, and must hold the same bytes."""
    data = _questions(tmp_path / "q.jsonl", 4)
    run_id = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), n=3)).run_id
    moved = tmp_path / "elsewhere" / "q.jsonl"
    moved.parent.mkdir()
    data.rename(moved)
    with pytest.raises(AgentScaleError, match="is not there: if it moved, give its new path with --task"):
        Evaluation.resume(run_id, gateway)
    summary = await Evaluation.resume(run_id, gateway, task_file=str(moved)).run()
    assert (summary.n, summary.correct) == (3, 3)
    with pytest.raises(AgentScaleError, match=r"task file '.*elsewhere' is a directory"):  # "not found" (a fuzzer's)
        Evaluation.resume(run_id, gateway, task_file=str(moved.parent))
    with pytest.raises(AgentScaleError, match="'sim:math' names a task, not a task file"):  # "not found"
        Evaluation.resume(run_id, gateway, task_file="sim:math")
    other = _questions(tmp_path / "other.jsonl", 5)
    with pytest.raises(AgentScaleError, match=f"task file {other} is not the file run {run_id} started on"):
        Evaluation.resume(run_id, gateway, task_file=str(other))
    from agentscale.tasks.registry import moved_task_file

    for stored in ("q.jsonl", "data/q.jsonl"):  # runs stored before paths were made absolute, or digests kept
        with pytest.raises(AgentScaleError, match=f"without its task file's sha256 .* put the file back at {stored}"):
            moved_task_file(stored, None, str(moved), "old")
    named = Evaluation(make_graph(ONE_NODE), EvalConfig(task="sim:math", n=2)).run_id
    with pytest.raises(AgentScaleError, match="not a task file it could find elsewhere: drop --task"):
        Evaluation.resume(named, gateway, task_file=str(moved))


async def test_code_task_runs_completions_in_the_sandbox(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    task = load_task("humaneval").sample(2, 0)
    first, second = task.items
    fenced = f"```python\n{first.metadata.get('prompt', first.question)}{first.reference}\n```"
    scripted.add_rule(Rule(pattern=first.metadata["entry_point"], replies=[fenced]))
    scripted.add_rule(Rule(replies=["```python\ndef nothing():\n    return None\n```"]))
    graph = make_graph(ONE_NODE)
    summary = await Evaluation(graph, EvalConfig(task="humaneval", n=2, seed=0)).run()
    verdict = {item.item_id: item.correct for item in summary.items}
    assert verdict == {first.id: True, second.id: False}


async def test_a_tester_graph_loads_as_code_and_is_evaluated_as_built(make_graph, scripted: ScriptedServer) -> None:  # type: ignore[no-untyped-def]
    """A tester graph loaded without the task answers in code (it was refused as text, so a caller had
    to load the task first), and the evaluation runs the graph it was given: it built every graph twice."""
    task = load_task("humaneval").sample(1, 0)
    (item,) = task.items
    program = f"```python\n{item.metadata.get('prompt', item.question)}{item.reference}\n```"
    scripted.add_rule(Rule(replies=[program]))
    graph = make_graph(
        "name: t\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
        "  - {id: t, role: tester}\nedges: ['a, b -> t']\n"
    )
    assert graph.runtime.answer_format == "code"
    evaluation = Evaluation(graph, EvalConfig(task="humaneval", n=1, seed=0))
    assert evaluation.graph is graph
    assert (await evaluation.run()).correct == 1
    with pytest.raises(AgentScaleError, match=r"asked for .* node 't' is a tester"):  # a task answered in numbers
        Evaluation(graph, EvalConfig(task="sim:math", n=1))


EVAL = [sys.executable, "-m", "agentscale.cli.app", "eval"]


def eval_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENTSCALE_DB": str(tmp_path / "k.db"), "AGENTSCALE_CACHE": "off"}


def start_eval(
    tmp_path: Path, server: ScriptedServer, stderr: int, *, json_output: bool = False
) -> tuple[subprocess.Popen[str], Store]:
    """A real `agentscale eval` process over 6 questions, returned once 2 of them are scored."""
    data = _questions(tmp_path / "q.jsonl", 6)
    graph = tmp_path / "g.yaml"
    graph.write_text(graph_yaml(server.api_base, ONE_NODE))
    proc = subprocess.Popen(
        [*EVAL, str(graph), "--task", str(data), "--concurrency", "1", *(["--json"] if json_output else [])],
        env=eval_env(tmp_path),
        stdout=subprocess.PIPE if json_output else subprocess.DEVNULL,
        stderr=stderr,
        text=True,
        preexec_fn=with_default_sigint,
    )
    store = Store(tmp_path / "k.db")
    deadline = time.time() + 60
    while time.time() < deadline:
        runs = store.list_runs()
        if runs and sum(1 for i in store.run_items(runs[0].id) if i.correct is not None) >= 2:
            break
        time.sleep(0.05)
    return proc, store


def test_eval_survives_kill_9_and_resumes(tmp_path: Path) -> None:
    """A real `agentscale eval` process killed with SIGKILL resumes without re-asking answered items."""
    server = ScriptedServer(latency_s=0.3).start()
    try:
        proc, store = start_eval(tmp_path, server, subprocess.DEVNULL)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        run_id = store.list_runs()[0].id
        answered = {i.question for i in store.run_items(run_id) if i.correct is not None}
        assert 2 <= len(answered) < 6
        server.reset()
        done = subprocess.run(
            [*EVAL, "--resume", run_id, "--json"], env=eval_env(tmp_path), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["n"] == 6 and result["correct"] == 6 and result["run_id"] == run_id
        asked = [r["messages"][-1]["content"] for r in server.completion_requests]
        assert not any(question in text for question in answered for text in asked)
        assert len(store.run_items(run_id)) == 6  # no duplicate rows
    finally:
        server.stop()


def test_a_resume_of_an_eval_still_running_is_refused_before_any_call(tmp_path: Path) -> None:
    """Two processes on one run paid for the same calls twice and stored its items twice: a resume
    while the eval runs is refused, naming the process, and asks the server nothing."""
    server = ScriptedServer(latency_s=0.3).start()
    try:
        proc, store = start_eval(tmp_path, server, subprocess.DEVNULL)
        server.latency_s = 120.0  # the first eval's next call waits: it runs while the second one starts
        run_id = store.list_runs()[0].id
        asked, steady_since = len(server.completion_requests), time.time()
        while time.time() - steady_since < 1.5:  # a call sent before the change returns, the next one waits
            time.sleep(0.05)
            if len(server.completion_requests) != asked:
                asked, steady_since = len(server.completion_requests), time.time()
        second = subprocess.run(
            [*EVAL, "--resume", run_id], env=eval_env(tmp_path), capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1 and "Traceback" not in second.stderr
        assert f"run {run_id} is being run by process {proc.pid} on host" in " ".join(second.stderr.split())
        assert "eval run" not in second.stderr and "elapsed" not in second.stderr  # refused before its header
        assert len(server.completion_requests) == asked  # the second process asked nothing
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        assert store.get_run(run_id).status == "interrupted"
    finally:
        server.stop()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_eval_says_how_to_continue_and_writes_the_report_of_what_finished(
    tmp_path: Path, stop: signal.Signals
) -> None:
    """Ctrl-C (SIGINT) or `kill` (SIGTERM) on a real `agentscale eval --json` process: the resume
    command and a report, on stderr and as JSON on stdout."""
    server = ScriptedServer(latency_s=0.3).start()
    try:
        proc, store = start_eval(tmp_path, server, subprocess.PIPE, json_output=True)
        proc.send_signal(stop)
        stdout, stderr = proc.communicate(timeout=60)
        run_id = store.list_runs()[0].id
        flat = " ".join(stderr.split())
        assert proc.returncode == 130 and "Traceback" not in stderr
        assert f"agentscale eval --resume {run_id}" in flat
        report = tmp_path / "runs" / run_id / "report.html"
        assert "report of what finished:" in flat and report.exists()
        assert store.get_run(run_id).status == "interrupted"
        said = json.loads(stdout)  # --json: a script learns the run to resume on stdout too
        assert said == {
            "run_id": run_id,
            "status": "interrupted",
            "resume": f"agentscale eval --resume {run_id}",
            "report": str(report),
        }
    finally:
        server.stop()


def test_a_log_file_gets_progress_lines_and_stdout_stays_json(tmp_path: Path) -> None:
    """stderr that is not a terminal (nohup, a CI log) gets plain progress lines, not a silent live bar."""
    server = ScriptedServer().start()
    try:
        data = _questions(tmp_path / "q.jsonl", 6)
        graph = tmp_path / "g.yaml"
        graph.write_text(graph_yaml(server.api_base, ONE_NODE))
        done = subprocess.run(
            [*EVAL, str(graph), "--task", str(data), "--json"],
            env=eval_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n"] == 6
    lines = [line for line in done.stderr.splitlines() if " elapsed" in line]
    assert lines[0].startswith(f"{data.stem}: 0/6 · ") and lines[-1].startswith(f"{data.stem}: 6/6 · 6/6 correct · ")


def test_the_eval_command_says_how_to_ask_failed_items_again_and_counts_them_once(tmp_path: Path) -> None:
    """`eval` names the resume that asks the items with failed calls again; that resume's progress
    counts a retried item once (it read "7/6 correct": the item's first verdict and its new one)."""
    server = ScriptedServer().start()
    env = {**os.environ, "AGENTSCALE_DB": str(tmp_path / "k.db")}
    try:
        server.add_rule(Rule(pattern=r"What is 1 \+ 10", status=400, times=1))
        data = _questions(tmp_path / "q.jsonl", 4)
        graph = tmp_path / "g.yaml"
        graph.write_text(graph_yaml(server.api_base, THREE_VOTE))
        first = subprocess.run([*EVAL, str(graph), "--task", str(data)], env=env, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        run_id = Store(tmp_path / "k.db").list_runs()[0].id
        said = " ".join(first.stdout.split())
        assert "1 of 4 items answered although some of their model calls failed; first: q1: " in said
        assert f"ask the 1 item with failed calls again: agentscale eval --resume {run_id} --retry-errors" in said
        again = subprocess.run(
            [*EVAL, "--resume", run_id, "--retry-errors"], env=env, capture_output=True, text=True, timeout=120
        )
        assert again.returncode == 0, again.stderr
        assert [line for line in again.stderr.splitlines() if " elapsed" in line][-1].startswith("q: 4/4 · 4/4 correct")
        assert "failed" not in again.stdout
        alone = subprocess.run(
            [*EVAL, str(graph), "--task", str(data), "--retry-errors"], env=env, capture_output=True, text=True
        )
        assert alone.returncode == 1 and "Traceback" not in alone.stderr
        assert "--retry-errors asks again the failed items of a stored run: give --resume RUN_ID" in alone.stderr
    finally:
        server.stop()


async def test_items_that_did_not_finish_are_counted_with_their_reason(
    tmp_path: Path, make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    scripted.add_rule(Rule(pattern=r"What is [12] \+ 10", status=400))  # not retried: the call fails
    data = _questions(tmp_path / "q.jsonl", 5)
    summary = await Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data))).run()
    assert summary.correct == 3
    assert sorted(item.item_id for item in summary.unfinished) == ["q1", "q2"]
    assert "output node 'a' failed" in (summary.unfinished[0].stopped_reason or "")
    assert summary.to_dict()["unfinished"] == 2


THREE_VOTE = (
    "name: ev3\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    "  - {id: c, role: assistant, model: m}\n  - {id: v, role: vote}\nedges: ['a, b, c -> v']\n"
)


async def test_a_resume_with_retry_errors_asks_again_the_items_whose_calls_failed(
    tmp_path: Path, make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """A server down for a while: q2 lost all three calls (not finished), q1 one of three (its vote
    answered with two). A plain resume keeps both as they ended; with retry_errors they are asked
    again, and only the failed calls are paid for (the others replay from the cache)."""
    scripted.add_rule(Rule(pattern=r"What is 1 \+ 10", status=400, times=1))  # not retried: the call fails
    scripted.add_rule(Rule(pattern=r"What is 2 \+ 10", status=400, times=3))
    data = _questions(tmp_path / "q.jsonl", 5)
    graph = make_graph(THREE_VOTE)
    first = await Evaluation(graph, EvalConfig(task=str(data))).run()
    assert [item.item_id for item in first.unfinished] == ["q2"]
    assert [item.item_id for item in first.answered_despite_failures] == ["q1"]
    assert "call failed after 1 attempt(s): HTTP 400" in first.call_failures["q1"]
    assert sorted(item.item_id for item in first.retryable) == ["q1", "q2"]
    assert first.to_dict()["items_with_failed_calls"] == first.to_dict()["items_to_retry"] == 2 and first.correct == 4

    asked = len(scripted.completion_requests)
    kept = await Evaluation.resume(first.run_id or "", graph.gateway).run()
    assert len(scripted.completion_requests) == asked and kept.correct == 4  # nothing asked again

    retried = await Evaluation.resume(first.run_id or "", graph.gateway, retry_errors=True).run()
    assert len(scripted.completion_requests) - asked == 4  # q1's failed call, q2's three
    assert retried.correct == 5 and not retried.unfinished and not retried.call_failures
    assert retried.usage.calls == 15 and retried.usage.cached_calls == 0  # its own hits are its calls
    store = graph.store
    assert len(store.run_items(first.run_id)) == 5
    assert sorted(call.node_id for call in store.node_calls(first.run_id, "q1")) == ["a", "b", "c", "v"]


async def test_retry_errors_leaves_an_item_a_time_budget_cut(
    tmp_path: Path, make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """A call cut by the run's time budget failed, but asking again would be cut again: not retried."""
    scripted.add_rule(Rule(pattern=r"What is 1 \+ 10", latency_s=2.0))
    data = _questions(tmp_path / "q.jsonl", 3)
    graph = make_graph(ONE_NODE + "budget: {max_latency_s: 0.5}\n")
    first = await Evaluation(graph, EvalConfig(task=str(data))).run()
    assert list(first.call_failures) == ["q1"] and [item.item_id for item in first.unfinished] == ["q1"]
    assert not first.retryable and first.to_dict()["items_to_retry"] == 0  # a script looping on it stops
    asked = len(scripted.completion_requests)
    await Evaluation.resume(first.run_id or "", graph.gateway, retry_errors=True).run()
    assert len(scripted.completion_requests) == asked


async def test_a_cache_replay_reports_the_same_critical_path_as_the_live_eval(tmp_path: Path) -> None:
    """Wall-clock latency shrinks when the cache answers; the modelled critical path (each call's
    recorded latency along the longest path) does not, so the summary gives both."""
    text = "name: g\nmodels: {l8: {model: sim/llama-8b}}\nnodes:\n  - {id: a, role: assistant, model: l8}\n"
    text += "  - {id: b, role: critic, model: l8}\nedges: [a -> b]\n"
    graph = Graph.from_yaml(text, gateway=Gateway(Store(tmp_path / "e.db")))
    live = await Evaluation(graph, EvalConfig(task="sim:math", n=6)).run()
    replay = await Evaluation(graph, EvalConfig(task="sim:math", n=6)).run()
    assert replay.usage.calls == 0 and replay.usage.cached_calls == live.usage.calls > 0
    path = live.to_dict()["latency"]["critical_path_mean_s"]
    assert path > 1.0 and replay.to_dict()["latency"]["critical_path_mean_s"] == pytest.approx(path)
    # sim/ models: the figures are the simulator's, and the summary an app reads says so (only --json did)
    assert live.simulated and live.to_dict()["simulated"] is True


async def test_a_run_stored_with_a_scorer_now_refused_still_resumes(tmp_path: Path) -> None:
    """Runs started before a built-in task's scorer had to read its answer format must finish: the
    check is for new runs (resuming one with `--scorer exact` on sim:math raised TaskScorerError)."""
    store = Store(tmp_path / "runs.db")
    config = EvalConfig(task="sim:math", n=2, scorer="exact")
    with pytest.raises(TaskScorerError):
        config.load()
    graph = "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b}\n"
    run = store.create_run("eval", graph_name="g", graph_yaml=graph, config=asdict(config))
    summary = await Evaluation.resume(run.id, Gateway(store, GatewaySettings())).run()
    assert summary.n == 2 and store.get_run(run.id).status == "done"


@pytest.mark.parametrize("concurrency", [0, -2])
def test_items_at_once_below_one_are_refused(concurrency: int) -> None:
    """0 waited forever on a semaphore no item could take; -2 raised asyncio's ValueError; both after
    the run was stored."""
    with pytest.raises(AgentScaleError, match=f"concurrency must be at least 1 \\(got {concurrency}\\)"):
        EvalConfig(task="t.jsonl", concurrency=concurrency)


@pytest.mark.parametrize("concurrency", ["8", 2.5, float("nan"), True], ids=["text", "fraction", "nan", "bool"])
def test_items_at_once_that_are_no_whole_number_are_refused(concurrency: object) -> None:
    """ "8" failed on a comparison inside; nan ran every item at once and was stored as NaN (not JSON)."""
    with pytest.raises(AgentScaleError, match="concurrency must be a whole number"):
        EvalConfig(task="t.jsonl", concurrency=concurrency)  # type: ignore[arg-type]


def test_a_config_takes_a_path_and_an_executor_config_and_names_a_wrong_task_type(tmp_path: Path) -> None:
    """What a caller has at hand: `EvalConfig(task=Path(...))` failed on "'PosixPath' object has no
    attribute 'strip'", `executor=ExecutorConfig()` on "argument after ** must be a mapping"; an
    executor dict with a mistyped kind ran locally."""
    config = EvalConfig(task=tmp_path / "q.jsonl", executor=ExecutorConfig())  # type: ignore[arg-type]
    assert config.task == str(tmp_path / "q.jsonl") and config.executor == ExecutorConfig().to_dict()
    with pytest.raises(TypeError, match=r"EvalConfig\.task: a task name or a JSONL file.s path, not int"):
        EvalConfig(task=5)  # type: ignore[arg-type]
    with pytest.raises(AgentScaleError, match="unknown executor 'rya'"):
        EvalConfig(task="t.jsonl", executor={"kind": "rya"})


def test_resuming_without_a_database_says_so() -> None:
    """It failed an `assert` (no message; skipped altogether under `python -O`)."""
    with pytest.raises(AgentScaleError, match="resuming an evaluation needs a database"):
        Evaluation.resume("abc", Gateway(None))
    with pytest.raises(TypeError, match=r"resuming an evaluation takes a Gateway, e.g. Gateway\(Store\(path\)\), not"):
        Evaluation.resume("abc", None)  # type: ignore[arg-type]


def test_an_evaluation_names_a_graph_or_config_of_another_type(tmp_path: Path) -> None:
    """A graph file's path or a dict of settings failed on an AttributeError (an API fuzzer's)."""
    graph = Graph.from_yaml("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=None)
    with pytest.raises(TypeError, match=r"Evaluation takes a Graph \(agentscale.load\(path\)\), not str"):
        Evaluation("g.yaml", EvalConfig(task="sim:math"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Evaluation's config is an EvalConfig\(task=...\), not dict"):
        Evaluation(graph, {"task": "sim:math"})  # type: ignore[arg-type]


async def test_calls_an_item_paid_before_a_kill_count_as_this_runs_not_as_cache_hits(
    tmp_path: Path, make_graph, scripted: ScriptedServer, gateway: Gateway
) -> None:  # type: ignore[no-untyped-def]
    """Killed between an item's paid call and its row, an eval answers that item again from the cache
    on resume: the summary said "2 calls (+1 cache hit)" where the run had paid 3, as an
    uninterrupted run says. (The kill is played by deleting the item's row of a finished run.)"""
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(_questions(tmp_path / "q.jsonl", 3))))
    await evaluation.run()
    store = gateway.store
    assert store is not None
    with sqlite3.connect(store.path) as killed:
        killed.execute("DELETE FROM runitem WHERE run_id = ? AND item_key = 'q1'", (evaluation.run_id,))
    summary = await Evaluation.resume(evaluation.run_id, gateway).run()
    assert len(scripted.completion_requests) == 3  # the resumed item was answered from the cache
    assert (summary.usage.calls, summary.usage.cached_calls) == (3, 0) == (store.spend(evaluation.run_id)["calls"], 0)
    report = read_items(store, evaluation.run_id).usage  # the report counts as the summary does
    assert (report.calls, report.cached_calls) == (3, 0)


async def test_an_item_whose_calls_passed_a_cap_after_the_fact_is_finished(tmp_path: Path, make_graph) -> None:  # type: ignore[no-untyped-def]
    """A graph that ran to its end, its usage past a cap only because the prompt estimate was low,
    was listed among the items that "did not finish and were scored as they ended"."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"id": "q0", "question": "Sum: " + "7 " * 3000, "answer": "42"}) + "\n")
    graph = make_graph(ONE_NODE.replace("model: m}", "model: m, max_tokens: 16}") + "budget: {max_tokens: 2400}\n")
    summary = await Evaluation(graph, EvalConfig(task=str(data), scorer="numeric")).run()
    assert "exceeded by the calls' actual usage" in str(summary.items[0].stopped_reason)
    assert summary.unfinished == []


def test_a_resume_mends_a_stored_concurrency_below_one(tmp_path: Path, gateway: Gateway) -> None:
    """A run stored with concurrency 0 (before it was refused) could not be resumed even with
    `--concurrency 2`: the stored value was checked before the given one replaced it."""
    assert gateway.store is not None
    config = {"task": str(_questions(tmp_path / "q.jsonl", 1)), "concurrency": 0}
    graph = ONE_NODE.replace("model: m}", "model: sim/llama-1b}")
    run = gateway.store.create_run("eval", graph_name="ev", graph_yaml=graph, config=config, claim=False)
    assert Evaluation.resume(run.id, gateway, concurrency=2).config.concurrency == 2
    with pytest.raises(AgentScaleError, match="concurrency must be at least 1"):
        Evaluation.resume(run.id, gateway)


def test_an_eval_of_no_item_and_a_resume_of_no_run_id_are_refused(tmp_path: Path, make_graph, gateway: Gateway) -> None:  # type: ignore[no-untyped-def]
    """EvalConfig(n=0) reported "accuracy 0.0" over 0 items; Evaluation.resume(None, ...) failed with
    AttributeError ('NoneType' object has no attribute 'strip') after an SQLAlchemy warning."""
    data = _questions(tmp_path / "q.jsonl", 3)
    with pytest.raises(AgentScaleError, match="n=0 evaluates no item"):
        Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), n=0))
    with pytest.raises(TypeError, match="a run id is a string"):
        Evaluation.resume(None, gateway)  # type: ignore[arg-type]


def test_a_resumed_eval_of_a_file_keeps_the_scorer_inferred_when_it_began(tmp_path: Path, make_graph) -> None:  # type: ignore[no-untyped-def]
    """A file's inferred scorer was not stored: its resume inferred it again, by the rule of resumed
    runs (a file of code items began scored `code` and went on scored `exact`)."""
    data = tmp_path / "code.jsonl"
    data.write_text('{"question": "Write add(a, b).", "answer": "", "test": "assert add(1, 2) == 3"}\n')
    graph = make_graph("name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    evaluation = Evaluation(graph, EvalConfig(task=str(data)))
    assert evaluation.task.scorer_name == "code"
    assert Evaluation.resume(evaluation.run_id, graph.gateway).task.scorer_name == "code"


async def test_one_evaluation_run_twice_at_once_runs_once(tmp_path: Path) -> None:
    """`asyncio.gather(e.run(), e.run())` passed the owner check (it looks at other processes) and
    paid for every call twice: 30 calls and 10 item rows for 5 items (an API fuzzer's)."""
    graph = Graph.from_yaml(
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=Store(tmp_path / "e.db")
    )
    evaluation = Evaluation(graph, EvalConfig(task="sim:math", n=5))
    first, second = await asyncio.gather(evaluation.run(), evaluation.run(), return_exceptions=True)
    assert isinstance(second, RunBusy) and "is running in this process already" in str(second)
    assert not isinstance(first, BaseException) and first.n == 5
    assert len(graph.store.run_items(evaluation.run_id)) == 5 and graph.store.spend(evaluation.run_id)["calls"] == 5
    assert (await evaluation.run()).n == 5  # run again once the first has ended: allowed, as before


async def test_two_objects_resuming_one_run_at_once_run_it_once(tmp_path: Path) -> None:
    """Each object checked only itself: two `Evaluation.resume` of one run, gathered, paid for every
    item twice. The claim is the process's, by database file and run."""
    store = Store(tmp_path / "e.db")
    graph = Graph.from_yaml("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=store)
    run_id = Evaluation(graph, EvalConfig(task="sim:math", n=5)).run_id
    first, second = (Evaluation.resume(run_id, Gateway(Store(tmp_path / "e.db"))) for _ in range(2))
    done, refused = await asyncio.gather(first.run(), second.run(), return_exceptions=True)
    assert isinstance(refused, RunBusy) and "is running in this process already" in str(refused)
    assert not isinstance(done, BaseException) and done.n == 5
    assert len(store.run_items(run_id)) == 5 and store.spend(run_id)["calls"] == 5
    assert (await second.run()).n == 5  # once the first has ended, the other may go on: nothing left to pay
    assert store.spend(run_id)["calls"] == 5


async def test_a_questions_time_cap_does_not_count_its_wait_behind_other_questions(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway
) -> None:
    """Eight questions of one 0.3 s call each, on an endpoint of one slot, under a 1 s cap per
    question: asked one at a time every answer came in time, eight at a time the later ones spent
    their second waiting for the slot and were cut (accuracy 1.0 against 0.375). A wait behind a call of the
    question's own still counts: two 0.6 s calls of one question on that one slot pass the cap."""
    scripted.add_rule(Rule(latency_s=0.3, pattern=r"What is \d+ \+ 10"))
    scripted.add_rule(Rule(latency_s=0.6))
    models = f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}", max_concurrency: 1}}\n'
    one = Graph.from_yaml(
        models + "name: capped\nbudget: {max_latency_s: 1}\nnodes:\n  - {id: a, role: assistant, model: m}\n",
        gateway=gateway,
    )
    data = _questions(tmp_path / "q.jsonl", 8)
    summary = await Evaluation(one, EvalConfig(task=str(data), concurrency=8)).run()
    assert [item.stopped_reason for item in summary.items] == [None] * 8
    pair = Graph.from_yaml(
        models + "name: pair\nbudget: {max_latency_s: 1}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
        "  - {id: b, role: assistant, model: m}\n  - {id: v, role: vote}\nedges: ['a, b -> v']\n",
        gateway=gateway,
    )
    result = await pair.arun("Name a colour.")
    assert result.stopped_reason is not None and "max_latency_s" in result.stopped_reason


async def test_a_split_evaluates_its_test_part_and_resumes_on_the_same_items(
    tmp_path: Path,
    make_graph,  # type: ignore[no-untyped-def]
    store: Store,
) -> None:
    """`EvalConfig.split` answers the test part of `Task.split` (an optimization's test split), not a
    sample: the same items on a resume, and none of the train part."""
    data = _questions(tmp_path / "q.jsonl", 30)
    split = {"seed": 4, "train": 10, "dev": 0, "test": 12}
    expected = load_task(str(data)).split(4, train=10, dev=0, test=12)
    evaluation = Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), split=split))
    assert [item.id for item in evaluation.task.items] == [item.id for item in expected.test.items]
    assert not {item.id for item in evaluation.task.items} & {item.id for item in expected.train.items}
    summary = await evaluation.run()
    assert summary.n == 12
    resumed = Evaluation.resume(evaluation.run_id, evaluation.graph.gateway)
    assert resumed.config.split == split and resumed.task.items == evaluation.task.items


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"split": {"seed": 0, "train": 2}}, "a dict of exactly seed, train, dev, test"),
        ({"split": {"seed": 0, "train": -1, "dev": 0, "test": 3}}, "train must be non-negative integers"),
        ({"split": {"seed": 0, "train": 1, "dev": 0, "test": 3}, "n": 2}, "leave n and seed (a sample's) out"),
        ({"split": {"seed": 0, "train": 1, "dev": 0, "test": 3}, "seed": 5}, "leave n and seed (a sample's) out"),
    ],
)
def test_a_split_that_names_no_whole_split_is_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        EvalConfig(task="q.jsonl", **settings)  # type: ignore[arg-type]


async def test_an_evals_seed_picks_its_sample(tmp_path: Path, make_graph) -> None:  # type: ignore[no-untyped-def]
    """(A mutation audit: a one-line change to `task.sample(self.n, self.seed)` survived every test.) A user would see
    `agentscale eval --n 5 --seed 1` (or `EvalConfig(seed=1)`) score the very items seed 0 scores: comparing seeds,
    or re-drawing a sample, silently measures the same 5 questions, and the run's stored config still says seed 1."""
    data = tmp_path / "q.jsonl"
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + 10?", "answer": str(i + 10)}) for i in range(20)]
    data.write_text("\n".join(lines) + "\n")
    task = load_task(str(data))
    by_seed = {seed: sorted(item.id for item in task.sample(5, seed).items) for seed in (0, 1)}
    assert by_seed[0] != by_seed[1]  # the two seeds draw different items from these 20
    summary = await Evaluation(make_graph(ONE_NODE), EvalConfig(task=str(data), n=5, seed=1)).run()
    assert sorted(item.item_id for item in summary.items) == by_seed[1]
    assert summary.n == summary.correct == 5


async def test_the_local_executor_asks_concurrency_items_at_once(
    tmp_path: Path, make_graph, scripted: ScriptedServer
) -> None:  # type: ignore[no-untyped-def]
    """(A mutation audit: a one-line change to `return concurrency` survived every test.) Every answer and score stays
    the same, so nothing noticed; a user would see `agentscale eval --concurrency 8` (and the optimizer's trials)
    ask one question at a time: an eval of slow models takes 8 times as long, and `--concurrency` does nothing."""
    data = tmp_path / "q.jsonl"
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + 10?", "answer": str(i + 10)}) for i in range(4)]
    data.write_text("\n".join(lines) + "\n")
    graph = make_graph(ONE_NODE)
    await graph.arun("What is 1 + 1?", record=False)  # litellm's import, paid before the clock starts
    scripted.latency_s = 0.5  # long enough for the items asked at once to overlap at the server
    scripted.peak_concurrency = 0
    summary = await Evaluation(graph, EvalConfig(task=str(data), concurrency=4)).run()
    assert summary.correct == 4 and summary.usage.calls == 4
    assert scripted.peak_concurrency == 4  # one at a time would be 1
