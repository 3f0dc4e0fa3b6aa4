"""Every validation rule of DESIGN.md's graph YAML, with the YAML path and line it must name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentscale.errors import SpecError
from agentscale.graphs.io import dump_graph_spec, load_graph_spec
from agentscale.graphs.spec import GraphSpec
from agentscale.graphs.validate import load_spec_text

GRAPHS = sorted(p for p in (Path(__file__).parents[2] / "graphs").glob("*.yaml") if not p.name.endswith("-space.yaml"))

BASE = """\
name: g
models:
  small: {model: openai/gpt-4o-mini}
"""

CASES = {
    "unknown top-level key": (
        BASE + "nodez: []\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "nodez",
        "unknown key 'nodez' (did you mean 'nodes'?)",
        4,
    ),
    "unknown node key (typo)": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small, tempreature: 0.3}\n",
        "nodes[0].tempreature",
        "did you mean 'temperature'?",
        5,
    ),
    "missing name": (
        "nodes:\n  - {id: a, role: assistant, model: openai/x}\n",
        "name",
        "missing required key 'name'",
        1,
    ),
    "missing nodes": (BASE, "nodes", "missing required key 'nodes'", 1),
    "quoted number (strict)": (
        BASE + 'nodes:\n  - {id: a, role: assistant, model: small, temperature: "0.3"}\n',
        "nodes[0].temperature",
        "valid number",
        5,
    ),
    "boolean as a number (strict)": (
        BASE + "budget: {max_tokens: true}\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "budget.max_tokens",
        "valid integer",
        4,
    ),
    "missing node role": (
        BASE + "nodes:\n  - {id: a, model: small}\n",
        "nodes[0].role",
        "missing required key 'role'",
        5,
    ),
    "bad graph name": (
        "name: Bad Name\nnodes:\n  - {id: a, role: assistant, model: openai/x}\n",
        "name",
        "does not match",
        1,
    ),
    "duplicate node ids": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: a, role: assistant, model: small}\n",
        "nodes[1].id",
        "duplicate node id 'a'",
        6,
    ),
    "edge to unknown node": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\nedges:\n  - a -> b\n",
        "edges[0]",
        "unknown node 'b'",
        7,
    ),
    "malformed edge": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\nedges:\n  - a b\n",
        "edges[0]",
        "must look like",
        7,
    ),
    "self-loop": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\nedges:\n  - a -> a\n",
        "edges[0]",
        "self-loop on node 'a'",
        7,
    ),
    "edge written twice": (  # merged silently: it read as a second copy of a's answer for the vote
        BASE
        + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: assistant, model: small}\n"
        + "  - {id: v, role: vote}\nedges:\n  - a, b -> v\n  - a -> v\n",
        "edges[1]",
        "edge a -> v is written again (first in edges[0]): an input is read once",
        10,
    ),
    "edge named twice in one entry": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: v, role: vote}\nedges:\n  - a, a -> v\n",
        "edges[0]",
        "edge a -> v is written twice in this entry",
        8,
    ),
    "cycle is printed": (
        BASE
        + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: critic, model: small}\n"
        + "  - {id: c, role: critic, model: small}\nedges:\n  - a -> b\n  - b -> c\n  - c -> b\n",
        "edges[2]",  # the edge that closes it (was the line of `edges:`)
        "cycle: b -> c -> b",
        11,
    ),
    "output not a node": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\noutput: z\n",
        "output",
        "output 'z' is not a node",
        6,
    ),
    "several sinks without output": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: assistant, model: small}\n",
        "output",
        "several sinks (a, b)",
        5,  # the first sink's (with no `output:` key, line 1 pointed at `name:`)
    ),
    "node cannot reach output": (
        BASE
        + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: b, role: assistant, model: small}\n"
        + "output: a\n",
        "nodes[1]",
        "node 'b' cannot reach the output 'a'",
        6,
    ),
    "unknown role lists valid ones": (
        BASE + "nodes:\n  - {id: a, role: critik, model: small}\n",
        "nodes[0].role",
        "unknown role 'critik' (did you mean 'critic'?); valid roles: assistant, critic, fuser, verifier, vote",
        5,
    ),
    "unknown model alias": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: big}\n",
        "nodes[0].model",
        "unknown model alias 'big'",
        5,
    ),
    "alias route without provider": (
        "name: g\nmodels:\n  small: {model: gpt4}\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "models.small.model",
        "must be a litellm route",
        3,
    ),
    "vote without predecessors": (
        BASE + "nodes:\n  - {id: v, role: vote}\n",
        "nodes[0]",
        "a 'vote' node needs predecessors",
        5,
    ),
    "fuser without predecessors": (
        BASE + "nodes:\n  - {id: f, role: fuser, model: small}\n",
        "nodes[0]",
        "a 'fuser' node needs predecessors",
        5,
    ),
    "critic without predecessors": (
        BASE + "nodes:\n  - {id: c, role: critic, model: small}\n",
        "nodes[0]",
        "a 'critic' node needs predecessors",
        5,
    ),
    "verifier without predecessors": (
        BASE + "nodes:\n  - {id: c, role: verifier, model: small}\n",
        "nodes[0]",
        "a 'verifier' node needs predecessors",
        5,
    ),
    "vote given a model": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: v, role: vote, model: small}\n"
        "edges: ['a -> v']\n",
        "nodes[1].model",
        "a 'vote' node takes no model",
        6,
    ),
    "model missing": (BASE + "nodes:\n  - {id: a, role: assistant}\n", "nodes[0]", "needs a model", 5),
    "temperature above 2": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small, temperature: 2.5}\n",
        "nodes[0].temperature",
        "less than or equal to 2",
        5,
    ),
    "temperature below 0": (
        BASE + "defaults: {temperature: -0.1}\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "defaults.temperature",
        "greater than or equal to 0",
        4,
    ),
    "max_tokens below 1": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small, max_tokens: 0}\n",
        "nodes[0].max_tokens",
        "greater than or equal to 1",
        5,
    ),
    "top_k below 1": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\nmemory: {handbook: h, top_k: 0}\n",
        "memory.top_k",
        "greater than or equal to 1",
        6,
    ),
    "max_rounds below 1": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\ncoordinator: {model: small, max_rounds: 0}\n",
        "coordinator.max_rounds",
        "greater than or equal to 1",
        6,
    ),
    "coordinator unknown alias": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\ncoordinator: {model: ceo}\n",
        "coordinator.model",
        "unknown model alias 'ceo'",
        6,
    ),
    "coordinator unknown evaluator alias": (  # the evaluator names a model as the CEO does: checked alike
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\ncoordinator:\n  model: small\n  evaluator: judge\n",
        "coordinator.evaluator",
        "unknown model alias 'judge'",
        8,
    ),
    "duplicate YAML key": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small}\nname: again\n",
        "name",
        "duplicate key (first defined on line 1)",
        6,
    ),
    "YAML syntax error": ("name: g\nnodes: [\n", "", "YAML syntax error", 3),
    "several YAML documents": (
        "name: g\n---\nname: h\n",
        "",
        "several YAML documents (a `---` line starts another)",
        2,
    ),
    "not a mapping": ("- a\n- b\n", "", "must be a YAML mapping", 1),
    "custom role shadows built-in": (
        BASE
        + "roles:\n  critic: {system: s, user: '{question}'}\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "roles.critic",
        "shadows a built-in role",
        5,
    ),
    "custom role without {question}": (
        BASE
        + "roles:\n  skeptic: {system: s, user: 'no placeholder'}\nnodes:\n  - {id: a, role: skeptic, model: small}\n",
        "roles.skeptic.user",
        "must contain {question}",
        5,
    ),
    "api key in file is refused": (
        "name: g\nmodels:\n  small: {model: openai/x, api_key: sk-123}\nnodes:\n  - {id: a, role: assistant, model: small}\n",
        "models.small.api_key",
        "unknown key 'api_key' (did you mean 'api_key_env'?)",
        3,
    ),
    "api_key_env not a variable's name": (  # passed, and validate's note named a blank variable
        'name: g\nmodels:\n  s: {model: openai/x, api_key_env: "MY KEY"}\nnodes:\n  - {id: a, role: assistant, model: s}\n',
        "models.s.api_key_env",
        "the name of an environment variable (letters, digits, _), not 'MY KEY'",
        3,
    ),
    "empty api_base list": (
        "name: g\nmodels:\n  q: {model: hosted_vllm/q, api_base: []}\nnodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q.api_base",
        "api_base is an empty list",
        3,
    ),
    "api_base list item not a URL": (
        "name: g\nmodels:\n  q:\n    model: hosted_vllm/q\n    api_base:\n      - http://gpu1:8000/v1\n"
        "      - gpu2:8000\nnodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q.api_base",
        "api_base[1] 'gpu2:8000' is not an http(s) URL",
        5,
    ),
    "api_base not a URL": (  # passed validate, then every call failed with a bare HTTP 500
        "name: g\nmodels:\n  q: {model: hosted_vllm/q, api_base: 'localhost:8000/v1'}\n"
        "nodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q.api_base",
        "api_base 'localhost:8000/v1' is not an http(s) URL",
        3,
    ),
    "duplicate api_base": (
        "name: g\nmodels:\n  q: {model: hosted_vllm/q, api_base: ['http://h:1/v1', 'http://h:1/v1/']}\n"
        "nodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q.api_base",
        "api_base[1] 'http://h:1/v1/' duplicates api_base[0]",
        3,
    ),
    "model given as a string": (  # pydantic's own text: "a valid dictionary or instance of ModelSpec"
        "name: g\nmodels:\n  q: hosted_vllm/q\nnodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q",
        "expected a mapping (`key: value` lines or `{key: value}`), got the text 'hosted_vllm/q'",
        3,
    ),
    "nodes given as a mapping": (
        "name: g\nmodels:\n  q: {model: hosted_vllm/q}\nnodes: {id: a, role: assistant, model: q}\n",
        "nodes",
        "expected a list (`[a, b]` or `- a` lines), got a mapping",
        4,
    ),
    "alias that reads as a route": (  # it silently won over the route of that name
        "name: g\nmodels:\n  sim/llama-1b: {model: sim/llama-70b}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "models.sim/llama-1b",
        "contains '/', which makes it read as a route",
        3,
    ),
    "a handbook name with a blank": (  # passed validate, then failed at the first question without a line
        "name: g\nmemory: {handbook: 'a b'}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "memory.handbook",
        "bad handbook name 'a b': give 1-100 characters without spaces",
        2,
    ),
    "empty alias": (  # validate passed, then optimize's pilot crashed (StopIteration) after the baselines
        'name: g\nmodels:\n  "": {model: sim/llama-1b}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n',
        "models",
        "alias '' is not a name (empty, or with blanks)",
        3,
    ),
    "a key YAML reads as a boolean": (  # "models[1].[key] (line 2): Input should be a valid string"
        "name: g\nmodels:\n  true: {model: sim/llama-1b}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "models",
        "a key read as the boolean true (YAML reads true/false, yes/no, on/off so): quote it",
        3,
    ),
    "a yes: key at its own line": (  # the diff review: reported at the `models:` line
        "name: g\nmodels:\n  a: {model: sim/llama-1b}\n  yes: {model: sim/llama-1b}\n"
        "nodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "models",
        "a key read as the boolean true",
        4,
    ),
    "a numeric key": (  # "the key 3: Input should be a valid string"
        "name: g\nmodels:\n  a: {model: sim/llama-1b}\n  3: {model: sim/llama-1b}\n"
        "nodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "models",
        "a key read as the number 3: quote it",
        4,
    ),
    "a null key": (
        "name: g\nmodels:\n  a: {model: sim/llama-1b}\n  null: {model: sim/llama-1b}\n"
        "nodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "models",
        "a key read as null (YAML reads null and ~ so): quote it",
        4,
    ),
    "a numeric key among a graph's own": (  # "[1] (line 1): Keys should be strings"
        "name: g\n1: x\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "",
        "a key read as the number 1: quote it",
        2,
    ),
    "a boolean key among a node's own": (  # "nodes[0][1] (line 2): Keys should be strings"
        "name: g\nnodes:\n  - id: a\n    role: assistant\n    model: sim/llama-1b\n    on: 3\n",
        "nodes[0]",
        "a key read as the boolean true",
        6,
    ),
    "a mapping where text belongs": (  # "expected text, got a mapping: quote it"
        "name: g\nnodes:\n  - {id: a, role: assistant, model: {name: x}}\n",
        "nodes[0].model",
        "expected text, got a mapping",
        3,
    ),
    "a NaN where text belongs": (  # said "must be a finite number"
        "name: .nan\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "name",
        "expected text, got the value nan: quote it",
        1,
    ),
    "a name YAML reads as a boolean": (
        "name: yes\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "name",
        "got the boolean true",
        1,
    ),
    "a NaN temperature": (  # "Input should be less than or equal to 2"
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b, temperature: .nan}\n",
        "nodes[0].temperature",
        "must be a finite number, got nan",
        3,
    ),
    "edges in a flow list": (
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
        "  - {id: b, role: assistant, model: sim/llama-1b}\n  - {id: f, role: fuser, model: sim/llama-1b}\n"
        "edges: [a, b -> f]\n",
        "edges[0]",
        "in a `[...]` list a comma ends an item",
        6,
    ),
    # found by a fuzzer: `version: true` passed (True == 1), a long version read "Unable to parse input
    # string", and unquoted text where a number belongs was called "a quoted string"
    "a boolean version": (
        "version: true\nname: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "version",
        "reads graph files of version 1, not true",
        1,
    ),
    "a version too long": (
        f"version: {'1' * 31}\nname: g\nnodes:\n  - {{id: a, role: assistant, model: sim/llama-1b}}\n",
        "version",
        f"reads graph files of version 1, not {'1' * 31}",
        1,
    ),
    "text for a number": (
        "name: g\ndefaults: {max_tokens: abc}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "defaults.max_tokens",
        "valid integer, not the text 'abc'",
        2,
    ),
    "an empty number": (
        "name: g\ncoordinator:\n  model: sim/llama-8b\n  max_rounds:\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "coordinator.max_rounds",
        "valid integer, got an empty value",
        4,
    ),
    "a list for a number": (
        "name: g\ndefaults: {temperature: [0.7]}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "defaults.temperature",
        "valid number, got a list",
        2,
    ),
    "a number too large for an integer": (
        "name: g\ndefaults: {max_tokens: 1e30}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n",
        "defaults.max_tokens",
        "valid integer, got the value 1e+30: far too large",
        2,
    ),
    "api_base neither URL nor list": (
        "name: g\nmodels:\n  q: {model: hosted_vllm/q, api_base: 8000}\nnodes:\n  - {id: a, role: assistant, model: q}\n",
        "models.q.api_base",
        "api_base must be a URL or a list of URLs",
        3,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES), ids=sorted(CASES))
def test_rule_names_path_and_line(case: str) -> None:
    text, path, fragment, line = CASES[case]
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "g.yaml")
    issues = info.value.issues
    matching = [i for i in issues if i.path == path and fragment in i.message]
    assert matching, f"expected {path}: {fragment!r}, got {[str(i) for i in issues]}"
    assert matching[0].line == line
    assert "g.yaml" in str(info.value)


def test_what_lies_under_a_key_read_as_no_text_is_left_to_the_key_s_issue() -> None:
    """`yes: {modle: x}` also gave "models[1].model (line 2): missing required key" and "models[1].modle
    (line 2): unknown key": pydantic's path reads true as index 1, which points at another line."""
    text = "name: g\nmodels:\n  m: {model: sim/llama-1b}\n  yes: {modle: x}\nnodes:\n  - {id: a, role: assistant, model: m}\n"
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    assert [(i.path, i.line) for i in info.value.issues] == [("models", 4)]
    text = "name: g\nmodels:\n  'bad alias': {modle: x}\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    with pytest.raises(SpecError) as info:  # under a key that is text, the value's issues stand
        load_spec_text(text)
    assert any(i.path == "models.bad alias.modle" for i in info.value.issues), [str(i) for i in info.value.issues]


def test_all_problems_of_a_kind_are_reported_together() -> None:
    text = BASE + "nodes:\n  - {id: a, role: nope, model: small}\n  - {id: b, role: assistant, model: zz}\n"
    with pytest.raises(SpecError) as info:
        load_spec_text(text)
    paths = {i.path for i in info.value.issues}
    assert {"nodes[0].role", "nodes[1].model"} <= paths


def test_an_unknown_node_is_named_once_per_edge_not_once_per_pair() -> None:
    """`s1, s2, s3 -> fuse` with no node fuse printed "3 problems", one line three times (a fuzzer's);
    two unknown nodes in one edge are each named."""
    nodes = "nodes:\n" + "".join(f"  - {{id: s{i}, role: assistant, model: small}}\n" for i in (1, 2, 3))
    with pytest.raises(SpecError) as info:
        load_spec_text(BASE + nodes + "edges:\n  - s1, s2, s3 -> fuse\n  - s1, x -> y\n")
    assert [i.message for i in info.value.issues] == [
        "edge 's1, s2, s3 -> fuse' names unknown node 'fuse'",
        "edge 's1, x -> y' names unknown node 'y'",
        "edge 's1, x -> y' names unknown node 'x'",
    ]


def test_custom_role_is_valid_and_requires_inputs_is_checked() -> None:
    ok = BASE + "roles:\n  skeptic: {system: doubt, user: 'Doubt {inputs} about {question}'}\n"
    ok += "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: s, role: skeptic, model: small}\nedges: ['a -> s']\n"
    assert load_spec_text(ok).node("s").role == "skeptic"
    needs = BASE + "roles:\n  skeptic: {system: d, user: '{question}', requires_inputs: true}\n"
    needs += "nodes:\n  - {id: s, role: skeptic, model: small}\n"
    with pytest.raises(SpecError, match="a 'skeptic' node needs predecessors"):
        load_spec_text(needs)


def test_a_custom_role_that_would_not_show_its_inputs_or_misspells_a_placeholder_is_refused() -> None:
    """A role without {inputs} on a node with predecessors: the edge carried nothing, silently. A
    misspelt {input} reached the model as written. Other braces (JSON, code) stay as they are."""
    nodes = (
        "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: j, role: judge, model: small}\nedges: [a -> j]\n"
    )
    blind = BASE + "roles:\n  judge: {system: judge, user: 'Q: {question}'}\n" + nodes
    with pytest.raises(SpecError, match=r"roles.judge.user \(line 5\): role 'judge' never shows a node its inputs"):
        load_spec_text(blind)
    misspelt = BASE + "roles:\n  judge: {system: 'be {direcion}', user: 'Q: {question} I: {input}'}\n" + nodes
    with pytest.raises(SpecError) as refused:
        load_spec_text(misspelt)
    assert "{direcion} is no placeholder: did you mean {direction}?" in str(refused.value)
    assert "{input} is no placeholder: did you mean {inputs}?" in str(refused.value)
    braces = BASE + "roles:\n  judge: {system: j, user: 'Q: {question} I: {inputs} as {\"verdict\": 1} {x}'}\n"
    assert load_spec_text(braces + nodes).node("j").role == "judge"
    alone = (
        BASE
        + "roles:\n  judge: {system: judge, user: 'Q: {question}'}\nnodes:\n  - {id: j, role: judge, model: small}\n"
    )
    assert load_spec_text(alone).node("j").role == "judge"  # no predecessors: nothing to show


def test_edge_syntax_fan_in_fan_out_and_chains() -> None:
    text = BASE + "nodes:\n" + "".join(f"  - {{id: {n}, role: assistant, model: small}}\n" for n in "abcde")
    text += "edges:\n  - a -> b, c\n  - b, c -> d -> e\n"
    spec = load_spec_text(text)
    assert spec.edge_pairs() == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]


@pytest.mark.parametrize("path", GRAPHS, ids=[p.name for p in GRAPHS])
def test_example_graphs_are_valid_and_round_trip(path: Path) -> None:
    spec = load_graph_spec(path)
    again = load_spec_text(dump_graph_spec(spec))
    assert again == spec
    assert load_spec_text(dump_graph_spec(again)) == again


def test_round_trip_keeps_every_field() -> None:
    text = """\
version: 1
name: full
description: everything set
models:
  small: {model: local/smollm2-135m}
  big: {model: hosted_vllm/q, api_base: "http://127.0.0.1:1/v1", params_b: 7.6, price: {input_per_mtok: 0.1, output_per_mtok: 0.2}}
  wide: {model: hosted_vllm/q, api_base: ["http://gpu1:8000/v1", "http://gpu2:8000/v1"], max_concurrency: 4}
defaults: {temperature: 0.7, max_tokens: 512, top_p: 0.9}
nodes:
  - {id: s1, role: assistant, model: small}
  - {id: s2, role: assistant, model: small, temperature: 1.0}
  - {id: c1, role: skeptic, model: big}
  - {id: out, role: fuser, model: big, max_tokens: 64}
edges:
  - s1, s2 -> c1
  - s1, s2, c1 -> out
output: out
answer_format: number
budget: {max_tokens: 20000, max_usd: 1.0}
memory: {handbook: default, top_k: 5}
coordinator: {model: big, max_rounds: 3}
roles:
  skeptic: {system: "You doubt.", user: "Q: {question}\\nA: {inputs}"}
"""
    spec = load_spec_text(text)
    dumped = dump_graph_spec(spec)
    assert load_spec_text(dumped) == spec
    assert "{id: s1, role: assistant, model: small}" in dumped
    assert load_spec_text(dumped).models["wide"].api_base == ("http://gpu1:8000/v1", "http://gpu2:8000/v1")


def test_schema_describes_the_graph_file() -> None:
    schema = GraphSpec.model_json_schema()
    assert schema["required"] == ["name", "nodes"]
    assert schema["additionalProperties"] is False
    assert "NodeSpec" in schema["$defs"]
    api_base = schema["$defs"]["ModelSpec"]["properties"]["api_base"]["anyOf"]
    url = {"type": "string", "pattern": "^https?://[^/\\s]"}
    assert url in api_base and {"type": "array", "items": url, "minItems": 1} in api_base


SCHEMA_BASE = "name: g\nmodels:\n  m: {model: openai/x}\nnodes:\n  - {id: a, role: assistant, model: m}\n"


@pytest.mark.parametrize(
    "text",
    [
        SCHEMA_BASE.replace("{model: openai/x}", "{model: openai/x, api_base: 'localhost:8000/v1'}"),
        SCHEMA_BASE.replace("{model: openai/x}", "{model: gpt4}"),
        SCHEMA_BASE.replace("{model: openai/x}", "{model: openai/x, api_key_env: 'MY KEY'}"),
        SCHEMA_BASE.replace("  m: {model: openai/x}", "  m: {model: openai/x}\n  a/b: {model: openai/y}"),
        SCHEMA_BASE + "  - {id: v, role: vote, model: m}\nedges: ['a -> v']\n",
        SCHEMA_BASE + "memory: {handbook: 'a b'}\n",
        SCHEMA_BASE + "roles:\n  sk: {system: s, user: 'u {inputs}'}\n",
        SCHEMA_BASE + "roles:\n  critic: {system: s, user: '{question}'}\n",
    ],
    ids=["api_base", "route", "api_key_env", "alias", "vote-model", "handbook", "role-template", "role-name"],
)
def test_the_schema_refuses_what_validate_refuses_field_by_field(text: str) -> None:
    """The field rules lived in validators alone, so `agentscale schema` (for editors and CI checks)
    passed files that validate then refused (an audit of the schema command); a valid file passes both."""
    import jsonschema

    schema = jsonschema.Draft202012Validator(GraphSpec.model_json_schema())
    with pytest.raises(SpecError):
        load_spec_text(text, "g.yaml")
    assert list(schema.iter_errors(yaml.safe_load(text))), "the schema accepted it"
    valid = SCHEMA_BASE.replace("{model: openai/x}", "{model: openai/x, api_base: [http://a:1/v1, http://b:1/v1]}")
    valid += "  - {id: v, role: vote}\nedges: ['a -> v']\nmemory: {handbook: hb}\n"
    valid += "roles:\n  sk: {system: s, user: '{question} {inputs}'}\n"
    load_spec_text(valid, "g.yaml")
    assert list(schema.iter_errors(yaml.safe_load(valid))) == []


def test_numbers_from_code_and_whole_floats_are_still_numbers() -> None:
    """Only booleans and quoted strings are refused where a number belongs: `512.0`, `1.0e+4`, NumPy
    integers and tuples, which apps building graphs in code pass, load as before."""
    import numpy as np

    text = (
        BASE
        + "defaults: {max_tokens: 512.0}\nbudget: {max_tokens: 1.0e+4}\nnodes:\n  - {id: a, role: assistant, model: small}\n"
    )
    spec = load_spec_text(text, "g.yaml")
    assert spec.defaults.max_tokens == 512 and spec.budget is not None and spec.budget.max_tokens == 10_000
    built = GraphSpec.model_validate(
        {"name": "g", "nodes": ({"id": "a", "role": "assistant", "model": "openai/x", "max_tokens": np.int64(64)},)}
    )
    assert built.nodes[0].max_tokens == 64


def test_an_id_that_reads_as_a_number_round_trips() -> None:
    """YAML 1.2 reads `1e5` as a number: the dumper quotes such a string, so a stored graph reloads."""
    spec = load_spec_text('name: g\nnodes:\n  - {id: "1e5", role: assistant, model: openai/x}\n')
    assert load_spec_text(dump_graph_spec(spec)) == spec


def test_a_next_line_character_round_trips() -> None:
    """U+0085 (NEL) in a description or a role template came back as a space: written as it is in
    single quotes, a reader takes it for a line break (a mutation audit's probe)."""
    spec = load_spec_text(
        'name: g\ndescription: "a\\x85b"\nroles:\n  r: {system: "x\\x85y", user: "{question}\\x85"}\n'
        "nodes:\n  - {id: a, role: r, model: openai/x}\n"
    )
    assert spec.description == "a\x85b" and spec.roles["r"].system == "x\x85y"
    assert load_spec_text(dump_graph_spec(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "name: g\nmodels:\n  small model: {model: sim/llama-1b}\nnodes:\n  - {id: a, role: assistant, model: small model}\n",
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
        "  - {id: b, role: assistant, model: sim/llama-1b}\n  - {id: f, role: fuser, model: sim/llama-1b}\n"
        "edges: ['a, b -> f']\ncoordinator: {model: sim/llama-1b, min_tokens: 2000}\n",
    ],
    ids=["an alias with a blank", "a min_tokens no round could give"],
)
def test_a_stored_runs_graph_loads_under_rules_added_since_it_was_written(text: str) -> None:
    """The diff review: runs the previous release stored with such graphs could no longer be shown,
    resumed, reported or learnt from (`runs show` exited 1)."""
    with pytest.raises(SpecError):
        load_spec_text(text, "g.yaml")
    assert load_spec_text(text, "run x", stored=True).nodes


def test_a_mapping_where_text_belongs_is_not_told_to_quote_it() -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text("name: g\nnodes:\n  - {id: a, role: assistant, model: {name: x}}\n", "g.yaml")
    assert [i.message for i in info.value.issues] == ["expected text, got a mapping"]


@pytest.mark.parametrize(
    "api_base",
    [
        "'http://alice:sk-SECRET@gpu1:8000/v1'",
        "'http://gpu1:8000/v1?api-key=sk-SECRET'",
        "['http://gpu1:1/v1', 'http://u:sk-SECRET@gpu1:2/v1']",
    ],
)
def test_an_api_base_carrying_credentials_is_refused_without_echoing_them(api_base: str) -> None:
    """A key written into api_base (user:password@ or a query) went into the stored graph, every call's
    error, runs show, the HTML report and the trace spans (a security review)."""
    text = f"name: g\nmodels:\n  m: {{model: hosted_vllm/x, api_base: {api_base}}}\nnodes:\n  - {{id: a, role: assistant, model: m}}\n"
    with pytest.raises(SpecError, match="carries a user, password or query string") as raised:
        load_spec_text(text, "g.yaml")
    assert "SECRET" not in str(raised.value) and "models.m.api_base (line 3)" in str(raised.value)


ONE_NODE = "nodes:\n  - {id: a, role: assistant, model: small}\n"


def _issues(text: str) -> list[tuple[str, str, int | None]]:
    with pytest.raises(SpecError) as info:
        load_spec_text(text, "g.yaml")
    return [(i.path, i.message, i.line) for i in info.value.issues]


def _has(text: str, path: str, fragment: str, line: int | None) -> None:
    issues = _issues(text)
    matching = [i for i in issues if i[0] == path and fragment in i[1]]
    assert matching, f"expected {path}: {fragment!r}, got {issues}"
    assert matching[0][2] == line


# field ranges the design states or the spec declares, one case per bound (mutants S3-S9, S16, ...)
OUT_OF_RANGE = {
    "node top_p of 0 (S4)": (
        BASE + "nodes:\n  - {id: a, role: assistant, model: small, top_p: 0}\n",
        "nodes[0].top_p",
        "greater than 0",
        5,
    ),
    "defaults top_p above 1 (S3)": (
        BASE + "defaults: {top_p: 1.5}\n" + ONE_NODE,
        "defaults.top_p",
        "less than or equal to 1",
        4,
    ),
    "budget max_usd of 0 (S5)": (BASE + "budget: {max_usd: 0}\n" + ONE_NODE, "budget.max_usd", "greater than 0", 4),
    "budget max_flops infinite (S6)": (
        BASE + "budget: {max_flops: .inf}\n" + ONE_NODE,
        "budget.max_flops",
        "finite number",
        4,
    ),
    "negative price (S7)": (
        "name: g\nmodels:\n  small: {model: openai/x, price: {input_per_mtok: -1, output_per_mtok: 1}}\n" + ONE_NODE,
        "models.small.price.input_per_mtok",
        "greater than or equal to 0",
        3,
    ),
    "params_b above 100T (S8)": (
        "name: g\nmodels:\n  small: {model: openai/x, params_b: 200000}\n" + ONE_NODE,
        "models.small.params_b",
        "less than or equal to 100000",
        3,
    ),
    "text where a boolean belongs (S9)": (
        BASE + "coordinator: {model: small, structured_output: 'no'}\n" + ONE_NODE,
        "coordinator.structured_output",
        "valid boolean",
        4,
    ),
    "api_base with no host (S16)": (
        "name: g\nmodels:\n  small: {model: hosted_vllm/q, api_base: 'http:///v1'}\n" + ONE_NODE,
        "models.small.api_base",
        "is not an http(s) URL",
        3,
    ),
    "api_base with a port but no host (an audit's probe)": (
        "name: g\nmodels:\n  small: {model: hosted_vllm/q, api_base: 'http://:8000/v1'}\n" + ONE_NODE,
        "models.small.api_base",
        "is not an http(s) URL",
        3,
    ),
    "api_base with a port out of range (an audit's probe)": (
        "name: g\nmodels:\n  small: {model: hosted_vllm/q, api_base: ['http://h:8000/v1', 'http://h:99999/v1']}\n"
        + ONE_NODE,
        "models.small.api_base",
        "api_base[1] 'http://h:99999/v1' is not an http(s) URL",
        3,
    ),
    "max_rounds above 100 (S17)": (
        BASE + "coordinator: {model: small, max_rounds: 101}\n" + ONE_NODE,
        "coordinator.max_rounds",
        "less than or equal to 100",
        4,
    ),
    "no nodes (S29: graph rules then crashed on sinks[0])": (BASE + "nodes: []\n", "nodes", "at least 1 item", 4),
    "node id starting with a dash (S28)": (
        BASE + "nodes:\n  - {id: -a, role: assistant, model: small}\n",
        "nodes[0].id",
        "does not match",
        5,
    ),
    "budget max_tokens of 0 (S30)": (
        BASE + "budget: {max_tokens: 0}\n" + ONE_NODE,
        "budget.max_tokens",
        "greater than or equal to 1",
        4,
    ),
    "coordinator min_agents of 0 (S31)": (
        BASE + "coordinator: {model: small, min_agents: 0}\n" + ONE_NODE,
        "coordinator.min_agents",
        "greater than or equal to 1",
        4,
    ),
}


@pytest.mark.parametrize("case", sorted(OUT_OF_RANGE), ids=sorted(OUT_OF_RANGE))
def test_a_number_out_of_its_range_is_refused_at_its_path_and_line(case: str) -> None:
    _has(*OUT_OF_RANGE[case])


def test_coordinator_ranges_are_ordered_and_equal_bounds_are_accepted() -> None:
    """S18 (`>=` refused min_agents == max_agents, a good graph) and S19 (min_tokens > max_tokens passed)."""
    spec = load_spec_text(
        BASE + "coordinator: {model: small, min_agents: 2, max_agents: 2, min_tokens: 64, max_tokens: 64}\n" + ONE_NODE
    )
    assert spec.coordinator is not None and spec.coordinator.max_agents == 2
    _has(
        BASE + "coordinator: {model: small, min_agents: 3, max_agents: 2}\n" + ONE_NODE,
        "coordinator",
        "min_agents (3) must be <= max_agents (2)",
        4,
    )
    _has(
        BASE + "coordinator: {model: small, min_tokens: 65, max_tokens: 64}\n" + ONE_NODE,
        "coordinator",
        "min_tokens (65) must be <= max_tokens (64)",
        4,
    )


def test_a_handbook_name_of_100_characters_is_accepted_and_101_refused() -> None:
    """S20: the stated bound is 1-100 characters."""
    spec = load_spec_text(BASE + f"memory: {{handbook: {'h' * 100}}}\n" + ONE_NODE)
    assert spec.memory is not None and spec.memory.handbook == "h" * 100
    _has(BASE + f"memory: {{handbook: {'h' * 101}}}\n" + ONE_NODE, "memory.handbook", "1-100 characters", 4)


def test_blanks_around_a_handbook_name_are_dropped() -> None:
    """S21: the design says blanks around a handbook's name are dropped; kept, ' default ' named
    another handbook than `default`."""
    spec = load_spec_text(BASE + "memory: {handbook: '  default  '}\n" + ONE_NODE)
    assert spec.memory is not None and spec.memory.handbook == "default"


def test_a_custom_role_showing_its_inputs_in_the_system_template_is_accepted() -> None:
    """V11: `{inputs}` is looked for in the system and the user templates (design: "templates (system
    and user)"); a check of the user template alone refused this good graph."""
    text = BASE + "roles:\n  skeptic: {system: 'Doubt these: {inputs}', user: 'Q: {question}'}\n"
    text += "nodes:\n  - {id: a, role: assistant, model: small}\n  - {id: s, role: skeptic, model: small}\nedges: ['a -> s']\n"
    assert load_spec_text(text).roles["skeptic"].system == "Doubt these: {inputs}"


def test_the_default_min_tokens_gives_way_to_tiny_nodes() -> None:
    """V16: a coordinator that does not set min_tokens (default 16) over nodes of max_tokens 8 is valid;
    only a min_tokens written in the file is checked against the round's ceiling."""
    spec = load_spec_text(
        BASE + "coordinator: {model: small}\nnodes:\n  - {id: a, role: assistant, model: small, max_tokens: 8}\n"
    )
    assert spec.coordinator is not None and spec.coordinator.min_tokens == 16
    _has(
        BASE
        + "coordinator: {model: small, min_tokens: 16}\nnodes:\n  - {id: a, role: assistant, model: small, max_tokens: 8}\n",
        "coordinator.min_tokens",
        "min_tokens (16) is above the most a round's call may get (8",
        4,
    )


def test_one_space_key_beside_nodes_is_an_unknown_key_of_the_graph_two_make_a_space() -> None:
    """V25: a graph with `nodes:` and one stray space key is a graph with an unknown key; only two
    space keys beside a `nodes:` read as a space file."""
    graph = "name: g\ntask: x\nnodes:\n  - {id: a, role: assistant, model: openai/z}\n"
    _has(graph, "task", "unknown key 'task'", 2)
    space = "name: g\ntask: x\nmax_nodes: 3\nnodes:\n  - {id: a, role: assistant, model: openai/z}\n"
    _has(space, "task", "this is a search-space file", 2)


def test_a_vote_with_a_successor_but_no_predecessor_is_refused() -> None:
    """V32: a vote, fuser, critic or verifier needs predecessors whether or not it feeds another node
    (the existing cases put it alone, as the graph's sink)."""
    text = BASE + "nodes:\n  - {id: v, role: vote}\n  - {id: a, role: assistant, model: small}\nedges: ['v -> a']\n"
    _has(text, "nodes[0]", "a 'vote' node needs predecessors (node 'v' has none)", 5)


@pytest.mark.parametrize(
    "text",
    [
        "name: g\nmodels:\n  q: {model: hosted_vllm/q, api_base: 'localhost:8000/v1'}\nnodes:\n  - {id: a, role: assistant, model: q}\n",
        "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b, temperature: '0.3'}\n",
    ],
    ids=["an api_base that is no URL", "a quoted number"],
)
def test_a_stored_runs_graph_loads_under_field_rules_added_since(text: str) -> None:
    """V27: `stored` must reach the field rules too (pydantic's validation context), not only the
    graph rules: a run stored before the api_base and as-written rules could no longer be shown."""
    with pytest.raises(SpecError):
        load_spec_text(text, "g.yaml")
    assert load_spec_text(text, "run x", stored=True).nodes


def test_a_best_known_record_is_told_apart_from_graphs_and_spaces() -> None:
    """V26: `validate` of a spaces folder met `sim best-known` records and reported every key unknown."""
    from agentscale.graphs.validate import looks_like_best_known

    assert looks_like_best_known({"space": "s.yaml", "candidate": {}, "accuracy": 0.5})
    assert not looks_like_best_known({"space": "s.yaml", "candidate": {}, "accuracy": 0.5, "nodes": []})
    assert not looks_like_best_known({"space": "s.yaml", "candidate": {}})
