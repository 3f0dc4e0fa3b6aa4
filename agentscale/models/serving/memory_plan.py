"""Will one more local server fit in memory? Checked before a CPU server starts, not after the kernel
kills one.

A vLLM-CPU server holds far more than its weights: its API process and engine core (≈2.2 GiB
together, whatever the model), the worker's copy of the weights, the KV cache allocated up front and
the runtime around them. The catalog records what each bundled model's server group was measured to
hold in bfloat16 and in float32 (`BundledModel.server_memory_gib`, `server_memory_gib_float32`).
CPU starts are serialised (see `server`), so the available memory read here already counts every
server started before; each start picks its dtype alone, so which servers fit together can depend
on the order they start in (smallest first leaves the most room).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from agentscale.errors import ServingError
from agentscale.models.catalog import BundledModel
from agentscale.models.serving.engine import KV_CACHE_ENV, available_memory_bytes, cpu_dtype

_GIB = 2**30
_FLOAT32 = ("float32", "float")  # vLLM's names of float32


class NotEnoughMemory(ServingError):
    """Starting the server would take more memory than the machine has available."""


def server_memory_gib(model: BundledModel, dtype: str) -> float:
    """What ``model``'s server was measured to hold at ``dtype`` (the catalog's two figures)."""
    return model.server_memory_gib_float32 if dtype in _FLOAT32 else model.server_memory_gib


def kv_cache_gib(model: BundledModel) -> float:
    """The KV cache a CPU server of ``model`` will allocate: VLLM_CPU_KVCACHE_SPACE when set (the
    engine passes it on as given), else the catalog's, which its measured figures include (the check
    ignored the variable its own message tells users to lower)."""
    value = os.environ.get(KV_CACHE_ENV, "").strip()
    return float(value) if value.isdigit() and int(value) > 0 else model.kv_cache_space_gib  # vLLM reads int()


def room_for(
    model: BundledModel,
    dtype: str | None,
    available_bytes: int | None = None,
    running: str = "",
    on_status: Callable[[str], None] | None = None,
    servers: int = 1,
) -> str:
    """The dtype to serve ``model`` in, checked against the memory available now for ``servers``
    servers of it (replicas), a container's memory limit included (`available_memory_bytes`);
    raises :class:`NotEnoughMemory` when they would not fit. ``dtype`` is the user's choice, kept as
    given; ``None`` takes the CPU's (`cpu_dtype`), and when that is float32 and only bfloat16 fits,
    the server starts in bfloat16 and says so: slower on such a CPU, but running, where the measured
    float32 figures would have refused the third bundled model on a 24 GiB machine. ``running``
    lists servers already up, for the message. Unknown free memory (no /proc) passes.
    """
    available = available_memory_bytes() if available_bytes is None else available_bytes
    chosen = dtype or cpu_dtype()
    kv_change = kv_cache_gib(model) - model.kv_cache_space_gib
    needed = servers * (server_memory_gib(model, chosen) + kv_change)
    if available is None or available >= needed * _GIB:
        return chosen
    fallback = servers * (model.server_memory_gib + kv_change)
    if dtype is None and chosen in _FLOAT32 and available >= fallback * _GIB:
        if on_status is not None:
            on_status(
                f"serving {model.route} in bfloat16: float32, faster on this CPU, needs about "
                f"{needed:.1f} GiB and {available / _GIB:.1f} GiB is available"
            )
        return "bfloat16"
    what = f"{servers} servers of {model.route}" if servers > 1 else model.route
    also = f" ({fallback:.1f} GiB in bfloat16)" if dtype is None and chosen in _FLOAT32 else ""
    others = f" Servers already running: {running}." if running else ""
    raise NotEnoughMemory(
        f"starting {what} needs about {needed:.1f} GiB in {chosen}{also}: weights, a "
        f"{kv_cache_gib(model):g} GiB KV cache and the engine's processes; only "
        f"{available / _GIB:.1f} GiB is available.{others} Stop a server you no longer need "
        "(`agentscale models list` shows what each holds), or lower its KV cache with VLLM_CPU_KVCACHE_SPACE."
    )
