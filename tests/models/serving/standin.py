"""A stand-in for a vLLM server process in serving tests: after a delay (loading) it lists a model (`m`)
on `GET /v1/models`, for a while or until killed, and, like vLLM, only to a request bearing the key
in its `VLLM_API_KEY` when that is set. Nothing else of vLLM is needed to test starts, locks,
readiness and where a server is found."""

from __future__ import annotations

import sys

_SCRIPT = """
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

host, port, loading_s, serving_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
name = sys.argv[5]
key = os.environ.get("VLLM_API_KEY")
time.sleep(loading_s)  # loading: nothing answers yet


class Models(BaseHTTPRequestHandler):
    def do_GET(self):
        if key and self.headers.get("Authorization") != "Bearer " + key:
            body = json.dumps({"error": "Unauthorized"}).encode()
            self.send_response(401)
        else:
            body = json.dumps({"object": "list", "data": [{"id": name}]}).encode()
            self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer((host, port), Models)
if serving_s <= 0:
    server.serve_forever()
server.timeout = 0.1
stop = time.monotonic() + serving_s
while time.monotonic() < stop:
    server.handle_request()
"""


def standin_server(
    host: str, port: int | str, *, loading_s: float = 0.0, serving_s: float = 0.0, name: str = "m"
) -> list[str]:
    """The command of a stand-in server on `host:port` that answers after `loading_s` seconds, then
    for `serving_s` seconds (0: until it is killed), listing model `name`."""
    return [sys.executable, "-c", _SCRIPT, host, str(port), str(loading_s), str(serving_s), name]
