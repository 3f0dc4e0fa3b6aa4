"""Will one more local server fit in memory? Checked before a CPU server starts, not after the kernel
kills one.

A vLLM-CPU server holds far more than its weights: its API process and engine core (≈2.2 GiB
together, whatever the model), the worker's copy of the weights, the KV cache allocated up front and
the runtime around them. The catalog records what each bundled model's server group was measured to
hold (`BundledModel.server_memory_gib`). CPU starts are serialised (see `server`), so the
available memory read here already counts every server started before.
"""

from __future__ import annotations

from agentscale.errors import ServingError
from agentscale.models.catalog import BundledModel
from agentscale.models.serving.engine import read_mem_available_bytes

_GIB = 2**30


class NotEnoughMemory(ServingError):
    """Starting the server would take more memory than the machine has available."""


def check_room(model: BundledModel, available_bytes: int | None = None, running: str = "") -> None:
    """Raise :class:`NotEnoughMemory` when ``model``'s server would not fit in what is available.

    ``running`` lists servers already up, for the message. Unknown free memory (no /proc) passes.
    """
    available = read_mem_available_bytes() if available_bytes is None else available_bytes
    if available is None or available >= model.server_memory_gib * _GIB:
        return
    others = f" Servers already running: {running}." if running else ""
    raise NotEnoughMemory(
        f"starting {model.route} needs about {model.server_memory_gib:.1f} GiB (its weights, a "
        f"{model.kv_cache_space_gib} GiB KV cache and the engine's processes) but only "
        f"{available / _GIB:.1f} GiB is available.{others} Stop a server you no longer need "
        "(`agentscale models list` shows what each holds), or lower its KV cache with VLLM_CPU_KVCACHE_SPACE."
    )
