"""Plug-ins load on first need, and nothing heavy loads before a command needs it.

Each check runs in a fresh interpreter: in the test process every module is long imported.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import agentscale


def _fresh(code: str) -> str:
    """stdout of `code` run by a new interpreter (the test fails with its stderr if it fails)."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("name", agentscale.__all__)
def test_every_public_name_resolves_to_its_home(name: str) -> None:
    value = getattr(agentscale, name)
    assert getattr(sys.modules[value.__module__], name) is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Grpah'"):
        agentscale.Grpah  # noqa: B018


def test_the_cli_starts_without_langgraph_sqlalchemy_or_plugins() -> None:
    loaded = _fresh(
        """
        import sys
        import agentscale.cli.commands
        heavy = ("langgraph", "sqlalchemy", "litellm", "numpy", "agentscale.sim", "agentscale.memory")
        print(sorted({m.split(".")[0] if not m.startswith("agentscale") else ".".join(m.split(".")[:2])
                      for m in sys.modules if m.startswith(heavy)}))
        """
    )
    assert loaded == "[]"


def test_sim_routes_are_known_at_the_first_model_lookup() -> None:
    facts = _fresh(
        """
        from agentscale.models.registry import lookup
        info = lookup("sim/llama-70b")
        print(info.params_b, "(agentscale simulator" in info.description)
        """
    )
    assert facts == "70.0 True"


def test_the_sim_endpoint_resolves_without_importing_the_simulator() -> None:
    endpoint = _fresh(
        """
        import asyncio
        from agentscale.models.endpoints import resolve_endpoint
        from agentscale.models.registry import ResolvedModel
        print(asyncio.run(resolve_endpoint(ResolvedModel("m", "sim/llama-8b"))).litellm_model)
        """
    )
    assert endpoint.endswith("/llama-8b")


def test_a_graph_memory_is_served_by_the_handbook_without_importing_it() -> None:
    kind = _fresh(
        """
        from agentscale.graphs.spec import Memory
        from agentscale.runtime.plugins import graph_memory
        print(type(graph_memory(None, Memory(handbook="h"))).__module__)
        """
    )
    assert kind == "agentscale.memory.inject"


def test_what_the_user_registers_before_the_plugins_load_stays() -> None:
    """The facade used to import the plug-ins first, so a user's registration came later and won;
    loaded on first need, they must not replace it."""
    kept = _fresh(
        """
        from agentscale.graphs.spec import Memory
        from agentscale.models.registry import ModelInfo, lookup, register
        from agentscale.runtime.plugins import graph_memory, register_memory

        class Mine:
            def __init__(self, store, memory):
                pass

        register_memory(Mine)
        register(ModelInfo("sim/llama-1b", params_b=1.0, description="mine"))
        print(lookup("sim/llama-1b").description, type(graph_memory(None, Memory(handbook="h"))).__name__)
        """
    )
    assert kept == "mine Mine"


def test_an_install_older_than_the_plugin_group_is_refused_by_name() -> None:
    """Metadata without the group (an editable install not redone after an update) left `sim/`
    routes silently unknown: "LLM Provider NOT provided" at the first call."""
    message = _fresh(
        """
        import importlib.metadata

        entry_points = importlib.metadata.entry_points
        importlib.metadata.entry_points = lambda **kw: (
            () if kw.get("group") == "agentscale.plugins" else entry_points(**kw)
        )
        from agentscale.errors import AgentScaleError
        from agentscale.models.registry import lookup

        try:
            lookup("sim/llama-1b")
        except AgentScaleError as error:
            print(error)
        """
    )
    assert "names no plug-ins" in message and "reinstall it (`make install`, or `pip install -e .`)" in message
