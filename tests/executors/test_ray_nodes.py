"""A second Ray "node" on this host (`ray start --address`): workers spread over both nodes, and an
eval survives the loss of the second node mid-run (its items are retried on the first)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.evaluate.engine import EvalConfig, Evaluation, ItemResult
from agentscale.executors import LocalExecutor
from agentscale.executors.ray_executor import RayExecutor
from agentscale.testing import ScriptedServer
from tests.conftest import graph_yaml

ONE = "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\n"


@pytest.fixture(scope="module")
def second_node(ray_session: Any) -> Iterator[subprocess.Popen[bytes]]:
    """`ray start --address HEAD --num-cpus 1 --block`, in a process group of its own (killed whole)."""
    ray_cli = Path(sys.executable).parent / "ray"
    address = ray_session.get_runtime_context().gcs_address
    node = subprocess.Popen(
        [str(ray_cli), "start", "--address", address, "--num-cpus", "1", "--block"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while sum(1 for n in ray_session.nodes() if n["Alive"]) < 2:
        assert time.monotonic() < deadline and node.poll() is None, "the second node did not join"
        time.sleep(0.5)
    yield node
    if node.poll() is None:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait(30)


@pytest.mark.integration  # ~50 s: a second Ray node and its worker start
async def test_eval_survives_the_loss_of_a_node(
    tmp_path: Path, scripted: ScriptedServer, ray_session: Any, second_node: subprocess.Popen[bytes]
) -> None:
    count = 18
    task = tmp_path / "q.jsonl"
    task.write_text(
        "\n".join(
            json.dumps({"id": f"q{i}", "question": f"What is {i} + 10?", "answer": str(i + 10)}) for i in range(count)
        )
    )
    scripted.latency_s = 0.4
    executor = RayExecutor(workers=3)  # 3 CPUs in the cluster: one worker must live on the second node
    try:
        await executor.start()
        nodes = executor.worker_nodes()
        assert len(set(nodes)) == 2, "the workers did not spread over both nodes"
        head = ray_session.get_runtime_context().get_node_id()
        assert executor.outbox_node == head  # pinned hard: the outbox must not go with the lost node
        remote = [index for index, node in enumerate(nodes) if node != head]
        pids = executor.worker_pids()

        def lose_node(_: ItemResult) -> None:
            # at the first result (the second node's worker has items in flight), the node goes: its Ray
            # processes (the `ray start` group) and its worker (Ray starts workers in their own group)
            if second_node.poll() is None:
                os.killpg(second_node.pid, signal.SIGKILL)
                for index in remote:
                    os.kill(pids[index], signal.SIGKILL)

        gateway = Gateway(Store(tmp_path / "n.db"), GatewaySettings(timeout_s=20))
        graph = Graph.from_yaml(graph_yaml(scripted.api_base, ONE), gateway=gateway)
        evaluation = Evaluation(graph, EvalConfig(task=str(task), concurrency=3), executor=executor)
        summary = await asyncio.wait_for(evaluation.run(on_item=lose_node), 180)
    finally:
        executor.close()
    assert second_node.poll() is not None and executor.stats.retries >= 1
    assert summary.n == count and summary.correct == count
    store = gateway.store
    assert store is not None
    assert sorted(r.item_key for r in store.run_items(evaluation.run_id)) == sorted(f"q{i}" for i in range(count))
    assert len(store.node_calls(evaluation.run_id)) == count
    # the same answers as in-process
    local = await Evaluation(
        Graph.from_yaml(graph_yaml(scripted.api_base, ONE), gateway=Gateway(Store(tmp_path / "l.db"))),
        EvalConfig(task=str(task)),
        executor=LocalExecutor(),
    ).run()
    assert [(i.item_id, i.answer) for i in summary.items] == [(i.item_id, i.answer) for i in local.items]
