"""agentscale: find and run the best collaboration graph of LLM calls under a compute budget.

>>> import agentscale
>>> callable(agentscale.load)
True

The public names below are imported on first use (PEP 562): `import agentscale` alone, and every
command's start, would otherwise load LangGraph and SQLAlchemy (≈1.4 s). Plug-ins (the simulated
`sim/` routes, the handbook behind graphs' `memory:`) load when first needed: `agentscale.plugins`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentscale.errors import (
        AgentScaleError,
        BudgetExceeded,
        ModelCallError,
        RunNotFound,
        SpecError,
        SpecIssue,
    )
    from agentscale.graphs.result import GraphEvent, NodeTrace, RunResult, Usage
    from agentscale.graphs.spec import GraphSpec
    from agentscale.models.gateway import Gateway, GatewaySettings
    from agentscale.runtime.graph import Graph, load
    from agentscale.storage.db import Store

__version__ = "0.1.0"

_HOMES = {
    "AgentScaleError": "agentscale.errors",
    "BudgetExceeded": "agentscale.errors",
    "ModelCallError": "agentscale.errors",
    "RunNotFound": "agentscale.errors",
    "SpecError": "agentscale.errors",
    "SpecIssue": "agentscale.errors",
    "GraphEvent": "agentscale.graphs.result",
    "NodeTrace": "agentscale.graphs.result",
    "RunResult": "agentscale.graphs.result",
    "Usage": "agentscale.graphs.result",
    "GraphSpec": "agentscale.graphs.spec",
    "Gateway": "agentscale.models.gateway",
    "GatewaySettings": "agentscale.models.gateway",
    "Graph": "agentscale.runtime.graph",
    "load": "agentscale.runtime.graph",
    "Store": "agentscale.storage.db",
}

__all__ = [
    "AgentScaleError",
    "BudgetExceeded",
    "Gateway",
    "GatewaySettings",
    "Graph",
    "GraphEvent",
    "GraphSpec",
    "ModelCallError",
    "NodeTrace",
    "RunNotFound",
    "RunResult",
    "SpecError",
    "SpecIssue",
    "Store",
    "Usage",
    "load",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agentscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
