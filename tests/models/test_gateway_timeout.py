"""An endpoint may carry its own call timeout (local CPU servers: slow under load, not dead)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentscale.errors import AgentScaleError, ModelCallError
from agentscale.models import endpoints as endpoints_module
from agentscale.models.endpoints import Endpoint, register_endpoint_resolver
from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.local import LOCAL_TIMEOUT_S
from agentscale.models.registry import ResolvedModel
from agentscale.testing import ScriptedServer
from agentscale.testing.scripted_server import Rule


@pytest.fixture
def slow_prefix(scripted: ScriptedServer) -> Iterator[dict[str, float | None]]:
    """Routes `slowtest/<x>` go to the scripted server with the timeout the test sets."""
    chosen: dict[str, float | None] = {"timeout_s": None}

    async def resolve(model: ResolvedModel) -> Endpoint:
        return Endpoint("hosted_vllm/scripted", scripted.api_base, timeout_s=chosen["timeout_s"])

    register_endpoint_resolver("slowtest/", resolve)
    yield chosen
    endpoints_module._RESOLVERS.pop("slowtest/", None)


async def test_the_endpoint_timeout_replaces_the_gateways(
    scripted: ScriptedServer, slow_prefix: dict[str, float | None]
) -> None:
    scripted.add_rule(Rule(replies=["Final answer: 1"], latency_s=0.6))
    gateway = Gateway(None, GatewaySettings(timeout_s=0.2, max_retries=0, cache=False))
    request = CallRequest(ResolvedModel("m", "slowtest/x"), [{"role": "user", "content": "hi"}])
    with pytest.raises(ModelCallError, match=r"[Tt]imeout"):
        await gateway.complete(request)
    slow_prefix["timeout_s"] = 5.0
    result = await gateway.complete(request)
    assert result.completion == "Final answer: 1"


def test_local_servers_get_minutes_not_the_default_two() -> None:
    assert LOCAL_TIMEOUT_S >= 600 > GatewaySettings().timeout_s


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_concurrency": 0}, "max_concurrency must be at least 1, got 0"),
        ({"timeout_s": -1}, "timeout_s must be positive, got -1"),
        ({"timeout_s": 0}, "timeout_s must be positive, got 0"),  # every attempt timed out at once
        ({"max_retries": -2}, "max_retries cannot be negative, got -2"),
        ({"timeout_s": float("nan")}, "timeout_s must be positive, got nan"),  # every call timed out
        ({"max_concurrency": 1.5}, "max_concurrency must be a whole number, got 1.5"),
        ({"backoff_s": float("nan")}, "backoff_s cannot be negative, got nan"),
    ],
)
def test_settings_that_cannot_work_are_refused(setting: dict[str, float], message: str) -> None:
    """max_concurrency=0 left no call slot: every call waited forever (the YAML's own check said >= 1)."""
    with pytest.raises(AgentScaleError, match=message):
        GatewaySettings(**setting)  # type: ignore[arg-type]
