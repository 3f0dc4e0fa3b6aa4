"""Parsing Python source from worker threads without tripping CPython's AST recursion counter.

Code scorers and the tester parse model-written programs in worker threads (`asyncio.to_thread`), many
at once. On CPython before 3.11.8 / 3.12.1 (gh-106905) the AST constructor keeps one recursion counter
per interpreter; a garbage collection that runs a finalizer in the middle of a parse can hand the GIL
to another thread that parses too, and the first parse then fails with ``SystemError: AST constructor
recursion depth mismatch``. A real-model eval died of it (the tester, 3 programs at once, 16 items in
flight). Every parse in the package goes through one lock instead; a parse takes microseconds.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_PARSE_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """`ast.parse` of a module, one thread at a time."""
    with _PARSE_LOCK:
        return ast.parse(source)


def parse_expression(source: str) -> ast.expr:
    """The expression `source` is (`ast.parse(..., mode="eval")`), one thread at a time."""
    with _PARSE_LOCK:
        return ast.parse(source, mode="eval").body


def literal_value(source: str) -> Any:
    """`ast.literal_eval` of a string (it parses too), one thread at a time."""
    with _PARSE_LOCK:
        return ast.literal_eval(source)
