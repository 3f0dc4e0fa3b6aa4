"""Errors survive the trip between processes (Ray, multiprocessing, concurrent.futures pickle them)."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

from agentscale.errors import BudgetExceeded, ModelCallError, SpecError, SpecIssue
from agentscale.graphs.validate import load_spec_text
from agentscale.models.serving.engine import EngineMissingError


def _invalid_graph() -> None:
    load_spec_text("name: g\nnodes:\n  - {id: a, role: nope, model: sim/llama-1b}\n", "g.yaml")


def test_errors_keep_their_message_and_fields_through_pickle() -> None:
    """A SpecError came back as '137 problems: g, ., y, ...' (its message read as its issues);
    BudgetExceeded did not come back at all (its constructor takes three arguments)."""
    errors = [
        SpecError([SpecIssue("nodes[0].role", "unknown role 'nope'", 3), SpecIssue("name", "bad", 1)], "g.yaml"),
        BudgetExceeded("tokens", 100, 250),
        ModelCallError("HTTP 500", node="a", endpoint="http://h/v1", out_of_time=True, latency_s=0.25, attempts=4),
        EngineMissingError("no module named vllm"),
    ]
    for error in errors:
        error.add_note("a note")  # and state set after the constructor: both kept (the diff review)
        error.attempts = 3  # type: ignore[attr-defined]
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
        assert copy.__notes__ == ["a note"] and copy.attempts == 3  # type: ignore[attr-defined]


class _OwnArguments(SpecError):
    def __init__(self, path: str) -> None:
        super().__init__([SpecIssue(path, "bad", 1)])
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.path,)


def test_a_subclass_with_a_constructor_of_its_own_pickles_its_own_way() -> None:
    copy = pickle.loads(pickle.dumps(_OwnArguments("nodes[0]")))
    assert isinstance(copy, _OwnArguments) and copy.path == "nodes[0]"


def test_a_spec_error_raised_in_a_worker_process_reads_the_same() -> None:
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(_invalid_graph)
        error = future.exception(timeout=120)
    assert isinstance(error, SpecError)
    assert error.source == "g.yaml" and [issue.path for issue in error.issues] == ["nodes[0].role"]
    assert str(error).startswith("g.yaml: nodes[0].role (line 3): unknown role 'nope'")
