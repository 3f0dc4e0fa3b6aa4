"""A local server that would not fit is refused up front, with the figures and what to stop."""

from __future__ import annotations

import pytest

from agentscale.models.catalog import BUNDLED
from agentscale.models.serving.memory_plan import NotEnoughMemory, check_room

GIB = 2**30


def test_a_server_that_fits_starts() -> None:
    check_room(BUNDLED["qwen2.5-coder-1.5b"], available_bytes=12 * GIB)


def test_a_server_that_does_not_fit_is_refused_with_the_figures() -> None:
    with pytest.raises(NotEnoughMemory) as info:
        check_room(BUNDLED["qwen2.5-coder-1.5b"], available_bytes=5 * GIB, running="smollm2-135m (4.0 GiB, pid 7)")
    message = str(info.value)
    assert "local/qwen2.5-coder-1.5b needs about 9.4 GiB" in message and "only 5.0 GiB is available" in message
    assert "smollm2-135m (4.0 GiB, pid 7)" in message and "agentscale models list" in message


def test_three_local_servers_fit_in_this_machines_24_gib() -> None:
    """The plan documented in docs/models.md: all three bundled models served at once."""
    total = sum(model.server_memory_gib for model in BUNDLED.values())
    assert total < 22.0
