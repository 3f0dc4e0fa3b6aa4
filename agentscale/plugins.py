"""Plug-ins: packages above a layer that serve it, imported on first need.

The simulated population serves `sim/` routes in the models layer (model facts, endpoints) and the
behavior handbook serves graphs' `memory:` in the runtime; both sit above the layer they serve, so
they register themselves when imported instead of being imported by it. They are named as entry
points (group `agentscale.plugins` in pyproject.toml) and imported by :func:`load_plugins`, which
the layers call when they first need what a plug-in registers (a model's facts, a route's endpoint,
a graph's memory). Why not import them in the package facade: they pull in numpy, SQLAlchemy and
the handbook (≈0.6 s), and with LangGraph that made every command, `agentscale --help` included,
start in 2.4 s.

A plug-in registers with `replace=False`: what the user registered before it loaded (a memory of
their own, a model's facts) stays, as it did when the facade imported the plug-ins first.
"""

from __future__ import annotations

import threading
from importlib import metadata

from agentscale.errors import AgentScaleError

ENTRY_POINT_GROUP = "agentscale.plugins"

_lock = threading.RLock()  # reentrant: a plug-in's own import may look up a model (and land here)
_loading = False  # this thread (holding the lock) is importing the plug-ins
_loaded = False  # every plug-in is imported: other threads need not wait


def load_plugins() -> None:
    """Import every registered plug-in module, once per process (later calls return at once); an
    install whose metadata predates the group (an editable install not redone after an update, a
    source tree never installed) is refused by name rather than left without `sim/` routes."""
    global _loading, _loaded
    if _loaded:
        return
    with _lock:
        if _loaded or _loading:
            return
        _loading = True
        try:
            entries = metadata.entry_points(group=ENTRY_POINT_GROUP)
            if not entries:
                raise AgentScaleError(
                    f"agentscale's installed metadata names no plug-ins (entry-point group {ENTRY_POINT_GROUP!r}): "
                    "the install is older than this source tree; reinstall it (`make install`, or `pip install -e .`)"
                )
            for entry in entries:
                try:
                    entry.load()
                except ImportError as error:
                    raise AgentScaleError(f"plug-in {entry.name!r} ({entry.value}) failed to load: {error}") from error
            _loaded = True
        finally:
            _loading = False
