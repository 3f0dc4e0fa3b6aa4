"""Which model a handbook build calls and which topic it files behaviors under (memory/build_inputs.py)."""

from __future__ import annotations

import pytest

from agentscale import Store
from agentscale.errors import AgentScaleError
from agentscale.graphs.spec import ModelSpec
from agentscale.memory import build_model, resolve_model, run_topic
from agentscale.memory.build_inputs import default_model_for_run, output_node
from agentscale.storage.tables import Run

RUN_MODELS = (
    "models:\n"
    '  small: {model: hosted_vllm/small, api_base: "http://run-small/v1"}\n'
    '  big: {model: hosted_vllm/big, api_base: "http://run-big/v1"}\n'
)
# the fuser is the output and calls `big`; the assistants call `small`
FUSED = RUN_MODELS + (
    "name: g\nnodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: assistant, model: small}\n"
    "  - {id: f, role: fuser, model: big}\nedges: ['a, b -> f']\n"
)
# the output is a vote (no model): the first node with a model answers for the run
VOTED = RUN_MODELS + (
    "name: v\nnodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: assistant, model: big}\n"
    "  - {id: v, role: vote}\nedges: ['a, b -> v']\n"
)


def eval_run(store: Store, graph: str, task: object = "rg:chain_sum") -> Run:
    return store.create_run("eval", graph_name="g", graph_yaml=graph, config={"task": task, "n": 2})


def test_a_run_without_model_flag_is_learnt_with_the_model_of_its_output_node(store: Store) -> None:
    model = build_model(None, run=eval_run(store, FUSED))
    assert (model.name, model.route, model.api_base) == ("big", "hosted_vllm/big", "http://run-big/v1")
    voted = eval_run(store, VOTED)
    assert output_node(voted) == "v"
    assert build_model(None, run=voted).route == "hosted_vllm/small"


def test_a_named_alias_resolves_among_the_runs_aliases_and_the_users_win(store: Store) -> None:
    run = eval_run(store, FUSED)
    assert build_model("small", run=run).api_base == "http://run-small/v1"
    mine = {"small": ModelSpec(model="hosted_vllm/mine", api_base="http://mine/v1")}
    chosen = build_model("small", run=run, aliases=mine)
    assert (chosen.route, chosen.api_base) == ("hosted_vllm/mine", "http://mine/v1")
    # without --model too: the run's output model `big` is the run's alias, unless the user redefines it
    mine_big = {"big": ModelSpec(model="hosted_vllm/other", api_base="http://other/v1")}
    assert build_model(None, run=run, aliases=mine_big).route == "hosted_vllm/other"
    # --api-base and --api-key-env override the alias's
    moved = build_model("small", run=run, api_base="http://moved/v1", api_key_env="KEY")
    assert (moved.route, moved.api_base, moved.api_key_env) == ("hosted_vllm/small", "http://moved/v1", "KEY")


def test_a_build_run_is_learnt_with_the_route_it_called(store: Store) -> None:
    build = store.create_run("handbook", config={"model": "hosted_vllm/solver", "api_base": "http://solver/v1"})
    assert output_node(build) == "solve"
    model = build_model(None, run=build)
    assert (model.route, model.api_base) == ("hosted_vllm/solver", "http://solver/v1")
    nameless = store.create_run("handbook", config={})
    with pytest.raises(AgentScaleError, match=f"run {nameless.id} names no model; give --model"):
        default_model_for_run(nameless)


def test_routes_aliases_and_refusals(store: Store) -> None:
    route = build_model("openai/gpt-4o-mini", api_base="http://proxy/v1")
    assert (route.route, route.api_base) == ("openai/gpt-4o-mini", "http://proxy/v1")
    with pytest.raises(AgentScaleError, match="give --model"):
        build_model(None)
    with pytest.raises(AgentScaleError, match=r"'big' is neither a litellm route .* \(aliases: small\)"):
        resolve_model("big", aliases={"small": ModelSpec(model="hosted_vllm/small")})
    with pytest.raises(AgentScaleError, match=r"aliases: none"):
        build_model("big", run=store.create_run("handbook", config={"model": "hosted_vllm/solver"}))


def test_the_topic_of_a_run_is_its_task(store: Store) -> None:
    assert run_topic(eval_run(store, FUSED, task="rg:gsm_symbolic")) == "rg:gsm_symbolic"
    assert run_topic(eval_run(store, FUSED, task=None)) is None
    assert run_topic(store.create_run("run", graph_yaml=FUSED)) is None
    # an optimization's: the task of its stored space (behaviors were filed under no topic)
    space = "name: s\ntask: {path: /data/sums.jsonl, train: 4, test: 4}\nmodels: {m: {model: sim/llama-1b}}\n"
    assert run_topic(store.create_run("optimize", config={"space_yaml": space})) == "sums.jsonl"
    named = space.replace("path: /data/sums.jsonl", "name: 'sim:math'")
    assert run_topic(store.create_run("optimize", config={"space_yaml": named})) == "sim:math"
    assert run_topic(store.create_run("optimize", config={"space_yaml": "task: ["})) is None  # not YAML
