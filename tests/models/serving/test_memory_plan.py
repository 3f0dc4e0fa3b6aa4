"""A local server that would not fit is refused up front, with the figures and what to stop; a CPU
default that does not fit falls back to the smaller dtype that does."""

from __future__ import annotations

import re

import pytest

from agentscale.models.catalog import BUNDLED
from agentscale.models.serving.engine import cpu_dtype
from agentscale.models.serving.memory_plan import NotEnoughMemory, room_for, server_memory_gib

GIB = 2**30
QWEN_15B = BUNDLED["qwen2.5-coder-1.5b"]
QWEN_05B = BUNDLED["qwen2.5-coder-0.5b"]


def test_a_server_that_fits_starts_in_the_dtype_asked_for() -> None:
    assert room_for(QWEN_15B, "bfloat16", available_bytes=12 * GIB) == "bfloat16"
    assert room_for(QWEN_15B, None, available_bytes=20 * GIB) == cpu_dtype()


def test_a_server_that_does_not_fit_is_refused_with_the_figures() -> None:
    with pytest.raises(NotEnoughMemory) as info:
        room_for(QWEN_15B, "bfloat16", available_bytes=5 * GIB, running="smollm2-135m (4.0 GiB, pid 7)")
    message = str(info.value)
    assert "local/qwen2.5-coder-1.5b needs about 9.4 GiB in bfloat16" in message
    assert "only 5.0 GiB is available" in message
    assert "smollm2-135m (4.0 GiB, pid 7)" in message and "agentscale models list" in message


def test_each_dtype_has_its_measured_figure() -> None:
    for model in BUNDLED.values():
        assert server_memory_gib(model, "bfloat16") == model.server_memory_gib
        assert server_memory_gib(model, "float32") == model.server_memory_gib_float32 > model.server_memory_gib


def test_a_float32_default_that_does_not_fit_starts_in_bfloat16_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentscale.models.serving.memory_plan.cpu_dtype", lambda: "float32")  # an AVX2-only CPU
    between = int((QWEN_05B.server_memory_gib_float32 + QWEN_05B.server_memory_gib) / 2 * GIB)
    said: list[str] = []
    assert room_for(QWEN_05B, None, available_bytes=between, on_status=said.append) == "bfloat16"
    assert said and "serving local/qwen2.5-coder-0.5b in bfloat16: float32" in said[0]
    # a dtype the user chose is kept, or refused: never changed behind their back
    with pytest.raises(NotEnoughMemory, match="in float32: weights"):
        room_for(QWEN_05B, "float32", available_bytes=between)
    assert room_for(QWEN_05B, None, available_bytes=20 * GIB) == "float32"


def test_three_local_servers_fit_in_this_machines_24_gib() -> None:
    """The plan documented in docs/models.md: all three bundled models served at once, the last one
    in bfloat16 if float32 does not fit."""
    small, medium = BUNDLED["smollm2-135m"], QWEN_05B
    assert small.server_memory_gib_float32 + medium.server_memory_gib_float32 + QWEN_15B.server_memory_gib < 23.5
    assert sum(model.server_memory_gib for model in BUNDLED.values()) < 22.0


def test_replicas_need_room_for_each_server() -> None:
    available = int(1.5 * QWEN_05B.server_memory_gib * GIB)
    assert room_for(QWEN_05B, "bfloat16", available_bytes=available) == "bfloat16"
    with pytest.raises(
        NotEnoughMemory, match=re.escape("starting 2 servers of local/qwen2.5-coder-0.5b needs about 11.4 GiB")
    ):
        room_for(QWEN_05B, "bfloat16", available_bytes=available, servers=2)


def test_when_neither_dtype_fits_both_figures_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentscale.models.serving.memory_plan.cpu_dtype", lambda: "float32")
    with pytest.raises(NotEnoughMemory) as info:
        room_for(QWEN_05B, None, available_bytes=3 * GIB)
    assert "needs about 8.0 GiB in float32 (5.7 GiB in bfloat16)" in str(info.value)


def test_the_kv_cache_the_server_will_take_is_the_one_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message told users to lower VLLM_CPU_KVCACHE_SPACE and the check ignored it: 1 GiB still
    counted the catalog's 2 (9.4 GiB needed), and a raised one was not counted at all."""
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    assert room_for(QWEN_15B, "bfloat16", available_bytes=int(8.9 * GIB)) == "bfloat16"  # 8.4 GiB needed now
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1.5")  # vLLM reads a whole number: the catalog's counts
    with pytest.raises(NotEnoughMemory, match=r"needs about 9\.4 GiB"):
        room_for(QWEN_15B, "bfloat16", available_bytes=int(8.9 * GIB))
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "8")
    with pytest.raises(NotEnoughMemory, match=r"needs about 15\.4 GiB in bfloat16: weights, a 8 GiB KV cache"):
        room_for(QWEN_15B, "bfloat16", available_bytes=12 * GIB)
