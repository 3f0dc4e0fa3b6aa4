"""Search-space files validate like graph files: paths, lines, and the space-specific rules."""

from __future__ import annotations

import pytest

from agentscale.errors import SpecError
from agentscale.graphs.located import load_located
from agentscale.graphs.validate import looks_like_space
from agentscale.optimize.runner import load_task_split, method_and_seed
from agentscale.optimize.space import space_from_data

GOOD = """\
name: quick
task: {name: "rg:basic_arithmetic", train: 20, test: 50, seed: 0}
models: {small: {model: local/smollm2-135m}}
roles: [assistant, critic, fuser, vote]
max_nodes: 6
budget: {compute: 8}
objective: {accuracy: 1.0, latency: 0.0, cost: 0.0}
optimizer: {method: agent-reinforce, iterations: 8, samples: 4, minibatch: 8, seed: 0,
            agent_model: null, max_spend: {tokens: 2000000, usd: 5}}
"""


def _load(text: str):  # type: ignore[no-untyped-def]
    return space_from_data(load_located(text, "s.yaml"), "s.yaml")


def test_design_example_is_valid() -> None:
    space = _load(GOOD)
    assert space.budget.compute == 8 and space.optimizer.max_spend.tokens == 2_000_000
    assert looks_like_space(load_located(GOOD).data)
    big = _load(GOOD.replace("test: 50, seed: 0}", "test: 50, seed: 4294967296}"))  # the item sample's: any size
    assert big.task.seed == 2**32  # the search's seed is capped (TPE), not the task's (a diff review)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (("budget: {compute: 8}", "budget: {}"), "budget", "at least one of compute"),
        (("roles: [assistant, critic, fuser, vote]", "roles: [critic]"), "roles", "must include 'assistant'"),
        (("roles: [assistant, critic, fuser, vote]", "roles: [assistant, boss]"), "roles[1]", "Input should be"),
        (
            ("roles: [assistant, critic, fuser, vote]", "roles: [assistant, critc]"),
            "roles[1]",
            "got 'critc' (did you mean 'critic'?)",
        ),
        (
            ('task: {name: "rg:basic_arithmetic",', 'task: {path: d.jsonl, name: "rg:basic_arithmetic",'),
            "task",
            "exactly one of",
        ),
        (("max_nodes: 6", "max_nodes: 0"), "max_nodes", "greater than or equal to 1"),
        (("agent_model: null", "agent_model: ceo"), "optimizer.agent_model", "unknown model alias 'ceo'"),
        # found by a fuzzer: a route no model uses was not checked (each feedback call failed, exit 0),
        # and an empty task name was an AssertionError traceback that stopped validate's other files
        (("agent_model: null", "agent_model: sim/llama-2b"), "optimizer.agent_model", "unknown simulated model"),
        (("agent_model: null", "agent_model: opnai/gpt-4o"), "optimizer.agent_model", "no provider 'opnai'"),
        (("agent_model: null", "agent_model: {model: opnai/x}"), "optimizer.agent_model.model", "no provider 'opnai'"),
        (('name: "rg:basic_arithmetic"', 'name: ""'), "task.name", "at least 1 character"),
        (('name: "rg:basic_arithmetic"', 'path: ""'), "task.path", "at least 1 character"),
        (("method: agent-reinforce", "method: magic"), "optimizer.method", "Input should be"),
        (("max_nodes: 6", "max_nodes: 6\nsampled_nodes: some"), "sampled_nodes", "'parallel' or 'greedy_first'"),
        # found by a fuzzer: each passed validate, then crashed, hung or printed "FLOPs inf"
        (("seed: 0,\n", "seed: -1,\n"), "optimizer.seed", "greater than or equal to 0"),
        (
            ("iterations: 8,", "iterations: 100000000000000000000,"),
            "optimizer.iterations",
            "less than or equal to 10000",
        ),
        (("samples: 4,", "samples: 99999999999999999999,"), "optimizer.samples", "less than or equal to 1000"),
        (("seed: 0,\n", "seed: 4294967296,\n"), "optimizer.seed", "less than or equal to 4294967295"),  # TPE crashed
        (("test: 50,", "test: 100000000000000000000,"), "task.test", "less than or equal to 100000"),
        (("train: 20, test: 50,", "train: 60000, test: 60000,"), "task", "more than 100,000 items in all"),
        # the dev split is made too: 50,000 + 50,000 + 20 items passed as 50,020
        (("train: 20, test: 50,", "train: 20, dev: 50000, test: 50000,"), "task", "more than 100,000 items in all"),
        (
            ("max_nodes: 6", "max_nodes: 6\ncoordinator: {models: [small, small]}"),
            "coordinator.models",
            "lists a model twice",
        ),
        (
            ("test: 50,", "test: 50, mean_prompt_tokens: 80, mean_completion_tokens: .inf,"),
            "task.mean_completion_tokens",
            "finite",
        ),
        (
            ("test: 50,", "test: 50, mean_prompt_tokens: 1.0e308, mean_completion_tokens: 9,"),
            "task.mean_prompt_tokens",
            "less than",
        ),
        (
            ("test: 50,", "test: 50, mean_prompt_tokens: 80,"),
            "task",
            "both mean_prompt_tokens and mean_completion_tokens",
        ),
        (
            ("model: local/smollm2-135m}", "model: local/smollm2-135m, params_b: .inf}"),
            "models.small.params_b",
            "finite",
        ),
        (("budget: {compute: 8}", "budget: {compute: .inf}"), "budget.compute", "finite"),
        (("cost: 0.0}", "cost: .nan}"), "objective.cost", "finite"),
        # a YAML boolean or a quoted number was read as a number: params_b: true priced a model as 1B
        (
            ("model: local/smollm2-135m}", "model: local/smollm2-135m, params_b: true}"),
            "models.small.params_b",
            "valid number",
        ),
        (("budget: {compute: 8}", 'budget: {compute: "8"}'), "budget.compute", "valid number"),
        (("max_nodes: 6", "max_nodes: true"), "max_nodes", "valid integer"),
        (("train: 20,", "train: true,"), "task.train", "valid integer"),
        (("cost: 0.0}", 'cost: 0.0, pareto: "no"}'), "objective.pareto", "valid boolean"),
        # accepted, then quietly not honoured (a review of optimize as a user runs it)
        (("accuracy: 1.0,", "accuracy: 0,"), "objective", "every weight is 0"),
        (("max_nodes: 6", "max_nodes: 6\nanswer_format: code"), "answer_format", "its scorer decides"),
        (
            ("roles: [assistant, critic, fuser, vote]", "roles: [assistant, critic, assistant]"),
            "roles",
            "assistant twice",
        ),
    ],
)
def test_invalid_spaces_name_the_path(change: tuple[str, str], path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        _load(GOOD.replace(*change))
    assert any(i.path == path and fragment in i.message for i in info.value.issues), [str(i) for i in info.value.issues]


def test_a_stored_space_with_settings_now_refused_still_loads() -> None:
    """Runs stored before those settings were refused are still shown, reported and resumed."""
    text = GOOD.replace("samples: 4,", "samples: 1,").replace("max_nodes: 6", "max_nodes: 6\nanswer_format: code")
    stored = space_from_data(load_located(text, "s.yaml"), "s.yaml", stored=True)
    assert method_and_seed(stored, stored=True) == ("agent-reinforce", 0)


def test_a_reinforce_method_needs_two_samples_whichever_names_it() -> None:
    """samples: 1 with agent-reinforce sampled nothing new and stopped "converged"; the check read
    the space's method, so --method reinforce got past it and --method random was refused."""
    one = _load(GOOD.replace("samples: 4,", "samples: 1,"))
    with pytest.raises(SpecError) as info:
        method_and_seed(one)
    assert [(i.path, "optimizer.method: agent-reinforce needs 2 or more" in i.message) for i in info.value.issues] == [
        ("optimizer.samples", True)
    ]
    assert method_and_seed(one, "random") == ("random", 0)
    with pytest.raises(SpecError, match="--method reinforce needs 2 or more"):
        method_and_seed(
            _load(GOOD.replace("samples: 4,", "samples: 1,").replace("agent-reinforce", "random")), "reinforce"
        )


def test_a_stored_space_with_a_scorer_now_refused_still_loads_its_split() -> None:
    """An optimization stored before a built-in task's scorer had to read its answer format resumes."""
    space = _load(
        GOOD.replace('task: {name: "rg:basic_arithmetic",', 'task: {scorer: choice, name: "rg:basic_arithmetic",')
    )
    with pytest.raises(SpecError, match="scorer 'choice' reads 'choice'"):
        load_task_split(space)
    task, train, _ = load_task_split(space, stored=True)
    assert task.scorer_name == "choice" and train


def test_a_generated_tasks_size_option_is_bounded_and_placed_at_the_options() -> None:
    """`options: {size: 10**14}` hung validate making every item; `size: -5` was placed at task.name."""
    for size in ("-5", "100000000000000"):
        text = GOOD.replace(
            'task: {name: "rg:basic_arithmetic",', f'task: {{name: "sim:math", options: {{size: {size}}},'
        )
        with pytest.raises(SpecError) as info:
            load_task_split(_load(text))
        assert [(i.path, "size must be an integer from 1 to 100,000" in i.message) for i in info.value.issues] == [
            ("task.options", True)
        ]


def test_a_stored_space_with_one_mean_length_still_loads() -> None:
    """The previous release accepted (and ignored) one mean length alone: its runs must still show,
    report and resume."""
    text = GOOD.replace("test: 50,", "test: 50, mean_prompt_tokens: 80,")
    with pytest.raises(SpecError, match="give both mean_prompt_tokens and mean_completion_tokens"):
        _load(text)
    assert space_from_data(load_located(text, "run x"), "run x", stored=True).task.mean_prompt_tokens == 80


def test_numbers_in_exponent_form_are_numbers() -> None:
    """YAML 1.2 reads `1e-6` as a number (PyYAML's YAML 1.1 read a string); strict validation must
    take it as written, like `0.000001`."""
    space = _load(GOOD.replace("usd: 5}", "usd: 5e-1}").replace("compute: 8}", "compute: 8.0e0}"))
    assert space.optimizer.max_spend.usd == 0.5 and space.budget.compute == 8.0


def test_a_stored_space_with_a_quoted_number_still_loads() -> None:
    """Runs stored before values had to be written as numbers keep opening (`runs show`, resume)."""
    text = GOOD.replace("budget: {compute: 8}", 'budget: {compute: "8"}')
    with pytest.raises(SpecError, match="valid number, not a quoted string"):
        _load(text)
    assert space_from_data(load_located(text, "run x"), "run x", stored=True).budget.compute == 8


def test_a_task_path_is_read_beside_the_space_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`optimize spaces/s.yaml` with `task: {path: data.jsonl}` beside it failed with "task file not
    found" unless run from spaces/; a path found only from the working directory still works; one
    found from both as different files is ambiguous."""
    from agentscale.optimize.space import load_space

    spaces, elsewhere = tmp_path / "spaces", tmp_path / "cwd"
    spaces.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    line = '{"question": "1 + 1?", "answer": "2"}\n'
    text = GOOD.replace('task: {name: "rg:basic_arithmetic",', "task: {path: data.jsonl,")
    (spaces / "s.yaml").write_text(text)
    (spaces / "data.jsonl").write_text(line * 70)
    assert load_space(spaces / "s.yaml").task.path == str(spaces / "data.jsonl")
    (spaces / "data.jsonl").rename(elsewhere / "data.jsonl")
    assert load_space(spaces / "s.yaml").task.path == "data.jsonl"  # from the working directory, as before
    (spaces / "data.jsonl").write_text(line * 70)
    with pytest.raises(SpecError) as info:
        load_space(spaces / "s.yaml")
    assert [(i.path, i.line) for i in info.value.issues] == [("task.path", 2)]
    assert "names two files" in info.value.issues[0].message


def test_a_task_name_naming_a_file_is_read_beside_the_space_file_too(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`task: {name: data.jsonl}` (as `--task` takes a file) was read from the working directory only."""
    from agentscale.optimize.space import load_space

    (tmp_path / "spaces").mkdir()
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace('task: {name: "rg:basic_arithmetic",', "task: {name: data.jsonl,")
    (tmp_path / "spaces" / "s.yaml").write_text(text)
    (tmp_path / "spaces" / "data.jsonl").write_text('{"question": "1 + 1?", "answer": "2"}\n' * 70)
    assert load_space(tmp_path / "spaces" / "s.yaml").task.name == str(tmp_path / "spaces" / "data.jsonl")
    (tmp_path / "spaces" / "b.yaml").write_text(GOOD)
    assert load_space(tmp_path / "spaces" / "b.yaml").task.name == "rg:basic_arithmetic"


def test_a_minimal_space_gets_the_documented_defaults() -> None:
    """A space that names only its task, models and budget searches with the documented defaults: a
    changed default changes every such user's search (its roles, size, rounds and spend) unannounced."""
    space = _load(
        'name: tiny\ntask: {name: "rg:basic_arithmetic"}\nmodels: {small: {model: local/smollm2-135m}}\n'
        "budget: {compute: 8}\ncoordinator: {models: [small]}\n"
    )
    assert space.roles == ["assistant", "fuser", "vote"]
    assert space.max_nodes == 6 and space.sampled_nodes == "all"
    assert (space.task.train, space.task.dev, space.task.test, space.task.seed) == (20, 0, 50, 0)
    optimizer = space.optimizer
    assert (optimizer.method, optimizer.iterations, optimizer.samples, optimizer.minibatch, optimizer.seed) == (
        "agent-reinforce",
        8,
        4,
        8,
        0,
    )
    assert (space.objective.accuracy, space.objective.cost, space.objective.latency) == (1.0, 0.0, 0.0)
    assert space.coordinator is not None
    assert (space.coordinator.max_rounds, space.coordinator.optional) == (3, True)


@pytest.mark.parametrize(
    ("budget", "caps"),
    [
        ("{compute: 8}", None),
        ("{max_tokens: 900}", (900, None, None)),
        ("{max_usd: 0.01}", (None, 0.01, None)),
        ("{max_latency_s: 30}", (None, None, 30.0)),
        ("{compute: 8, max_tokens: 900, max_usd: 0.01, max_latency_s: 30}", (900, 0.01, 30.0)),
    ],
)
def test_every_per_question_cap_reaches_the_graphs_the_search_runs(
    budget: str, caps: tuple[int | None, float | None, float | None] | None
) -> None:
    """`max_tokens`, `max_usd` and `max_latency_s` are enforced by each graph itself: a cap left out of
    its budget is never enforced, so a search under `max_latency_s: 30` ran and crowned slower graphs."""
    from agentscale.optimize.candidate import CandidateGraph, NodeChoice

    space = _load(GOOD.replace("budget: {compute: 8}", f"budget: {budget}"))
    spec = space.graph_spec(CandidateGraph((NodeChoice("assistant", "small"),), frozenset()), "g")
    if caps is None:
        assert space.budget.per_question_caps() is None
        return
    assert spec.budget is not None
    assert (spec.budget.max_tokens, spec.budget.max_usd, spec.budget.max_latency_s) == caps


def test_an_objective_without_accuracy_weight_is_accepted_when_another_weight_counts() -> None:
    """Only all-zero weights make the crown arbitrary; a cost-only objective (cheapest graph) is a
    legitimate search and must not be refused."""
    space = _load(
        GOOD.replace("objective: {accuracy: 1.0, latency: 0.0, cost: 0.0}", "objective: {accuracy: 0, cost: 1}")
    )
    assert (space.objective.accuracy, space.objective.cost) == (0.0, 1.0)


def test_an_agent_model_may_be_a_route_rather_than_an_alias() -> None:
    """`agent_model: openai/gpt-4o-mini` names a route directly (the optimizer's own model need not be
    searched): only a bare name that is no alias is refused."""
    space = _load(GOOD.replace("agent_model: null", "agent_model: openai/gpt-4o-mini"))
    assert space.optimizer.agent_model == "openai/gpt-4o-mini"


def test_an_agent_model_of_its_own_has_its_endpoint_and_its_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    """In place, `{model: ROUTE, api_base: ..., api_key_env: ...}`, the agent reaches its own server
    without being one of the searched `models:`; its unset key is said at its own path."""
    from agentscale.cli._space_notes import space_notes
    from agentscale.optimize.space import feedback_agent

    monkeypatch.delenv("AGENT_KEY", raising=False)
    own = "{model: hosted_vllm/judge, api_base: 'http://127.0.0.1:9/v1', api_key_env: AGENT_KEY}"
    space = _load(GOOD.replace("agent_model: null", f"agent_model: {own}"))
    agent = feedback_agent(space)
    assert agent is not None and (agent.name, agent.api_base) == ("hosted_vllm/judge", "http://127.0.0.1:9/v1")
    assert "optimizer.agent_model.api_key_env: AGENT_KEY is not set in this environment" in space_notes(space, "t", [])


def test_a_json_task_name_is_read_beside_the_space_file(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--task` takes `.json` as well as `.jsonl` files; `task: {name: data.json}` beside the space
    file must be found there too, not only from the working directory."""
    from agentscale.optimize.space import load_space

    (tmp_path / "spaces").mkdir()
    monkeypatch.chdir(tmp_path)
    text = GOOD.replace('task: {name: "rg:basic_arithmetic",', "task: {name: data.json,")
    (tmp_path / "spaces" / "s.yaml").write_text(text)
    (tmp_path / "spaces" / "data.json").write_text("[]")
    assert load_space(tmp_path / "spaces" / "s.yaml").task.name == str(tmp_path / "spaces" / "data.json")
