"""What a handbook build is given: the model it calls and, learning from a stored run, that run's graph,
model and topic.

`agentscale handbook build` names its model by a litellm route or by an alias; the aliases come from a
graph the user names and, with `--from-run`, from the run's own graph. Deciding which model that is,
and what a stored run contributes when the user leaves something out, is the library's: the CLI only
parses the flags and passes them here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from agentscale.errors import AgentScaleError, SpecError
from agentscale.graphs.located import load_located
from agentscale.graphs.spec import GraphSpec, ModelSpec, is_http_url
from agentscale.graphs.topology import Topology
from agentscale.graphs.validate import load_spec_text
from agentscale.models.registry import ResolvedModel, resolve
from agentscale.models.routes import route_problem
from agentscale.storage.tables import Run
from agentscale.tasks.registry import task_topic


def build_model(
    model: str | None,
    *,
    api_base: str | None = None,
    api_key_env: str | None = None,
    aliases: Mapping[str, ModelSpec] | None = None,
    run: Run | None = None,
) -> ResolvedModel:
    """The model a handbook build calls.

    `model` is a litellm route or an alias. `aliases` (a graph's `models:` the user named) win over the
    aliases of `run`'s graph, so a user can point an alias a run used at another endpoint. Without
    `model`, a build from `run` calls the model that answered the run (`default_model_for_run`), so
    learning from a run needs no flag but the run id. `api_base` and `api_key_env` override the
    chosen alias's (or give a route's).
    """
    known = dict(aliases or {})
    if run is not None:
        if model is None:
            model, run_aliases = default_model_for_run(run)
            known = {**run_aliases, **known}
        else:
            spec = run_graph(run)
            if spec is not None:
                known = {**dict(spec.models), **known}
    if model is None:
        raise AgentScaleError("give --model (a litellm route such as openai/gpt-4o-mini, or an alias with --graph)")
    return resolve_model(model, api_base=api_base, api_key_env=api_key_env, aliases=known)


def resolve_model(
    name: str, *, api_base: str | None = None, api_key_env: str | None = None, aliases: Mapping[str, ModelSpec] | None
) -> ResolvedModel:
    """A model from an alias of `aliases` (a graph's `models:`) or a litellm route (`--api-base` applies).

    A bare name that is neither is refused, listing the aliases, rather than sent to litellm, which
    would fail later with a provider error that does not say an alias was meant.
    """
    aliases = aliases or {}
    if api_base is not None and not is_http_url(api_base):  # a graph's api_base is checked the same way
        raise AgentScaleError(f"--api-base {api_base!r} is not an http(s) URL such as 'http://gpu1:8000/v1'")
    if name in aliases:
        spec = aliases[name]
        if api_base or api_key_env:
            spec = spec.model_copy(
                update={"api_base": api_base or spec.api_base, "api_key_env": api_key_env or spec.api_key_env}
            )
        return _checked(resolve(name, spec))
    if "/" not in name:
        known = ", ".join(sorted(aliases)) or "none"
        raise AgentScaleError(
            f"model {name!r} is neither a litellm route (provider/model) nor a known alias (aliases: {known})"
        )
    return _checked(resolve(name, ModelSpec(model=name, api_base=api_base, api_key_env=api_key_env)))


def _checked(model: ResolvedModel) -> ResolvedModel:
    """A route agentscale serves itself (sim/, local/) that does not exist is refused before the build
    starts, as a graph's is: `sim/llama-999b` failed every item and the build still exited 0."""
    problem = route_problem(model.route, model.api_base)
    if problem is not None:
        raise AgentScaleError(f"--model {model.name}: {problem}")
    return model


def run_topic(run: Run) -> str | None:
    """The topic of the task a stored run answered (its config's `task`, `task_topic`), or None when
    it names none.

    A build from a run files its behaviors under this topic unless the user gives one, so behaviors
    learnt from an eval of `rg:gsm_symbolic` carry that task as their topic, as a build from the task
    itself would (a task file: its name, though the run stores its absolute path).
    """
    config = json.loads(run.config_json or "{}")
    task = config.get("task")
    if task is None and isinstance(config.get("space_yaml"), str):  # an optimization: its space's task
        task = _space_task(config["space_yaml"])
    return task_topic(task) if isinstance(task, str) else None


def _space_task(space_yaml: str) -> str | None:
    """The task a stored search space names (`task.name`, else `task.path`); a build from an
    optimization's run filed its behaviors under no topic."""
    try:
        data = load_located(space_yaml).data
    except SpecError:
        return None
    task = data.get("task") if isinstance(data, dict) else None
    named = (task.get("name") or task.get("path")) if isinstance(task, dict) else None
    return named if isinstance(named, str) else None


def run_graph(run: Run) -> GraphSpec | None:
    """The graph a stored run answered with (validated again), or None for a run without one (a build)."""
    if not run.graph_yaml:
        return None
    return load_spec_text(run.graph_yaml, f"run {run.id}", stored=True)


def output_node(run: Run) -> str | None:
    """The node whose answer was a stored run's answer: the graph's output (else its first sink), or
    `solve` for a handbook build run, whose solutions are its `solve` calls."""
    spec = run_graph(run)
    if spec is None:
        return "solve"
    if spec.output:
        return spec.output
    sinks = Topology.build([n.id for n in spec.nodes], spec.edge_pairs()).sinks
    return sinks[0] if sinks else None


def default_model_for_run(run: Run) -> tuple[str, dict[str, ModelSpec]]:
    """The model that answered a stored run (its output node's, else the first node's with a model) and
    the run's model aliases, so `--from-run` works without `--model`.

    A build run has no graph: its config names the route (and endpoint) it called.
    """
    spec = run_graph(run)
    if spec is None:
        config = json.loads(run.config_json or "{}")
        route = config.get("model")
        if not isinstance(route, str):
            raise AgentScaleError(f"run {run.id} names no model; give --model")
        aliases = {route: ModelSpec(model=route, api_base=config.get("api_base"))} if "/" in route else {}
        return route, aliases
    output = output_node(run)
    nodes = sorted(spec.nodes, key=lambda n: n.id != output)  # the output node first
    for node in nodes:
        if node.model is not None:
            return node.model, dict(spec.models)
    raise AgentScaleError(f"run {run.id}'s graph calls no model; give --model")
