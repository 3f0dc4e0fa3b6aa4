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
        ModelCallError("HTTP 500", node="a", endpoint="http://h/v1", out_of_time=True),
        EngineMissingError("no module named vllm"),
    ]
    for error in errors:
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)


def test_a_spec_error_raised_in_a_worker_process_reads_the_same() -> None:
    with ProcessPoolExecutor(1) as pool:
        future = pool.submit(_invalid_graph)
        error = future.exception(timeout=120)
    assert isinstance(error, SpecError)
    assert error.source == "g.yaml" and [issue.path for issue in error.issues] == ["nodes[0].role"]
    assert str(error).startswith("g.yaml: nodes[0].role (line 3): unknown role 'nope'")
