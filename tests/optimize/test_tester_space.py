"""The tester role in search spaces: a model-free chooser like vote, offered on code tasks only, and an
optimization that finds the tester graph two half-right models need."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agentscale import Gateway, GatewaySettings, Store
from agentscale.cli.app import main
from agentscale.errors import AgentScaleError
from agentscale.graphs.located import load_located
from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.distribution import GraphDistribution, repair
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import space_from_data
from agentscale.optimize.trials import candidate_from_json
from agentscale.testing import Rule, ScriptedServer

A = NodeChoice("assistant", "a")
T = NodeChoice("tester", None)
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
EVEN = r"# task \d*[02468]\b"


def code_task(path: Path, count: int = 24) -> Path:
    """`add` with a stated example (what the tester runs) and a hidden check (what the scorer runs)."""
    with path.open("w") as handle:
        for i in range(count):
            question = f'# task {i}\ndef add(a, b):\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    """\n'
            row = {"id": f"t{i}", "question": question, "answer": "def check(f):\n    assert f(4, 5) == 9\n"}
            handle.write(json.dumps({**row, "entry_point": "add"}) + "\n")
    return path


def space_text(task: str, api_base: str, roles: str = "[assistant, vote, tester]") -> str:
    return f"""\
name: tested
task: {{path: "{task}", scorer: code, train: 8, test: 12, seed: 0}}
models:
  a: {{model: hosted_vllm/a, api_base: "{api_base}", params_b: 1.0}}
  b: {{model: hosted_vllm/b, api_base: "{api_base}", params_b: 1.0}}
roles: {roles}
max_nodes: 3
budget: {{compute: 2.5}}
defaults: {{max_tokens: 64}}
optimizer: {{method: agent-reinforce, iterations: 4, samples: 3, minibatch: 4, seed: 0}}
"""


def test_a_tester_needs_two_inputs_and_no_model() -> None:
    assert CandidateGraph((A, A, T), frozenset({(0, 2), (1, 2)})).is_valid
    assert "a tester over one input" in CandidateGraph((A, T), frozenset({(0, 1)})).problems()[0]
    assert any(
        "only vote and tester" in p
        for p in CandidateGraph((A, NodeChoice("tester", "a")), frozenset({(0, 1)})).problems()
    )
    assert repair((A, T), {(0, 1)}) == CandidateGraph((A,), frozenset())  # a one-input tester is a copy: dropped


def test_sampled_testers_choose_between_inputs(tmp_path: Path) -> None:
    space = space_from_data(load_located(space_text(str(code_task(tmp_path / "t.jsonl")), "http://x/v1"), "s.yaml"))
    distribution = GraphDistribution(SearchProblem.from_space(space))
    rng = np.random.default_rng(0)
    testers = [
        (graph, index)
        for graph in (distribution.sample(rng) for _ in range(300))
        for index, node in enumerate(graph.nodes)
        if node.role == "tester"
    ]
    assert testers  # the space offers the role
    assert all(graph.nodes[i].model is None and len(graph.predecessors[i]) >= 2 for graph, i in testers)


def test_a_tester_on_a_task_without_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(30)))
    text = space_text(str(data), "http://127.0.0.1:9/v1").replace("scorer: code", "scorer: numeric")
    space = space_from_data(load_located(text, "s.yaml"))
    with pytest.raises(AgentScaleError, match=r"'tester' runs candidate programs.*answers in 'number'"):
        Optimization(space, Gateway(Store(tmp_path / "o.db")), space_text=text)
    (tmp_path / "space.yaml").write_text(text)
    assert main(["optimize", str(tmp_path / "space.yaml"), "--db", str(tmp_path / "c.db")]) != 0
    err = capsys.readouterr().err
    assert "drop 'tester' from roles" in err and "Traceback" not in err


def half_right(scripted: ScriptedServer) -> None:
    """a is right on even tasks, b on odd ones: alone or in a vote each is right half the time; a tester
    over one answer of each runs both on the stated example and passes on the right one every time."""
    scripted.add_rule(Rule(model="a", pattern=EVEN, replies=[RIGHT]))
    scripted.add_rule(Rule(model="a", replies=[WRONG]))
    scripted.add_rule(Rule(model="b", pattern=EVEN, replies=[WRONG]))
    scripted.add_rule(Rule(model="b", replies=[RIGHT]))


async def test_random_search_finds_the_tester_over_two_half_right_models(
    tmp_path: Path, scripted: ScriptedServer, store: Store
) -> None:
    half_right(scripted)
    roles = "[assistant, tester]"  # a vote in the space makes the mixed tester rare among random draws
    text = space_text(str(code_task(tmp_path / "t.jsonl")), scripted.api_base, roles).replace(
        "agent-reinforce", "random"
    )
    space = space_from_data(load_located(text, "space.yaml"), "space.yaml")
    result = await Optimization(space, Gateway(store, GatewaySettings(max_retries=0)), space_text=text).run()
    assert result.best is not None
    assert [n.role for n in result.best.candidate.nodes].count("tester") == 1
    assert {n.model for n in result.best.candidate.nodes if n.model} == {"a", "b"}
    assert result.best.accuracy == 1.0
    assert sum(score.accuracy for score in result.singles.values()) == pytest.approx(
        1.0
    )  # each right where the other is wrong


async def test_agent_reinforce_pilots_code_with_the_tester(
    tmp_path: Path, scripted: ScriptedServer, store: Store
) -> None:
    """Its pilot's self-consistency chooses with the tester, never a vote of programs (a copy of the first).
    (On this space it then searches single-model graphs only and misses the mixed tester: issue 15.)"""
    half_right(scripted)
    text = space_text(str(code_task(tmp_path / "t.jsonl")), scripted.api_base)
    space = space_from_data(load_located(text, "space.yaml"), "space.yaml")
    result = await Optimization(space, Gateway(store, GatewaySettings(max_retries=0)), space_text=text).run()
    pilot = [candidate_from_json(t.candidate_json) for t in store.trials(result.run_id) if t.iteration == 0]
    assert len(pilot) == 2 and all(c.nodes[-1].role == "tester" and c.size == 3 for c in pilot)
    assert result.best is not None and result.best.n == 12
    baseline = result.baselines["vote"]  # the test split's self-consistency baseline chooses the same way
    assert baseline.candidate.nodes[-1].role == "tester" and baseline.name.startswith("tester of 2 x ")
