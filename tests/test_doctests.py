"""Every docstring example in the package is run: an example that no test runs can rot unseen, and
several (the scorers' normalisation, a discussion's solution text) are the only check of what they
show."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

import agentscale

_ROOT = Path(agentscale.__file__).parent
_EXAMPLE = re.compile(r"^\s*>>> ", re.MULTILINE)  # a line of its own, not ">>>" quoted in prose
_WITH_EXAMPLES = sorted(
    ".".join(("agentscale", *path.relative_to(_ROOT).with_suffix("").parts)).removesuffix(".__init__")
    for path in _ROOT.rglob("*.py")
    if _EXAMPLE.search(path.read_text(encoding="utf-8"))
)


def test_the_public_api_and_the_runtime_show_examples() -> None:
    assert {"agentscale", "agentscale.runtime.graph", "agentscale.tasks.scorers.numeric"} <= set(_WITH_EXAMPLES)


@pytest.mark.parametrize("name", _WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 0, name
