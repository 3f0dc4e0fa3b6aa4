"""`benchmarks/real_coordinator.py` reads the CEO's behaviour back from a stored eval correctly (the
figures in docs/coordinator.md come from this reading; here the eval runs on the scripted server)."""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path

from agentscale import Gateway, Graph
from agentscale.evaluate.engine import EvalConfig, Evaluation
from agentscale.testing import Rule, ScriptedServer

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def decision(kind: str) -> str:
    return json.dumps({"decision": kind, "agents": 2, "direction": "check", "max_tokens": 64})


def test_discussion_stats_count_parses_fallbacks_and_stops(
    scripted: ScriptedServer, gateway: Gateway, tmp_path: Path
) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        bench = importlib.import_module("real_coordinator")
    finally:
        sys.path.remove(str(BENCHMARKS))
    data = tmp_path / "sums.jsonl"
    # the second reference is wrong on purpose: the team's right sum is then a wrong answer
    data.write_text(
        '{"id": "a", "question": "What is 2 + 3?", "answer": 5}\n{"id": "b", "question": "What is 4 + 4?", "answer": 9}\n'
    )
    scripted.add_rule(Rule(model="ceo", pattern=r"2 \+ 3", replies=[decision("continue"), decision("stop")]))
    scripted.add_rule(Rule(model="ceo", pattern=r"4 \+ 4", replies=["no idea", "still none", "nope", decision("stop")]))
    scripted.add_rule(Rule(model="judge", pattern=r"2 \+ 3", replies=['{"correct": 1, "advice": "fine"}']))
    scripted.add_rule(Rule(model="judge", pattern=r"4 \+ 4", replies=["looks fine to me"]))
    text = (
        f'models:\n  m: {{model: hosted_vllm/scripted, api_base: "{scripted.api_base}"}}\n'
        f'  ceo: {{model: hosted_vllm/ceo, api_base: "{scripted.api_base}"}}\n'
        f'  judge: {{model: hosted_vllm/judge, api_base: "{scripted.api_base}"}}\n'
        "name: led\nnodes:\n  - {id: s1, role: assistant, model: m}\n  - {id: s2, role: assistant, model: m}\n"
        "  - {id: out, role: vote}\nedges:\n  - s1, s2 -> out\ncoordinator: {model: ceo, max_rounds: 3, evaluator: judge}\n"
    )
    graph = Graph.from_yaml(text, gateway=gateway)
    evaluation = Evaluation(graph, EvalConfig(task=str(data), scorer="numeric", concurrency=1))
    asyncio.run(evaluation.run())
    assert gateway.store is not None
    stats = bench.discussion_stats(gateway.store, evaluation.run_id, evaluation.task)
    assert (stats["ceo_replies"], stats["ceo_parsed"]) == (6, 3)
    assert (stats["ceo_decisions"], stats["ceo_fallbacks"]) == (4, 1)
    assert stats["rounds_mean"] == 1.0 and stats["rounds_hist"] == {"1": 2}
    assert (stats["stopped_right"], stats["stopped_wrong"]) == (1, 1)
    assert stats["judged"] == {"right->stop": 1, "wrong->stop": 1}
    assert stats["continue_asked"] == {"agents": {2: 1}, "max_tokens": {64: 1}, "with_direction": 1}
    assert stats["control_tokens_per_item"] > 0 and stats["evaluator"] == {
        "right->said correct": 1,
        "wrong->unparsed": 1,
    }
