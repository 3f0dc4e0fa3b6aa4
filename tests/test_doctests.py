"""Docstring examples of the public API are run."""

from __future__ import annotations

import doctest

import agentscale
from agentscale.runtime import graph


def test_public_docstrings() -> None:
    for module in (agentscale, graph):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failures == 0 and tried > 0, module.__name__
