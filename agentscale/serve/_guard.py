"""The checks a request meets before the app reads it: the bearer key and the declared body size.

A plain ASGI middleware, not Starlette's `BaseHTTPMiddleware`: that one runs the app in a task group
of its own, so when the server stopped with requests still running (uvicorn cancels them once its
graceful shutdown times out) their answer was lost in the group's cancellation, and the clients got
a text/plain 500 with a traceback in the server's log.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from agentscale.serve._replies import ApiError, error_response


class Guard:
    """Refuses, in OpenAI's error shape, a `/v1/` request without the bearer key (keys compared in
    constant time) and a body whose Content-Length is over the limit (a chunked body is counted as
    it is read)."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app, self.api_key, self.max_body_bytes = app, api_key, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refused = self._refusal(scope) if scope["type"] == "http" else None
        if refused is not None:
            await error_response(refused)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> ApiError | None:
        headers = Headers(scope=scope)
        if self.api_key is not None and scope["path"].startswith("/v1/"):
            header = headers.get("authorization", "")
            offered = header[7:] if header.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(offered.encode(), self.api_key.encode()):
                return ApiError(401, "missing or invalid API key", "authentication_error", "invalid_api_key")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return ApiError(413, f"request body over {self.max_body_bytes} bytes")
        return None
