"""One line per request for whoever runs `serve-graph`: what was asked, its status, how long it took,
which stored run answered and, for an error, what the client was told.

Why: the server logged nothing per request, so a server whose upstream key was wrong answered every
client a 502 while its own terminal stayed silent, and a 429 under load went unseen (the serve-graph
walk). A plain ASGI middleware like `Guard`, outermost, so the refusals of the key and size checks
are logged too; health checks that pass are not (a load balancer asks every few seconds).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# a JSON reply is read for its run id or error message only up to this size (an answer can be long)
_READ_AT_MOST = 256 * 1024
_SHOWN_CHARS = 300
_STREAM_TAIL = 16 * 1024  # a stream's last bytes: its finish chunk (the run id) or error event


class AccessLog:
    """Calls `say` with one line when each HTTP request ends (also when the client left first)."""

    def __init__(self, app: ASGIApp, *, say: Callable[[str], None]) -> None:
        self.app, self.say = app, say

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        reply = _Reply()

        async def sending(message: Message) -> None:
            reply.see(message)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # answered by Starlette's outermost handler, a 500 this middleware never sees
            reply.unforeseen = True
            raise
        finally:
            if not (scope["path"] == "/health" and 0 < reply.status < 400):
                with contextlib.suppress(Exception):  # the log's writer gone (stderr closed): the reply stands
                    self.say(_line(scope, reply, time.monotonic() - started))


class _Reply:
    """What the line needs of a response: its status, whether it streamed, and its JSON body when small."""

    def __init__(self) -> None:
        self.status = 0  # no response started: the client left, or the server stopped
        self.streamed = False
        self.body = bytearray()  # a JSON reply's; a stream's last events
        self.readable = True
        self.unforeseen = False

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            content_type = Headers(raw=message.get("headers", [])).get("content-type", "")
            self.streamed = content_type.startswith("text/event-stream")
            self.readable = content_type.startswith("application/json")
        elif message["type"] == "http.response.body" and self.streamed:  # its run id or error ends it
            self.body = (self.body + message.get("body", b""))[-_STREAM_TAIL:]
        elif message["type"] == "http.response.body" and self.readable:
            self.body += message.get("body", b"")
            self.readable = len(self.body) <= _READ_AT_MOST

    def said(self) -> str:
        """` run ID` of an answer, `: MESSAGE` of an error, from the JSON body or a stream's last event
        that says either (a stream that failed after its 200 ends in an error event)."""
        if self.streamed:
            lines = self.body.decode("utf-8", "replace").splitlines()
            events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
            return next(filter(None, (_said_by(event) for event in reversed(events))), "")
        return _said_by(self.body.decode("utf-8", "replace")) if self.readable and self.body else ""


def _said_by(text: str) -> str:
    """` run ID` or `: MESSAGE` of one JSON reply or event, else nothing."""
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return f": {_one_line(str(error['message']))}"
    run = data.get("agentscale")
    return f" run {run['run_id']}" if isinstance(run, dict) and run.get("run_id") else ""


def _line(scope: Scope, reply: _Reply, elapsed_s: float) -> str:
    client = scope.get("client")
    who = f"{client[0]}:{client[1]}" if client else "-"
    if reply.unforeseen and not reply.status:
        status = "500 (an error the server did not foresee: see the log above)"
    else:
        status = str(reply.status) if reply.status else "no reply (the client left or the server stopped)"
    kind = " stream" if reply.streamed else ""
    return f"{who} {scope['method']} {_one_line(scope['path'])} {status}{kind} {elapsed_s:.2f} s{reply.said()}"


def _one_line(text: str) -> str:
    """Control characters out (a client's text must not forge log lines), cut to a readable length."""
    flat = "".join(ch if ch.isprintable() else " " for ch in text)
    return flat if len(flat) <= _SHOWN_CHARS else flat[: _SHOWN_CHARS - 1] + "…"
