"""What the endpoint answers: errors in OpenAI's shape and the parts of a completion, shared by the
JSON reply and the streamed one."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from agentscale.errors import BudgetExceeded
from agentscale.graphs.result import RunResult
from agentscale.graphs.simulated import is_simulated

# a 5xx that OpenAI's clients would retry twice, each time running (and paying for) the graph again
NO_RETRY = {"x-should-retry": "false"}


class ApiError(Exception):
    """An error answered as `{"error": {...}}` with an HTTP status (and `headers`)."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = dict(headers or {})  # its own: NO_RETRY is shared

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "code": self.code}}


def stopping() -> ApiError:
    """The 503 of a request the stopping server ends (a fresh one each time: raised, an exception
    keeps its traceback, and one shared instance would gather every request's)."""
    return ApiError(503, "the server is stopping; this request's run was stopped", "server_error", "server_stopping")


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(status_code=error.status, content=error.body(), headers=error.headers)


def usage_of(result: RunResult) -> dict[str, int]:
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def finish_reason_of(result: RunResult) -> str:
    """`length` when every model reply that gave the answer stopped at its max_tokens, else `stop`.

    Why: a client reads "length" as "the text may be cut, ask again with more tokens"; a graph whose
    answering node was cut said "stop", so the cut answer read as a whole one. Every answered call
    whose answer is the graph's counts (a vote passes its inputs' answer on unchanged), and one whole
    reply giving it (another sample, a reviser) makes it whole."""
    givers = [t for t in result.trace if t.status == "ok" and t.route and t.answer == result.answer]
    return "length" if givers and all(t.truncated for t in givers) else "stop"


def run_of(result: RunResult) -> dict[str, Any]:
    """Which stored run answered (`runs show` reads it), in a reply's `agentscale` field, and whether
    simulated models answered (their answers and figures are no model's)."""
    simulated = is_simulated(trace.route for trace in result.trace)
    return {"run_id": result.run_id, "stopped_reason": result.stopped_reason, "simulated": simulated}


def unknown_model(asked: str, served: str) -> ApiError:
    return ApiError(404, f"model {asked!r} not found; this server serves {served!r}", code="model_not_found")


def no_answer(result: RunResult) -> ApiError:
    """A question the graph left unanswered is an error, not an empty answer (a client could not tell
    them apart: status 200, content ""). 502 when model calls failed, else 500: a budget stopped it,
    or no reply held an answer in the graph's format. The message names the run (when the server
    records runs), not the node errors: those carry the upstream endpoints' addresses.

    `x-should-retry: false`: OpenAI's clients retry a 5xx twice unless told not to, so one request
    ran the graph three times, each paid (and each failed model call already had the gateway's
    retries). A 503 (stopping, busy) is still theirs to retry. A budget is named first: a call its
    time cap cut is a failed call too, and such a run read 502 "its model calls failed"."""
    failed = False
    if BudgetExceeded.said(result.stopped_reason):
        why = "a budget stopped it first"
    elif any(trace.status == "failed" for trace in result.trace):
        failed, why = True, "its model calls failed"
    else:
        why = "no reply held an answer in its format"
    where = f"; run {result.run_id} on the server holds the details" if result.run_id else ""
    message = f"the graph gave no answer ({why}){where}"
    return ApiError(502 if failed else 500, message, "server_error", "no_answer", headers=NO_RETRY)
