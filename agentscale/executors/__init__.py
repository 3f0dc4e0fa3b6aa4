"""Where evaluation items run: in this process (`local`, the default) or on a Ray cluster (`ray`).

The `ray` executor needs the optional extra `agentscale[ray]`; it is imported only when chosen.
"""

from agentscale.executors.base import Executor, create_executor
from agentscale.executors.config import EXECUTOR_KINDS, ExecutorConfig, ExecutorKind
from agentscale.executors.local import LocalExecutor

__all__ = ["EXECUTOR_KINDS", "Executor", "ExecutorConfig", "ExecutorKind", "LocalExecutor", "create_executor"]
