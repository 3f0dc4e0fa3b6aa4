"""Parsing from many threads at once: the guard against CPython's AST recursion counter race."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from agentscale.tasks.python_source import literal_value, parse_expression, parse_python

NESTED = "x = " + "[" * 80 + "1" + "]" * 80 + "\n"


class _FinalizedCycle:
    """Garbage whose finalizer yields the GIL: a collection inside a parse hands it to another thread."""

    def __init__(self) -> None:
        self.me = self

    def __del__(self) -> None:
        time.sleep(0)


def test_parses_from_many_threads_never_raise_a_system_error() -> None:
    """Unguarded, this loop hits `SystemError: AST constructor recursion depth mismatch` within seconds
    on CPython 3.11.7 (most tries here); guarded, never."""
    errors: list[str] = []
    stop = time.monotonic() + 3.0

    def work() -> None:
        while time.monotonic() < stop and not errors:
            for _ in range(5):
                _FinalizedCycle()
            try:
                parse_python(NESTED)
            except SystemError as exc:
                errors.append(str(exc))

    threshold = gc.get_threshold()
    gc.set_threshold(10)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        gc.set_threshold(*threshold)
    assert errors == []


def test_the_guarded_parsers_keep_their_meaning() -> None:
    assert parse_python("def f():\n    return 1\n").body[0].name == "f"  # type: ignore[attr-defined]
    assert parse_expression("f(1, 'a')").__class__.__name__ == "Call"
    assert literal_value("[1, {'a': (2,)}]") == [1, {"a": (2,)}]
    with pytest.raises(SyntaxError):
        parse_python("def (")
