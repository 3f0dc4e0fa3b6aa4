"""litellm replaced by a canned reply, to measure agentscale's own CPU (figures, not a test).

`Gateway._call` is the one place agentscale hands a request to litellm; answering there at once
leaves everything else (cache, ledger, rows, LangGraph, scoring) running as usual.
"""

from __future__ import annotations

import types
from typing import Any

from agentscale import Gateway

_REPLY = types.SimpleNamespace(
    choices=[types.SimpleNamespace(message=types.SimpleNamespace(content="2 + 1 = 3.\nFinal answer: 3"))],
    usage=types.SimpleNamespace(prompt_tokens=40, completion_tokens=8),
    _hidden_params={},
)


async def _canned_call(self: Gateway, endpoint: Any, request: Any, timeout: float, **options: Any) -> Any:
    return _REPLY


def can_litellm() -> None:
    """From now on in this process every model call gets the canned reply (the answer is 3)."""
    Gateway._call = _canned_call  # type: ignore[method-assign]
