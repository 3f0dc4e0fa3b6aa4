"""Lazy, quiet access to litellm.

Importing litellm takes seconds and, unless told otherwise, fetches a price map from the network;
CLI commands such as `validate` must not pay for that, so every module goes through `get_litellm()`.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any


@cache
def get_litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True
    litellm.telemetry = False
    return litellm
