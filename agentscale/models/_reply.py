"""Reading a provider's reply into a call's result, and what a reply or a refusal says about retrying.

Kept apart from the gateway's loop because servers differ in what they leave out: a 200 with no
choice at all (`choices: []`) is a malformed reply, retried like malformed JSON, not an IndexError
that ended the whole run; a reply without `usage` reaches us as zeros (litellm fills them in), which
would price the call at nothing under every cap; a 429's `Retry-After` says how long to wait.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable
from typing import Any

from agentscale.models.cost import estimate_prompt_tokens

MAX_RETRY_AFTER_S = 60.0  # a server asking for longer is not waited for beyond this (as OpenAI's client)


class MalformedReply(Exception):
    """A reply the server sent whole but without an answer to read (`choices: []`): retryable."""


def check_reply(response: Any) -> None:
    """Raise MalformedReply unless the reply holds a choice with a message."""
    choices = getattr(response, "choices", None)
    if not choices or getattr(choices[0], "message", None) is None:
        raise MalformedReply("the reply held no choice (choices: [])")


def reply_text_and_usage(response: Any, messages: list[dict[str, str]]) -> tuple[str, int, int]:
    """(text, prompt tokens, completion tokens) of a checked reply. A count the server did not
    report (zero where a call cannot have zero: every prompt has tokens, and so has any text) is
    estimated, so spend caps, the ledger and costs count the call; so is a negative one, which
    no call can have: taken as sent, it took spend off the ledger (`prompt_tokens: -100000`
    showed a run's cost as $-99.85 and let its next calls past a token cap and the search's
    spend cap). A count above what was asked for is kept: it overstates the spend, never hides it."""
    text = _storable(getattr(response.choices[0].message, "content", None) or "")
    usage = getattr(response, "usage", None)
    prompt_tokens = max(0, int(getattr(usage, "prompt_tokens", 0) or 0))
    completion_tokens = max(0, int(getattr(usage, "completion_tokens", 0) or 0))
    if not prompt_tokens:
        prompt_tokens = estimate_prompt_tokens(messages)
    if not completion_tokens and text:
        completion_tokens = max(1, len(text) // 4)
    return text, prompt_tokens, completion_tokens


def _storable(text: str) -> str:
    """The text with each half of a surrogate pair (JSON's "\\ud800", which no UTF-8 text holds)
    made U+FFFD: kept as sent, the paid call's ledger and cache rows failed to be written, so the
    call was in no ledger and its whole run failed (a served request, retried by its client, ran
    three times)."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def server_asked_wait_s(exc: BaseException) -> float | None:
    """The seconds a refusal's `Retry-After` header asks for (a number or an HTTP date), at most
    MAX_RETRY_AFTER_S; None when it asks nothing.

    >>> class Refusal(Exception):
    ...     litellm_response_headers = {"retry-after": "3"}
    >>> server_asked_wait_s(Refusal())
    3.0
    """
    headers = getattr(exc, "litellm_response_headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def raised_before_sending(exc: BaseException) -> bool:
    """Whether the client refused to send the request (missing credentials, a bad option): an error of
    the OpenAI SDK that is no HTTP exchange in the exception's chain. litellm reports it as HTTP 500,
    which read as a server's failure and was retried with backoff, 8 s for a missing API key."""
    import openai

    return _in_chain(exc, lambda e: isinstance(e, openai.OpenAIError) and not isinstance(e, openai.APIError))


_POOL_REFUSAL = "cannot schedule new futures after"  # ThreadPoolExecutor.submit's, shut down ("after shutdown")


def at_interpreter_exit(exc: BaseException) -> bool:
    """Whether the call failed because Python is shutting down: once the main thread has returned,
    thread pools are shut down (before Python waits for the other threads and runs exit hooks) and
    litellm hands every call to one. litellm reports the pool's refusal as a connection failure,
    which was retried with backoff (2-3 s per node) and read as a network fault."""
    return not threading.main_thread().is_alive() and _in_chain(exc, lambda e: _POOL_REFUSAL in str(e))


def refused_connection(exc: BaseException) -> bool:
    """Nothing accepted the connection: a refusal somewhere in the exception's chain (litellm reports
    it as an HTTP 500). Not a timeout, which may be a busy server rather than a gone one."""
    return _in_chain(exc, lambda e: isinstance(e, ConnectionRefusedError))


def _in_chain(exc: BaseException, wanted: Callable[[BaseException], bool]) -> bool:
    seen: BaseException | None = exc
    for _ in range(16):  # chains are short; the bound guards against a cycle
        if seen is None:
            return False
        if wanted(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return str(value).strip() if value is not None else None
