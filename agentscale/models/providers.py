"""Does litellm know a route's provider? Checked when a file is loaded, so that a misspelt provider
(`opnai/gpt-4o-mini`) is an error at its line in `validate` instead of a run whose every call fails
with litellm's "LLM Provider NOT provided".

Importing litellm takes seconds, which `validate` must not pay for the usual routes, so the provider
names litellm ships (its `LlmProviders` enum and its JSON-configured OpenAI-compatible providers) are
read from its package files without importing it. Only a prefix missing there is put to litellm
itself (`get_llm_provider`), whose answer decides: the files are a fast way to say yes, never a
reason to say no.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import json
import re
from functools import cache
from pathlib import Path

from agentscale.models.litellm_loader import get_litellm

_ENUM_MEMBER = re.compile(r'^\s+[A-Z0-9_]+ = "([^"]+)"', re.MULTILINE)


def provider_problem(route: str, api_base: str | None = None) -> str | None:
    """What is wrong with the provider of ``route`` (``provider/model``) for litellm, or None."""
    provider, _, model = route.partition("/")
    if provider and not model.strip():  # `openai/` passed validate, then every call failed to connect
        return f"route {route!r} names no model after its provider ({provider}/<model>)"
    listed = _listed_providers()
    if provider in listed or _litellm_resolves(route, api_base):
        return None
    near = difflib.get_close_matches(provider, sorted(listed), n=1)
    hint = f"; did you mean {near[0]}/{route.split('/', 1)[1]}?" if near else ""
    return (
        f"route {route!r}: litellm knows no provider {provider!r}{hint} "
        "(providers: https://docs.litellm.ai/docs/providers)"
    )


def _litellm_resolves(route: str, api_base: str | None) -> bool:
    """litellm's own judgement of the route (imports litellm)."""
    try:
        get_litellm().get_llm_provider(model=route, api_base=api_base)
    except Exception:  # litellm raises its BadRequestError, among others, for an unknown provider
        return False
    return True


@cache
def _listed_providers() -> frozenset[str]:
    """The provider names in litellm's package files (empty if they moved: litellm then decides)."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    root = Path(next(iter(spec.submodule_search_locations)))
    names: set[str] = set()
    with contextlib.suppress(OSError, ValueError):
        source = (root / "types" / "utils.py").read_text()
        start = source.index("class LlmProviders(")
        end = source.find("\nclass ", start + 1)
        names.update(_ENUM_MEMBER.findall(source[start : end if end > 0 else None]))
    with contextlib.suppress(OSError, ValueError):
        names.update(json.loads((root / "llms" / "openai_like" / "providers.json").read_text()))
    return frozenset(names)
