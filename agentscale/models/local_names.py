"""What ``local/<name>`` names: a bundled model, a model folder, a folder in the local model cache, or a
hub id (``org/model``, which vLLM downloads where a network allows it).

Decided once, up front, so that ``agentscale validate`` and a graph's load reject a route that names
nothing in a second, instead of a run spending half a minute starting vLLM only to print the server
log's traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentscale.models.bundled import cache_dir, is_converted
from agentscale.models.catalog import BUNDLED

LocalKind = Literal["bundled", "folder", "cached", "hub"]


@dataclass(frozen=True)
class LocalModel:
    """A resolved ``local/`` name: ``path`` is the folder to serve (None for bundled and hub models)."""

    name: str
    kind: LocalKind
    path: Path | None = None


class UnknownLocalModel(ValueError):
    """The name is none of the things ``local/`` can name; the message lists the known routes."""


def cached_folders() -> list[Path]:
    """Model folders in the local cache that are not bundled models (e.g. a user's own conversions)."""
    root = cache_dir() / "models"
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.iterdir()
        if path.name not in BUNDLED
        and not path.name.startswith(".")
        and (is_converted(path) or (path / "config.json").is_file())
    )


def known_routes() -> list[str]:
    return [f"local/{name}" for name in sorted(BUNDLED)] + [f"local/{p.name}" for p in cached_folders()]


def resolve_local(name: str) -> LocalModel:
    """Say what ``local/<name>`` (prefix optional) names, or raise :class:`UnknownLocalModel`."""
    key = name.removeprefix("local/")
    if key in BUNDLED:
        return LocalModel(key, "bundled")
    folder = Path(key).expanduser()
    if key and folder.is_dir():
        return LocalModel(key, "folder", folder.resolve())
    cached = cache_dir() / "models" / key
    if key and "/" not in key and (cached / "config.json").is_file():
        return LocalModel(key, "cached", cached)
    if key.count("/") == 1 and not key.startswith((".", "/", "~")):
        return LocalModel(key, "hub")
    raise UnknownLocalModel(
        f"local/{key} is neither a bundled model, nor a model folder, nor in the local model cache "
        f"({cache_dir() / 'models'}); known local routes: {', '.join(known_routes())}"
    )


def local_route_problem(route: str) -> str | None:
    """Why a ``local/`` route cannot be served, or None when it can (other routes: always None)."""
    if not route.startswith("local/"):
        return None
    try:
        resolve_local(route)
    except UnknownLocalModel as exc:
        return str(exc)
    return None
