"""Whether a Hugging Face hub id can be served here, asked before vLLM starts.

vLLM takes any `org/name` as a hub id, so `agentscale serve openai/gpt-4o` (a litellm route) or a
misspelt id started a server that, on a machine without the hub, failed after ≈ 20 s with a
100-line traceback from transformers. The id cannot be refused by its looks (`openai/gpt-oss-20b`
is a real hub id): the cache and the hub are asked instead.
"""

from __future__ import annotations

import os

_CHECK_TIMEOUT_S = 10.0  # the hub's answer; an unreachable one fails at once (no DNS, refused)


def hub_id_problem(repo_id: str) -> str | None:
    """What stops vLLM from loading `repo_id` here (None: it is in the local Hugging Face cache, the
    hub has it, or the check cannot be made). Why: see the module docstring."""
    try:
        from huggingface_hub import model_info, try_to_load_from_cache
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
    except ImportError:  # no local engine installed: starting it says so
        return None
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    what = f"{repo_id!r} is not local/<name>, a model folder, or a model in the Hugging Face cache"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return f"{what}, and HF_HUB_OFFLINE is set: give a bundled model (agentscale models list) or a folder"
    try:
        model_info(repo_id, timeout=_CHECK_TIMEOUT_S)
    except GatedRepoError:  # there; vLLM needs the user's token (HF_TOKEN), which is theirs to give
        return None
    except RepositoryNotFoundError:
        return f"{what}, and the hub has no such model (a litellm route is used in a graph, not served)"
    except Exception as exc:  # the hub unreachable: vLLM could not download it either
        return f"{what}, and the hub cannot be reached ({type(exc).__name__}: {exc})"
    return None
