"""Serving tests must not reuse a shared server someone left running on the default port."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_shared_port() -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    previous = os.environ.get("AGENTSCALE_VLLM_PORT")
    os.environ["AGENTSCALE_VLLM_PORT"] = str(port)  # sessions-wide, subprocesses inherit it
    yield
    if previous is None:
        os.environ.pop("AGENTSCALE_VLLM_PORT", None)
    else:
        os.environ["AGENTSCALE_VLLM_PORT"] = previous
