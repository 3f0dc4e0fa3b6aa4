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

if TYPE_CHECKING:  # for type checkers; at run time `__getattr__` imports each name from `_HOMES`
    from agentscale.errors import AgentScaleError as AgentScaleError
    from agentscale.errors import BudgetExceeded as BudgetExceeded
    from agentscale.errors import ModelCallError as ModelCallError
    from agentscale.errors import QuestionError as QuestionError
    from agentscale.errors import RunBusy as RunBusy
    from agentscale.errors import RunNotFound as RunNotFound
    from agentscale.errors import SpecError as SpecError
    from agentscale.errors import SpecIssue as SpecIssue
    from agentscale.errors import StorageError as StorageError
    from agentscale.evaluate.engine import EvalConfig as EvalConfig
    from agentscale.evaluate.engine import EvalSummary as EvalSummary
    from agentscale.evaluate.engine import Evaluation as Evaluation
    from agentscale.evaluate.engine import ItemResult as ItemResult
    from agentscale.graphs.result import GraphEvent as GraphEvent
    from agentscale.graphs.result import NodeTrace as NodeTrace
    from agentscale.graphs.result import RoundRecord as RoundRecord
    from agentscale.graphs.result import RunResult as RunResult
    from agentscale.graphs.result import Usage as Usage
    from agentscale.graphs.spec import GraphSpec as GraphSpec
    from agentscale.models.gateway import Gateway as Gateway
    from agentscale.models.gateway import GatewaySettings as GatewaySettings
    from agentscale.optimize.runner import Optimization as Optimization
    from agentscale.optimize.runner import OptimizeResult as OptimizeResult
    from agentscale.runtime.batch import BatchResult as BatchResult
    from agentscale.runtime.batch import run_batch as run_batch
    from agentscale.runtime.graph import Graph as Graph
    from agentscale.runtime.graph import load as load
    from agentscale.storage.db import Store as Store

__version__ = "0.1.0"

_HOMES = {
    "AgentScaleError": "agentscale.errors",
    "BudgetExceeded": "agentscale.errors",
    "ModelCallError": "agentscale.errors",
    "QuestionError": "agentscale.errors",
    "RunBusy": "agentscale.errors",
    "RunNotFound": "agentscale.errors",
    "SpecError": "agentscale.errors",
    "SpecIssue": "agentscale.errors",
    "StorageError": "agentscale.errors",
    "EvalConfig": "agentscale.evaluate.engine",
    "EvalSummary": "agentscale.evaluate.engine",
    "Evaluation": "agentscale.evaluate.engine",
    "ItemResult": "agentscale.evaluate.engine",
    "GraphEvent": "agentscale.graphs.result",
    "NodeTrace": "agentscale.graphs.result",
    "RoundRecord": "agentscale.graphs.result",
    "RunResult": "agentscale.graphs.result",
    "Usage": "agentscale.graphs.result",
    "GraphSpec": "agentscale.graphs.spec",
    "Gateway": "agentscale.models.gateway",
    "GatewaySettings": "agentscale.models.gateway",
    "Optimization": "agentscale.optimize.runner",
    "OptimizeResult": "agentscale.optimize.runner",
    "BatchResult": "agentscale.runtime.batch",
    "run_batch": "agentscale.runtime.batch",
    "Graph": "agentscale.runtime.graph",
    "load": "agentscale.runtime.graph",
    "Store": "agentscale.storage.db",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'agentscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
