"""When a graph starts the servers its models need (`local/` routes): before the run, so no
question waits for one, unless the response cache may answer; then at the first cache miss, so a
re-run from the cache never waits a minute per model for a server it does not call."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentscale import Gateway, GatewaySettings, Graph, GraphEvent, RunResult, Store
from agentscale.models import endpoints as endpoints_module
from agentscale.models.endpoints import Endpoint, register_endpoint_resolver
from agentscale.models.registry import ResolvedModel
from agentscale.testing import ScriptedServer

PREFIX = "startcount/"


@dataclass
class Starts:
    """A resolver that "starts a server" on its first resolution, as `local/` models do, and notes
    how many of the run's events (a node started, ...) had happened by then: 0 is before the run."""

    scripted: ScriptedServer
    events: list[GraphEvent] = field(default_factory=list)
    started_after: list[int] = field(default_factory=list)

    async def resolve(self, model: ResolvedModel) -> Endpoint:
        if not self.started_after:
            self.started_after.append(len(self.events))
        return Endpoint("hosted_vllm/scripted", self.scripted.api_base)

    async def run(self, graph: Graph, question: str) -> RunResult:
        self.events.clear()
        return await graph.arun(question, on_event=self.events.append)

    def stop(self) -> None:
        self.started_after.clear()


@pytest.fixture
def starts(scripted: ScriptedServer) -> Iterator[Starts]:
    server = Starts(scripted)
    register_endpoint_resolver(PREFIX, server.resolve, starts_server=True)
    yield server
    endpoints_module._RESOLVERS.pop(PREFIX, None)
    endpoints_module._SERVER_PREFIXES.discard(PREFIX)


def _graph(store: Store, *, cache: bool = True, budget: str = "") -> Graph:
    text = f"name: started\nmodels:\n  m: {{model: {PREFIX}x}}\n{budget}"
    text += "defaults: {temperature: 0}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    return Graph.from_yaml(text, gateway=Gateway(store, GatewaySettings(cache=cache, max_retries=0)))


async def test_servers_start_before_the_run_unless_the_cache_may_answer(starts: Starts, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.db")
    first = await starts.run(_graph(store), "What is 1 + 1?")
    assert starts.started_after == [0]  # before the run: nothing cached for the route
    starts.stop()  # a new process: its server is gone, the database stays

    again = await starts.run(_graph(store), "What is 1 + 1?")
    assert again.answer == first.answer and again.usage.calls == 0
    assert starts.started_after == []  # answered from the cache: no server started

    fresh = await starts.run(_graph(store), "What is 2 + 2?")
    assert fresh.usage.calls == 1 and starts.started_after == [1]  # at the first cache miss: node a started


@pytest.mark.parametrize(
    ("cache", "budget"), [(False, ""), (True, "budget: {max_latency_s: 30}\n")], ids=["cache off", "time budget"]
)
async def test_without_the_cache_or_with_a_time_budget_servers_start_first(
    starts: Starts, tmp_path: Path, cache: bool, budget: str
) -> None:
    store = Store(tmp_path / "a.db")
    await starts.run(_graph(store), "What is 1 + 1?")
    starts.stop()
    await starts.run(_graph(store, cache=cache, budget=budget), "What is 1 + 1?")
    assert starts.started_after == [0]  # before the run, although the cache holds this route's answer


async def test_a_coordinators_ceo_server_starts_before_the_run_too(starts: Starts, scripted: ScriptedServer) -> None:
    """The nodes' servers started first, the CEO's and evaluator's at their first call: inside the
    first question's clock (a time budget's seconds), though the docs promise every server first."""
    text = (
        f'name: steered\nmodels:\n  w: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n'
        f"  ceo: {{model: {PREFIX}ceo}}\nbudget: {{max_latency_s: 30}}\nnodes:\n"
        "  - {id: s1, role: assistant, model: w}\n  - {id: s2, role: assistant, model: w}\n"
        "  - {id: f, role: fuser, model: w}\nedges: ['s1, s2 -> f']\nanswer_format: number\n"
        "coordinator: {model: ceo, max_rounds: 1}\n"
    )
    result = await starts.run(Graph.from_yaml(text, gateway=Gateway(None, GatewaySettings(cache=False))), "1 + 1?")
    assert result.rounds is not None and starts.started_after == [0]
