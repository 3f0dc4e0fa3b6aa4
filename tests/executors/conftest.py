"""One Ray session per test module (starting Ray and its workers costs seconds on this machine)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from agentscale.executors.ray_executor import RayExecutor


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """A local Ray with 2 CPUs, started by the test (none may be running before)."""
    ray = pytest.importorskip("ray", reason="make test installs agentscale[ray]")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_executor(ray_session: Any) -> Iterator[RayExecutor]:
    """Two worker actors, shared by the module's tests."""
    executor = RayExecutor(workers=2)
    asyncio.run(executor.start())
    yield executor
    executor.close()
