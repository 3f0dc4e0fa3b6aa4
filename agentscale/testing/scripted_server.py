"""A small scripted HTTP server that speaks the OpenAI chat-completions API.

Tests and benchmarks talk to it over real HTTP through litellm, exactly as they would to vLLM or a
hosted API: nothing in agentscale is monkeypatched. Answers are deterministic and scriptable per model
and per prompt pattern; latency and failures are configurable; every request and the peak number of
concurrent requests are recorded.

Run standalone: ``python -m agentscale.testing --port 8123 --latency 0.2``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_SUM = re.compile(r"what is\s+(-?\d+)\s*([+\-*])\s*(-?\d+)", re.IGNORECASE)
_CANDIDATE = re.compile(r"^Candidate (\d+):", re.MULTILINE)


def default_reply(request: dict[str, Any]) -> str:
    """Verifier prompts get a score per candidate; 'What is a + b' gets the right number."""
    messages = request.get("messages", [])
    text = "\n".join(str(m.get("content", "")) for m in messages)
    if "Candidate N: S" in text:
        count = len(set(_CANDIDATE.findall(text)))
        return "\n".join(f"Candidate {i}: {10 - i}" for i in range(1, count + 1))
    match = _SUM.search(text)
    if match:
        a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
        value = a + b if op == "+" else a - b if op == "-" else a * b
        return f"Let me compute. {a} {op} {b} = {value}.\nFinal answer: {value}"
    return "Final answer: ok"


class _Server(ThreadingHTTPServer):
    # The default listen backlog of 5 drops SYNs when many clients connect at once; the retransmit
    # then costs a full second and makes concurrency look like serialisation.
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up before its reply (a cancelled or timed-out call, which tests make on
        purpose) is not a server error; anything else is printed as socketserver does."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Rule:
    """A scripted behaviour. Matches on the requested model and/or a regex over the prompt text.

    `replies` are used in turn (cycling); `status` makes matching requests fail with that HTTP code;
    `times` limits how many requests the rule applies to (then it is skipped); `body` is sent as the
    whole 200 reply instead of a completion (a server's malformed or partial replies: no choices, no
    usage); `headers` go with the reply or the failure (`Retry-After`); `finish_reason` is the
    completion's (`length`: as if cut at max_tokens).
    """

    replies: list[str] = field(default_factory=list)
    model: str | None = None
    pattern: str | None = None
    status: int | None = None
    times: int | None = None
    latency_s: float | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    _used: int = 0
    _cycle: Any = None

    def matches(self, request: dict[str, Any], prompt: str) -> bool:
        if self.times is not None and self._used >= self.times:
            return False
        if self.model is not None and request.get("model") != self.model:
            return False
        return not (self.pattern is not None and not re.search(self.pattern, prompt, re.DOTALL))

    def count_use(self) -> None:
        """One more request this rule applied to (what `times` limits)."""
        self._used += 1

    def next_reply(self) -> str:
        if self._cycle is None:
            self._cycle = itertools.cycle(self.replies or ["Final answer: ok"])
        return str(next(self._cycle))


class ScriptedServer:
    """Start with `with ScriptedServer() as server:`; `server.api_base` is the /v1 URL."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        reply: Callable[[dict[str, Any]], str] = default_reply,
        models: tuple[str, ...] = ("scripted",),
    ) -> None:
        self.latency_s = latency_s
        self.models = models  # listed by GET /v1/models, with every model a request named
        self.reply = reply
        self.rules: list[Rule] = []
        self.requests: list[dict[str, Any]] = []
        self.peak_concurrency = 0
        self._active = 0
        # bumped by reset(): a request of an earlier test still sleeping (its client gone) no longer
        # counts in this test's peak (a 30 s request left a batch bounded to 2 measured at 3)
        self._generation = 0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # lifecycle ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (`python -m agentscale.testing`)."""
        self._httpd.serve_forever()

    def stop(self) -> None:
        """Stop listening and drop open keep-alive connections, as a stopped process would (clients
        would otherwise go on reaching a "stopped" server through their pooled connections)."""
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # scripting ----------------------------------------------------------------------------
    def add_rule(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def reset(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.peak_concurrency = 0
            self._active = 0
            self._generation += 1

    @property
    def completion_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r.get("_path", "").endswith("/chat/completions")]

    def _decide(self, request: dict[str, Any]) -> tuple[int, str, float, Rule | None]:
        prompt = "\n".join(str(m.get("content", "")) for m in request.get("messages", []))
        with self._lock:
            for rule in self.rules:
                if rule.matches(request, prompt):
                    rule.count_use()
                    latency = self.latency_s if rule.latency_s is None else rule.latency_s
                    if rule.status is not None:
                        return rule.status, f"scripted failure {rule.status}", latency, rule
                    return 200, rule.next_reply(), latency, rule
        return 200, self.reply(request), self.latency_s, None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.add(self.connection)

            def finish(self) -> None:
                with server._lock:
                    server._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    named = {str(r.get("model")) for r in server.requests if r.get("model")}
                    models = sorted(named | set(server.models))
                    self._send_json(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})
                elif self.path.rstrip("/") in ("/health", "/v1/health"):
                    self._send_json(200, {"status": "ok"})
                else:
                    self._send_json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send_json(400, {"error": {"message": "invalid JSON"}})
                    return
                request["_path"] = self.path
                request["_received"] = time.time()
                request["_authorization"] = self.headers.get("Authorization")  # which key a client sent
                with server._lock:
                    server.requests.append(request)
                    server._active += 1
                    server.peak_concurrency = max(server.peak_concurrency, server._active)
                    generation = server._generation
                # a request stops counting as in flight once its reply is ready: the client may send its
                # next one as soon as it has read the reply, before a finally after the write would run
                try:
                    found = self.path.rstrip("/").endswith("/chat/completions")
                    status, text, latency, rule = server._decide(request) if found else (404, "", 0.0, None)
                    if latency:
                        time.sleep(latency)
                finally:
                    with server._lock:
                        if generation == server._generation:
                            server._active -= 1
                headers = rule.headers if rule is not None else {}
                if not found:
                    self._send_json(404, {"error": {"message": "not found"}})
                elif status != 200:
                    error = {"error": {"message": text, "type": "scripted", "code": status}}
                    self._send_json(status, error, headers)
                elif rule is not None and rule.body is not None:
                    self._send_json(200, rule.body, headers)
                else:
                    self._reply(request, text, headers, rule.finish_reason if rule is not None else "stop")

            def _reply(self, request: dict[str, Any], text: str, headers: dict[str, str], finish_reason: str) -> None:
                prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
                completion_tokens = max(1, len(text.split()))
                usage = {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                }
                created = int(time.time())
                model = request.get("model", "scripted")
                if request.get("stream"):
                    self.send_response(200)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "text/event-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    chunk = {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}],
                    }
                    done = {
                        **chunk,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}],
                        "usage": usage,
                    }
                    for payload in (chunk, done):
                        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.close_connection = True
                    return
                self._send_json(
                    200,
                    {
                        "id": "chatcmpl-scripted",
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": finish_reason,
                            }
                        ],
                        "usage": usage,
                    },
                    headers,
                )

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible server for tests and benchmarks.")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to sleep per completion request")
    args = parser.parse_args()
    server = ScriptedServer(port=args.port, latency_s=args.latency)
    print(f"scripted server on {server.api_base}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
