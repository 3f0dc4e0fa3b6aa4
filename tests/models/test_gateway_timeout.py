"""An endpoint may carry its own call timeout (local CPU servers: slow under load, not dead)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agentscale.errors import AgentScaleError, ModelCallError
from agentscale.graphs.spec import Budget
from agentscale.models import endpoints as endpoints_module
from agentscale.models.budget import CallTime, RunLedger
from agentscale.models.endpoints import Endpoint, register_endpoint_resolver
from agentscale.models.gateway import CallRequest, Gateway, GatewaySettings
from agentscale.models.litellm_loader import get_litellm
from agentscale.models.local import LOCAL_TIMEOUT_S
from agentscale.models.registry import ResolvedModel
from agentscale.storage.db import Store
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
    with pytest.raises(ModelCallError, match=r"[Tt]imeout") as info:
        await gateway.complete(request)
    assert "(each attempt may take 0.2 s: a slower server needs AGENTSCALE_TIMEOUT_S" in str(info.value)
    slow_prefix["timeout_s"] = 0.3  # its own: the setting that counts is the endpoint's
    with pytest.raises(ModelCallError, match=r"each attempt may take 0\.3 s, this endpoint's timeout"):
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


def _ask(scripted: ScriptedServer, text: str = "What is 2 + 2") -> CallRequest:
    model = ResolvedModel("m", "hosted_vllm/scripted", api_base=scripted.api_base)
    return CallRequest(model, [{"role": "user", "content": text}], temperature=0.0)


async def test_a_generous_time_budget_does_not_lengthen_the_calls_timeout(
    scripted: ScriptedServer, store: Store
) -> None:
    """`timeout_s` bounds each attempt; a budget of 30 s must not turn it into 30 s per attempt (a hung
    server then held the run's only slot for its whole budget instead of `timeout_s`)."""
    scripted.add_rule(Rule(replies=["Final answer: 4"], latency_s=2.0))
    gateway = Gateway(store, GatewaySettings(timeout_s=0.3, max_retries=0))
    get_litellm()  # its import (seconds, once per process) is not the call's time
    started = time.perf_counter()
    with pytest.raises(ModelCallError, match=r"[Tt]imed out|[Tt]imeout") as failed:
        await gateway.complete(_ask(scripted), clock=CallTime(RunLedger(Budget(max_latency_s=30.0))))
    assert time.perf_counter() - started < 1.8
    assert not failed.value.out_of_time  # the call's own timeout, not the budget, ended it


async def test_a_timeout_the_budget_did_not_cut_short_is_retried(scripted: ScriptedServer, store: Store) -> None:
    """With time left in the budget, an attempt that ran out of its own `timeout_s` is retried, as
    without a budget; taken for the budget's end, one slow reply lost the item."""
    scripted.add_rule(Rule(replies=["slow"], latency_s=2.0, times=1))
    scripted.add_rule(Rule(replies=["Final answer: 4"]))
    gateway = Gateway(store, GatewaySettings(timeout_s=0.3, max_retries=1, backoff_s=0.01, max_backoff_s=0.02))
    result = await gateway.complete(_ask(scripted), clock=CallTime(RunLedger(Budget(max_latency_s=30.0))))
    assert (result.completion, result.attempts) == ("Final answer: 4", 2)


def test_unset_overrides_keep_the_defaults_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--timeout` not given reaches `from_env(timeout_s=None)`: taken as a value, every command
    without it failed with "timeout_s must be a number of seconds, got None", and AGENTSCALE_TIMEOUT_S
    was overridden by nothing."""
    for name in ("AGENTSCALE_CACHE", "AGENTSCALE_TIMEOUT_S", "AGENTSCALE_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    assert GatewaySettings.from_env(timeout_s=None, max_retries=None, cache=None) == GatewaySettings()
    monkeypatch.setenv("AGENTSCALE_TIMEOUT_S", "600")
    assert GatewaySettings.from_env(timeout_s=None).timeout_s == 600.0
    assert GatewaySettings.from_env(timeout_s=5).timeout_s == 5  # an explicit value wins
