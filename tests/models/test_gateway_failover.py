"""A local server that stops accepting connections mid-run: the gateway's retry looks for the model's
server again instead of knocking on the dead port until its retries run out (items scored as failures)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.litellm_loader import get_litellm
from agentscale.models.registry import resolve
from agentscale.models.serving import stop_all
from agentscale.testing import ScriptedServer

NAME = "smollm2-135m"


def _record(cache: Path, server: ScriptedServer) -> None:
    """Enter `server` in the state file as the running server of the model (what another process does)."""
    cache.mkdir(parents=True, exist_ok=True)
    entry = {"name": NAME, "port": server.port, "pid": os.getpid(), "owner_pid": os.getpid()}
    (cache / "servers.json").write_text(json.dumps({"servers": [entry]}))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    yield tmp_path / "cache"
    stop_all()  # forget the reused servers


async def test_a_retry_goes_to_the_replacement_of_a_reused_server_that_went_away(cache: Path) -> None:
    first = ScriptedServer(models=(NAME,)).start()
    second = ScriptedServer(models=(NAME,)).start()
    try:
        _record(cache, first)
        gateway = Gateway(None, GatewaySettings(max_retries=2, backoff_s=0.05, max_backoff_s=0.1, cache=False))
        get_litellm()  # imported now, so the server found below was health-checked under a second ago
        model = resolve(f"local/{NAME}", None)
        ask = [{"role": "user", "content": "What is 2 + 3?"}]
        assert (await gateway.complete(CallRequest(model, ask))).completion
        assert len(first.completion_requests) == 1
        first.stop()  # its owner stopped it and started another on a new port
        _record(cache, second)
        result = await gateway.complete(CallRequest(model, ask))  # the first attempt still goes to `first`
        assert result.attempts == 2 and result.completion
        assert len(second.completion_requests) == 1
    finally:
        second.stop()
