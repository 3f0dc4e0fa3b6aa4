"""The scripted test server: a client that hangs up before its reply is not reported as an error."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest

from agentscale.testing import ScriptedServer


def test_a_client_that_hangs_up_before_its_reply_prints_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    """Tests cancel and time out calls on purpose; the server's write then fails on a reset socket,
    and socketserver printed a BrokenPipeError traceback into the test output."""
    with ScriptedServer(latency_s=0.1) as server:
        port = int(server.api_base.split(":")[2].split("/")[0])
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
        head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        time.sleep(1.0)  # the server wakes from its latency (0.1 s) and writes to the reset socket
        assert len(server.requests) == 1
    assert "Traceback" not in capfd.readouterr().err
