"""A graph with `memory:`: retrieved behaviors reach every model-calling node's prompt; citations count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentscale import AgentScaleError, Gateway, Graph, Store
from agentscale.evaluate.engine import EvalConfig, Evaluation
from agentscale.graphs.validate import load_spec_text
from agentscale.memory import Handbook, HandbookNotFound
from agentscale.memory.inject import with_handbook
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml
from tests.memory.conftest import seed_handbook, write_task

BEHAVIORS = [
    ("behavior_estimate_first", "Estimate the sum roughly first so that slips in addition stand out."),
    ("behavior_carry_digits", "Add digits column by column from the right, carrying tens to the next column."),
    ("behavior_triangle_area", "The area of a triangle is half of its base times its height."),
]
FAN_IN = """name: fan
memory: {handbook: math, top_k: 2}
nodes:
  - {id: a, role: assistant, model: m}
  - {id: b, role: assistant, model: m}
  - {id: c, role: critic, model: m}
  - {id: out, role: fuser, model: m}
edges: ['a, b -> c', 'a, b, c -> out']
output: out
answer_format: number
"""
BLOCK = "Behaviors from the handbook that may help"


def _user_prompts(scripted: ScriptedServer) -> list[str]:
    return [str(r["messages"][-1]["content"]) for r in scripted.completion_requests]


async def test_prompts_carry_the_retrieved_behaviors_and_citations_are_counted(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    seed_handbook(store, "math", BEHAVIORS)
    scripted.add_rule(
        Rule(pattern="Candidate answers", replies=["Both agree (behavior_carry_digits).\nFinal answer: 42"])
    )
    scripted.add_rule(Rule(pattern="Proposed answers", replies=["No errors found.\nFinal answer: 42"]))
    scripted.add_rule(
        Rule(pattern=BLOCK, replies=["Per behavior_estimate_first, about 40. 15 + 27 = 42.\nFinal answer: 42"])
    )
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, FAN_IN), gateway=gateway)
    result = await graph.arun("What is 15 + 27? Add the digits and estimate the sum first.")

    assert result.handbook == "math" and result.rounds is None and result.answer == "42"
    assert set(result.behaviors) == {"behavior_estimate_first", "behavior_carry_digits"}
    assert result.cited == ["behavior_estimate_first", "behavior_carry_digits"]
    prompts = _user_prompts(scripted)
    assert len(prompts) == 4  # a, b, c, out: every node that calls a model
    for prompt in prompts:
        assert prompt.startswith(BLOCK)
        assert "- behavior_estimate_first: Estimate the sum roughly first" in prompt
        assert "- behavior_carry_digits: Add digits column by column" in prompt
        assert "behavior_triangle_area" not in prompt  # top_k 2, and irrelevant
        assert "cite each one you use by name" in prompt
    assert result.to_dict()["memory"] == {
        "handbook": "math",
        "behaviors": result.behaviors,
        "cited": result.cited,
    }
    rows = {r.name: r for r in Handbook(store, "math", embedder=None).behaviors()}
    assert (rows["behavior_estimate_first"].times_retrieved, rows["behavior_estimate_first"].times_cited) == (1, 1)
    assert (rows["behavior_triangle_area"].times_retrieved, rows["behavior_triangle_area"].times_cited) == (0, 0)

    await graph.arun("What is 15 + 27? Add the digits and estimate the sum first.", record=False)
    assert Handbook(store, "math", embedder=None).get("behavior_estimate_first").times_retrieved == 1


async def test_no_relevant_behavior_leaves_the_prompt_unchanged(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    seed_handbook(store, "math", BEHAVIORS)
    body = "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"
    with_memory = Graph.from_yaml(graph_yaml(scripted.api_base, "memory: {handbook: math}\n" + body), gateway=gateway)
    plain = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=gateway)
    result = await with_memory.arun("What is 2 * 3?")
    again = await plain.arun("What is 2 * 3?")
    assert result.handbook == "math" and result.behaviors == [] and result.answer == "6"
    assert again.usage.cached_calls == 1  # the very same messages: served from the response cache


async def test_eval_with_handbook_counts_citations_in_right_and_wrong_answers(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    seed_handbook(store, "math", BEHAVIORS)
    data = write_task(
        tmp_path / "t.jsonl", [("What is 3 + 4 with carry digits?", "7"), ("What is 5 + 2 with carry digits?", "8")]
    )
    scripted.add_rule(Rule(pattern=r"3 \+ 4", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    scripted.add_rule(Rule(pattern=r"5 \+ 2", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"), gateway=gateway
    )
    assert graph.spec.memory is None
    evaluation = Evaluation(graph, EvalConfig(task=str(data), handbook="math"))
    summary = await evaluation.run()
    assert (summary.n, summary.correct) == (2, 1)
    row = Handbook(store, "math", embedder=None).get("behavior_carry_digits")
    assert (row.times_retrieved, row.times_cited, row.times_cited_correct, row.times_cited_wrong) == (2, 2, 1, 1)
    assert "memory: {handbook: math" in (store.get_run(evaluation.run_id).graph_yaml or "")
    assert json.loads(store.get_run(evaluation.run_id).config_json)["handbook"] == "math"
    assert all(BLOCK in p for p in _user_prompts(scripted))

    resumed = Evaluation.resume(evaluation.run_id, gateway)  # the handbook comes back from the stored run
    assert resumed.graph.spec.memory is not None and resumed.graph.spec.memory.handbook == "math"


def _counters(store: Store, name: str) -> tuple[int, int, int, int]:
    row = Handbook(store, "math", embedder=None).get(name)
    return row.times_retrieved, row.times_cited, row.times_cited_correct, row.times_cited_wrong


async def test_a_resume_that_scores_a_stored_answer_counts_its_citations_outcome(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """A process killed between storing an item's answer (its retrieval and citation counted) and its
    verdict: the resume scores the stored answer, and counts the citation as in a right or wrong
    answer then (it was never counted: 2 citations, 0 outcomes)."""
    seed_handbook(store, "math", BEHAVIORS)
    data = write_task(
        tmp_path / "t.jsonl", [("What is 3 + 4 with carry digits?", "7"), ("What is 5 + 2 with carry digits?", "8")]
    )
    scripted.add_rule(Rule(pattern=r"3 \+ 4|5 \+ 2", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n"), gateway=gateway
    )
    evaluation = Evaluation(graph, EvalConfig(task=str(data), handbook="math"))
    await evaluation.run()
    assert _counters(store, "behavior_carry_digits") == (2, 2, 1, 1)
    with store.engine.begin() as connection:  # the kill: answers and citations stored, no verdict, no outcome
        connection.exec_driver_sql("UPDATE runitem SET correct = NULL")
        connection.exec_driver_sql("UPDATE behavior SET times_cited_correct = 0, times_cited_wrong = 0")
        connection.exec_driver_sql("UPDATE run SET status = 'interrupted'")
    asked = len(scripted.completion_requests)
    summary = await Evaluation.resume(evaluation.run_id, gateway).run()
    assert len(scripted.completion_requests) == asked and (summary.n, summary.correct) == (2, 1)
    assert _counters(store, "behavior_carry_digits") == (2, 2, 1, 1)


async def test_a_retry_of_failed_calls_counts_the_retried_items_behaviors_once(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """q1 answered although one of its two calls failed; `--retry-errors` asks it again (the call that
    answered replays from the cache). Its first attempt's retrieval, citation and outcome are taken
    back, so each question counts once (they read 3, 3, 3 for two questions before)."""
    seed_handbook(store, "math", BEHAVIORS)
    data = write_task(
        tmp_path / "t.jsonl", [("What is 3 + 4 with carry digits?", "7"), ("What is 5 + 2 with carry digits?", "7")]
    )
    scripted.add_rule(Rule(pattern=r"5 \+ 2", status=400, times=1))
    scripted.add_rule(Rule(pattern=r"3 \+ 4|5 \+ 2", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    pair = "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, pair + "  - {id: v, role: vote}\nedges: ['a, b -> v']\n"), gateway=gateway
    )
    first = await Evaluation(graph, EvalConfig(task=str(data), handbook="math")).run()
    assert [item.item_id for item in first.retryable] == ["q1"] and first.correct == 2
    assert _counters(store, "behavior_carry_digits") == (2, 2, 2, 0)
    retried = await Evaluation.resume(first.run_id or "", gateway, retry_errors=True).run()
    assert retried.correct == 2 and not retried.call_failures
    assert _counters(store, "behavior_carry_digits") == (2, 2, 2, 0)


COORDINATED = """  ceo: {model: hosted_vllm/ceo, api_base: "API"}
name: talk
memory: {handbook: math}
nodes:
  - {id: s1, role: assistant, model: m}
  - {id: s2, role: assistant, model: m}
  - {id: f, role: fuser, model: m}
edges: ['s1, s2 -> f']
answer_format: number
coordinator: {model: ceo, max_rounds: 1}
"""


async def test_a_coordinator_graph_with_memory_records_behavior_use_like_any_graph(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """A discussion shows the behaviors to its workers, says which were cited in its result, and
    `eval --handbook` counts retrievals, citations and their verdicts as for a DAG."""
    seed_handbook(store, "math", BEHAVIORS)
    data = write_task(
        tmp_path / "t.jsonl", [("What is 3 + 4 with carry digits?", "7"), ("What is 5 + 2 with carry digits?", "8")]
    )
    ceo = json.dumps({"decision": "continue", "agents": 2, "direction": "", "max_tokens": 64})
    scripted.add_rule(Rule(model="ceo", replies=[ceo]))
    scripted.add_rule(Rule(pattern=r"3 \+ 4", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    scripted.add_rule(Rule(pattern=r"5 \+ 2", replies=["Using behavior_carry_digits: 7.\nFinal answer: 7"]))
    text = graph_yaml(scripted.api_base, COORDINATED.replace("API", scripted.api_base))
    graph = Graph.from_yaml(text, gateway=gateway)

    result = await graph.arun("What is 3 + 4 with carry digits?", record=False)
    assert result.rounds is not None and [r.ran for r in result.rounds] == [True]
    assert result.handbook == "math" and "behavior_carry_digits" in result.behaviors
    assert result.cited == ["behavior_carry_digits"]
    assert set(result.to_dict()) >= {"rounds", "memory"}
    workers = [r for r in scripted.completion_requests if r["model"] == "scripted"]
    assert len(workers) == 3 and all(BLOCK in str(r["messages"][-1]["content"]) for r in workers)
    assert Handbook(store, "math", embedder=None).get("behavior_carry_digits").times_retrieved == 0  # not recorded

    evaluation = Evaluation(Graph.from_yaml(text, gateway=gateway), EvalConfig(task=str(data), handbook="math"))
    summary = await evaluation.run()
    assert (summary.n, summary.correct) == (2, 1)
    row = Handbook(store, "math", embedder=None).get("behavior_carry_digits")
    assert (row.times_retrieved, row.times_cited, row.times_cited_correct, row.times_cited_wrong) == (2, 2, 1, 1)


async def test_a_behavior_named_only_by_the_ceo_is_not_cited(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """The CEO is not shown the behaviors; a name it repeats in its direction (from a critique, or a
    guess) was counted as a citation although no worker used it."""
    seed_handbook(store, "math", BEHAVIORS)
    ceo = {"decision": "continue", "agents": 2, "direction": "try behavior_carry_digits", "max_tokens": 64}
    scripted.add_rule(Rule(model="ceo", replies=[json.dumps(ceo)]))
    scripted.add_rule(Rule(pattern=r"3 \+ 4", replies=["3 + 4 = 7.\nFinal answer: 7"]))
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, COORDINATED.replace("API", scripted.api_base)), gateway=gateway
    )
    result = await graph.arun("What is 3 + 4 with carry digits?", record=False)
    assert "behavior_carry_digits" in result.behaviors and "behavior_carry_digits" in result.trace[0].completion
    assert result.cited == []


async def test_memory_topic_keeps_that_topics_behaviors(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """Retrieval by topic (the handbook paper's MATH retrieval is by subject) was only in `handbook
    search --topic`: a graph's `memory:` refused `topic` and retrieved across every topic."""
    seed_handbook(store, "mixed", BEHAVIORS, topic="arithmetic")
    seed_handbook(store, "mixed", [("behavior_carry_units", "Carry the units of each quantity to the end.")], "physics")
    body = "name: g\nmemory: {handbook: mixed, topic: physics}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=gateway)
    result = await graph.arun("Carry the digits: what is 15 + 27?", record=False)
    assert result.behaviors == ["behavior_carry_units"]
    typo = Graph.from_yaml(graph_yaml(scripted.api_base, body.replace("physics", "physic")), gateway=gateway)
    with pytest.raises(AgentScaleError, match=r"memory.topic 'physic': handbook 'mixed' has no behaviors of it"):
        await typo.arun("What is 1 + 1?", record=False)


async def test_missing_handbook_or_database_is_a_clear_error(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    body = "name: g\nmemory: {handbook: nope}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=gateway)
    with pytest.raises(HandbookNotFound, match="no handbook 'nope'"):
        await graph.arun("What is 1 + 1?")
    assert scripted.completion_requests == [] and store.list_runs() == []
    data = write_task(tmp_path / "t.jsonl", [("What is 1 + 1?", "2")])
    with pytest.raises(HandbookNotFound):
        Evaluation(graph, EvalConfig(task=str(data)))
    assert store.list_runs() == []
    detached = Graph.from_yaml(graph_yaml(scripted.api_base, body), store=None)
    with pytest.raises(AgentScaleError, match="needs a database"):
        await detached.arun("What is 1 + 1?")
    Handbook(store, "nope").create()  # as a build that failed before its first behavior leaves it
    with pytest.raises(AgentScaleError, match="handbook 'nope' holds no behavior"):  # an eval labelled with it
        Evaluation(graph, EvalConfig(task=str(data)))
    assert store.list_runs() == []


def test_with_handbook_keeps_the_graphs_top_k_and_topic() -> None:
    """`--handbook other` on a graph with `memory: {top_k: 2, topic: physics}` must change only the
    handbook: reset to defaults, the run retrieved 5 behaviors of every topic, not what the graph
    was tuned with."""
    tuned = load_spec_text(
        "name: g\nmemory: {handbook: math, top_k: 2, topic: physics}\nnodes:\n  - {id: a, role: assistant, model: openai/gpt-4o-mini}\n"
    )
    swapped = with_handbook(tuned, " other ")
    assert swapped.memory is not None
    assert (swapped.memory.handbook, swapped.memory.top_k, swapped.memory.topic) == ("other", 2, "physics")
    plain = with_handbook(
        load_spec_text("name: g\nnodes:\n  - {id: a, role: assistant, model: openai/gpt-4o-mini}\n"), "math"
    )
    assert plain.memory is not None and (plain.memory.handbook, plain.memory.top_k, plain.memory.topic) == (
        "math",
        5,
        None,
    )
    with pytest.raises(AgentScaleError, match="bad handbook name 'a b'"):
        with_handbook(tuned, "a b")


RELEVANT = [
    ("behavior_estimate_first", "Estimate the sum roughly first so that slips in addition stand out."),
    ("behavior_carry_digits", "Add the digits column by column from the right, carrying tens."),
    ("behavior_check_the_sum", "Check the sum by subtracting one of the added numbers from it."),
]


async def test_memory_top_k_is_how_many_behaviors_a_prompt_gets(
    scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """(A mutation audit.) Mutant `search(question, self.top_k, ...)` -> `search(question, 5, ...)` survived
    tests/memory/test_retrieve.py, test_inject.py and test_handbook.py: the one graph test with a top_k (2)
    has only two relevant behaviors, so `top_k` never cut anything. Broken, every prompt would carry the
    default number of behaviors whatever the graph says (longer prompts, other answers, the counters of
    behaviors never meant to be shown incremented)."""
    seed_handbook(store, "math", RELEVANT)
    body = "name: one\nmemory: {handbook: math, top_k: 1}\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=gateway)
    result = await graph.arun("What is 15 + 27? Add the digits and check the sum.")
    assert len(result.behaviors) == 1
    [request] = scripted.completion_requests
    prompt = str(request["messages"][-1]["content"])
    assert sum(f"- {name}:" in prompt for name, _ in RELEVANT) == 1
    counts = [b.times_retrieved for b in Handbook(store, "math", embedder=None).behaviors()]
    assert sorted(counts) == [0, 0, 1]


async def test_a_retried_item_that_cited_nothing_counts_its_retrieval_once(
    tmp_path: Path, scripted: ScriptedServer, gateway: Gateway, store: Store
) -> None:
    """(A mutation audit.) Mutant `use["behaviors"]` -> `use["cited"]` survived tests/memory/test_retrieve.py,
    test_inject.py and test_handbook.py: the retry test's answers all cite a behavior. An item whose answer
    cited none, asked again by `eval --resume --retry-errors`, then kept its first attempt's
    `times_retrieved`: counted twice, and `handbook prune --min-uses N` (retrieved ≥ N, cited < N) removes
    such behaviors sooner."""
    seed_handbook(store, "math", BEHAVIORS)
    data = write_task(
        tmp_path / "t.jsonl", [("What is 3 + 4 with carry digits?", "7"), ("What is 5 + 2 with carry digits?", "7")]
    )
    scripted.add_rule(Rule(pattern=r"5 \+ 2", status=400, times=1))
    scripted.add_rule(Rule(pattern=r"3 \+ 4|5 \+ 2", replies=["Seven.\nFinal answer: 7"]))  # cites nothing
    pair = "name: g\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: assistant, model: m}\n"
    graph = Graph.from_yaml(
        graph_yaml(scripted.api_base, pair + "  - {id: v, role: vote}\nedges: ['a, b -> v']\n"), gateway=gateway
    )
    first = await Evaluation(graph, EvalConfig(task=str(data), handbook="math")).run()
    assert [item.item_id for item in first.retryable] == ["q1"]
    assert _counters(store, "behavior_carry_digits") == (2, 0, 0, 0)
    retried = await Evaluation.resume(first.run_id or "", gateway, retry_errors=True).run()
    assert retried.correct == 2 and not retried.call_failures
    assert _counters(store, "behavior_carry_digits") == (2, 0, 0, 0)
