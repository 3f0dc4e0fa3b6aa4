"""Building a `Graph` in code: data shaped like the YAML, its errors, and what records its runs."""

from __future__ import annotations

import collections.abc
import typing
from pathlib import Path

import pytest

import agentscale
from agentscale import AgentScaleError, Gateway, Graph, RunNotFound, SpecError, Store
from agentscale.models.gateway import GatewaySettings


def test_from_dict_builds_the_graph_a_file_would() -> None:
    data = {
        "name": "pair",
        "models": {"m": {"model": "sim/llama-1b"}},
        "nodes": [{"id": "a", "role": "assistant", "model": "m"}, {"id": "b", "role": "critic", "model": "m"}],
        "edges": ["a -> b"],
    }
    graph = Graph.from_dict(data, store=None)
    assert graph.output == "b" and Graph.from_yaml(graph.to_yaml(), store=None).spec == graph.spec


def test_from_dict_names_each_mistake_by_its_path() -> None:
    """`GraphSpec.model_validate`, the only way docs/api.md showed, raised pydantic's ValidationError:
    no SpecError, no `.issues`, not an AgentScaleError."""
    data = {
        "name": "x",
        "models": {"m": {"model": "sim/llama-1b"}},
        "nodes": [{"id": "a", "role": "assistant", "modle": "m"}],
        "defaults": {"temperature": 9},
    }
    with pytest.raises(SpecError) as raised:
        Graph.from_dict(data, store=None)
    paths = {issue.path for issue in raised.value.issues}
    assert {"nodes[0].modle", "defaults.temperature"} <= paths, raised.value.issues
    assert "did you mean 'model'" in str(raised.value)
    route = {"name": "y", "nodes": [{"id": "a", "role": "assistant", "model": "sim/nosuch"}]}
    with pytest.raises(SpecError, match=r"nodes\[0\]\.model: unknown simulated model 'sim/nosuch'"):
        Graph.from_dict(route, store=None)  # routes are checked too, as `load` checks a file's


def test_from_yaml_given_a_path_says_how_to_read_a_file(tmp_path: Path) -> None:
    """`Graph.from_yaml(Path("g.yaml"))` raised AttributeError: 'PosixPath' object has no attribute
    'read'; the file's name as text was "a graph file must be a YAML mapping"."""
    with pytest.raises(TypeError, match=r"not PosixPath; read a file with agentscale.load\(path\)"):
        Graph.from_yaml(tmp_path / "g.yaml", store=None)  # type: ignore[arg-type]
    with pytest.raises(
        SpecError,
        match=r"not the text 'g.yaml'; a file name\? give the file's text, or read the file with agentscale.load",
    ):
        Graph.from_yaml("g.yaml", store=None)
    text = "name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    assert Graph.from_yaml(text.encode(), store=None).name == "g"  # bytes (Path.read_bytes()) still read


def test_the_public_signatures_say_what_the_methods_take_and_give() -> None:
    """`astream` was typed `AsyncIterator`, which has no `aclose`: `contextlib.aclosing(graph.astream(q))`
    failed an app's `mypy --strict`, though closing the stream is what stops its run; `from_yaml`
    decodes bytes but was typed `str` (an audit of the API in apps)."""
    stream = typing.get_type_hints(Graph.astream)["return"]
    assert typing.get_origin(stream) is collections.abc.AsyncGenerator
    assert typing.get_type_hints(Graph.from_yaml)["text"] == str | bytes
    assert (
        Graph.from_yaml(b"name: b\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n", store=None).name == "b"
    )


def test_a_store_and_a_gateway_with_another_store_are_refused(tmp_path: Path) -> None:
    """The gateway's store recorded and `store=` was ignored, silently."""
    recorded = Gateway(Store(tmp_path / "b.db"))
    text = "name: z\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    with pytest.raises(AgentScaleError, match="give store= or gateway=, not both"):
        Graph.from_yaml(text, store=Store(tmp_path / "a.db"), gateway=recorded)
    assert Graph.from_yaml(text, store=recorded.store, gateway=recorded).store is recorded.store


async def test_an_unknown_run_id_is_refused_before_any_call(make_graph, scripted, store: Store) -> None:  # type: ignore[no-untyped-def]
    """The question's rows failed at the end (sqlite3.IntegrityError: FOREIGN KEY constraint failed),
    after its calls were paid."""
    graph = make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    with pytest.raises(RunNotFound, match="no run 'nosuch'"):
        await graph.arun("What is 1 + 1?", run_id="nosuch")
    assert scripted.completion_requests == []
    run = store.create_run("run", graph_name="r")
    assert (await graph.arun("What is 1 + 1?", run_id=run.id)).run_id == run.id


async def test_a_key_already_in_the_run_is_refused_before_any_call(make_graph, scripted, store: Store) -> None:  # type: ignore[no-untyped-def]
    """`arun(q2, run_id=R)` with the default item_key after `arun(q1)` stored a second item "0": runs
    show listed both questions' calls under each, the report none under the first (a new user's walk)."""
    graph = make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    first = await graph.arun("What is 1 + 1?")
    assert first.run_id is not None and len(scripted.completion_requests) == 1
    with pytest.raises(AgentScaleError, match=f"run {first.run_id} already has an item '0': give each question"):
        await graph.arun("What is 2 + 2?", run_id=first.run_id)
    assert len(scripted.completion_requests) == 1
    assert (await graph.arun("What is 2 + 2?", run_id=first.run_id, item_key="1")).answer == "4"
    assert [item.item_key for item in store.run_items(first.run_id)] == ["0", "1"]


def test_a_synchronous_runs_error_is_not_chained_to_the_loop_probe(tmp_path: Path) -> None:
    """Every error of `Graph.run` printed "RuntimeError: no running event loop", then "During
    handling of the above exception, another exception occurred": it was raised inside the probe's
    `except`."""
    text = "name: z\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    graph = Graph.from_yaml(text, store=Store(tmp_path / "a.db"))
    with pytest.raises(RunNotFound, match="no run 'nosuch'") as raised:
        graph.run("What is 1 + 1?", run_id="nosuch")
    assert raised.value.__context__ is None


async def test_arguments_a_run_would_trip_over_after_paying_are_refused_up_front(
    make_graph, scripted, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A path as `store=` failed at the first row (AttributeError, hiding the run's own error), an
    unknown `answer_format=` at the answer (KeyError), `item_key=None` on the question's rows
    (IntegrityError): each after the calls were paid. GatewaySettings took "5" and "no"."""
    text = "name: z\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n"
    with pytest.raises(TypeError, match=r"store= takes a Store or None, not str: use store=Store\(path\)"):
        Graph.from_yaml(text, store=str(tmp_path / "x.db"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Gateway takes a Store or None, not PosixPath"):
        Gateway(tmp_path / "x.db")  # type: ignore[arg-type]
    with pytest.raises(AgentScaleError, match="answer_format='numeric': use one of text, number, choice, code"):
        Graph.from_yaml(text, store=None, answer_format="numeric")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="item_key takes a string, not NoneType"):
        await make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\n").arun("1 + 1?", item_key=None)
    assert scripted.completion_requests == []
    with pytest.raises(AgentScaleError, match="timeout_s must be a number of seconds, got '5'"):
        GatewaySettings(timeout_s="5")  # type: ignore[arg-type]
    with pytest.raises(AgentScaleError, match="cache must be True or False, got 'no'"):
        GatewaySettings(cache="no")  # type: ignore[arg-type]
    # an API fuzzer's: every call failed ("cannot convert float infinity to integer"), the first retry slept forever
    for name in ("timeout_s", "backoff_s"):
        with pytest.raises(AgentScaleError, match=f"{name} must be a finite number of seconds, got inf"):
            GatewaySettings(**{name: float("inf")})
    # each failed at the first run or deeper, or (a dict of settings) was ignored
    with pytest.raises(TypeError, match="gateway= takes a Gateway or None, not str"):
        Graph.from_yaml(text, gateway="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Gateway's settings are a GatewaySettings\(...\), not dict"):
        Gateway(None, {"timeout_s": 1})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Graph takes a GraphSpec, not dict: use Graph.from_dict\(data\)"):
        Graph({"name": "z"}, store=None)  # type: ignore[arg-type]
    with pytest.raises(SpecError, match=r"line 1: not UTF-8 text: byte 0xff cannot be read"):
        Graph.from_yaml(b"\xff\xfe\x00", store=None)
    with pytest.raises(TypeError, match=r"this is YAML text: use Graph.from_yaml\(text\)"):  # "file not found"
        agentscale.load(text)
    with pytest.raises(SpecError, match="an empty path: give a graph or space file"):  # "is a directory"
        agentscale.load("")
    with pytest.raises(TypeError, match="record takes True or False, not 'no'"):  # it recorded
        await make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\n").arun("1 + 1?", record="no")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limit takes a whole number, not str"):  # a SQLAlchemy ValueError
        Store(tmp_path / "l.db").list_runs("x")  # type: ignore[arg-type]
    graph = make_graph("name: r\nnodes:\n  - {id: a, role: assistant, model: m}\n")
    result = await graph.arun("What is 1 + 1?", item_key=7)  # type: ignore[arg-type]  # an int, as before
    assert [item.item_key for item in graph.store.run_items(result.run_id)] == ["7"]
