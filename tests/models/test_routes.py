"""A graph naming a local model that does not exist fails at load and in `validate`, at once."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentscale.models.endpoints as endpoints_module
from agentscale.cli.app import main
from agentscale.errors import SpecError
from agentscale.models.endpoints import Endpoint, register_endpoint_resolver
from agentscale.models.registry import ResolvedModel
from agentscale.models.routes import route_problem
from agentscale.runtime.graph import Graph

GRAPH = """\
name: bad-routes
models:
  m: {model: local/no-such-model}
nodes:
  - {id: a, role: assistant, model: m}
  - {id: b, role: critic, model: local/other-missing}
  - {id: c, role: critic, model: local/smollm2-135m}
edges: [a -> b, b -> c]
"""


def test_load_names_every_unknown_local_route() -> None:
    with pytest.raises(SpecError) as info:
        Graph.from_yaml(GRAPH, store=None)
    paths = [issue.path for issue in info.value.issues]
    assert paths == ["models.m.model", "nodes[1].model"]
    assert "known local routes: local/qwen2.5-coder-0.5b" in str(info.value)


def test_validate_reports_the_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "models.m.model (line 3): local/no-such-model is neither a bundled model" in err
    assert "nodes[1].model (line 6): local/other-missing" in err
    assert "Traceback" not in err


def test_validate_checks_search_space_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "name: s\ntask: {name: 'rg:chain_sum', train: 4, test: 4}\n"
        "models:\n  small: {model: local/nope}\nbudget: {compute: 4}\n"
    )
    assert main(["validate", str(path)]) == 1
    assert "models.small.model (line 4): local/nope is neither" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("SIM/llama-8b", "unknown route 'SIM/llama-8b': did you mean sim/llama-8b?"),
        (" sim/llama-8b", "route ' sim/llama-8b' has spaces around it"),
        ("Local/smollm2-135m", "unknown route 'Local/smollm2-135m': did you mean local/smollm2-135m?"),
        ("openai/", "route 'openai/' names no model after its provider (openai/<model>)"),
    ],
)
def test_a_route_litellm_would_refuse_at_the_first_call_is_refused_at_load(route: str, message: str) -> None:
    """These passed `validate`, then every call failed with "LLM Provider NOT provided" (fuzzer)."""
    with pytest.raises(SpecError) as info:
        Graph.from_yaml(f"name: g\nnodes: [{{id: a, role: assistant, model: '{route}'}}]\n", store=None)
    assert [(issue.path, issue.message, issue.line) for issue in info.value.issues] == [("nodes[0].model", message, 2)]


def test_a_misspelt_provider_is_refused_at_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """litellm fails every call of `opnai/...` ("LLM Provider NOT provided"); validate says so first."""
    path = tmp_path / "g.yaml"
    path.write_text(
        "name: typo\nmodels:\n  m: {model: opnai/gpt-4o-mini}\n"
        "nodes:\n  - {id: a, role: assistant, model: m}\n  - {id: b, role: critic, model: hosted_vllm/q}\n"
        "edges: [a -> b]\n"
    )
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "models.m.model (line 3): route 'opnai/gpt-4o-mini': litellm knows no provider 'opnai'" in err
    assert "did you mean openai/gpt-4o-mini?" in err
    assert "nodes[1]" not in err  # hosted_vllm is one of litellm's providers
    assert "Traceback" not in err


@pytest.mark.parametrize("route", ["openai/gpt-4o-mini", "hosted_vllm/q", "anthropic/claude", "openrouter/a/b"])
def test_providers_litellm_knows_pass(route: str) -> None:
    assert route_problem(route) is None


def test_a_prefix_with_a_registered_resolver_is_not_litellm_s_to_judge() -> None:
    """A plug-in's (or a test's) prefix decides where its calls go: no provider check."""

    async def resolve(model: ResolvedModel) -> Endpoint:
        return Endpoint("openai/x", "http://127.0.0.1:9/v1", None)

    assert route_problem("routestest/x") is not None
    register_endpoint_resolver("routestest/", resolve)
    try:
        assert route_problem("routestest/x") is None
    finally:
        endpoints_module._RESOLVERS.pop("routestest/", None)


def test_a_plugin_does_not_replace_a_resolver_registered_before_it() -> None:
    """`replace=False` (how plug-ins register) keeps the resolver already there, say a test's or the
    app's own; `replace=True` takes over (a mutation audit: the flag was not tested)."""

    async def first(model: ResolvedModel) -> Endpoint:
        return Endpoint("openai/first")

    async def second(model: ResolvedModel) -> Endpoint:
        return Endpoint("openai/second")

    register_endpoint_resolver("routestest/", first)
    try:
        register_endpoint_resolver("routestest/", second, replace=False)
        assert endpoints_module._RESOLVERS["routestest/"] is first
        register_endpoint_resolver("routestest/", second)
        assert endpoints_module._RESOLVERS["routestest/"] is second
    finally:
        endpoints_module._RESOLVERS.pop("routestest/", None)


def test_a_coordinators_evaluator_route_is_checked_at_load() -> None:
    """The coordinator's `evaluator` names a route like any node: misspelt, it failed every round's
    evaluation call mid-run instead of at load."""
    text = """\
name: coordinated
models:
  ceo: {model: hosted_vllm/ceo, api_base: "http://127.0.0.1:9/v1"}
nodes:
  - {id: a, role: assistant, model: ceo}
coordinator: {model: ceo, max_rounds: 1, evaluator: local/no-such-evaluator}
"""
    with pytest.raises(SpecError) as info:
        Graph.from_yaml(text, store=None)
    assert "coordinator.evaluator" in str(info.value) and "no-such-evaluator" in str(info.value)
    Graph.from_yaml(text.replace("local/no-such-evaluator", "ceo"), store=None)  # an alias is fine
