"""Scripted servers in their own processes, so the client under measurement has the GIL to itself."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scripted_server(latency_s: float = 0.0) -> Iterator[str]:
    """Yield the /v1 base URL of a scripted server process sleeping `latency_s` per request."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "agentscale.testing", "--port", str(port), "--latency", str(latency_s)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()  # "scripted server on ..." once it listens
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(10)
