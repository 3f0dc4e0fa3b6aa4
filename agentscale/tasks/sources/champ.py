"""CHAMP: 270 competition-math problems from the ``champ-dataset`` PyPI package, checked with
math-verify.

CHAMP's reference answers are written for humans ("C(10, 5), or equivalently 252",
"0 is the only possible value", "The limit exists and is equal to 3", "98 values"). The loader keeps
the original as ``reference`` and stores the math a model would actually answer in
``metadata['accepted']`` (["C(10, 5)", "252"], ["0"], ["3"], ["98"]); genuinely verbal answers ("No",
"The sequence does not exist") stay verbal and are matched as normalised text.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from agentscale.tasks.base import Task, TaskItem
from agentscale.tasks.errors import TaskError
from agentscale.tasks.scorers.mathverify import score_math

NAME = "champ"
SIZE = 270
DESCRIPTION = "CHAMP: 270 competition-math problems (champ-dataset), answers checked with math-verify"

_ALTERNATIVES = re.compile(r",?\s+or\s+(?:equivalently|approximately|an equivalent form such as)\s+", re.I)
_REMARK = re.compile(r"\s*\((?:i\.e\.|e\.g\.|[a-z]{2,}\s)[^()]*\)\s*$", re.I)
_PREFIX = re.compile(r"^(?:the limit exists and is equal to|the only possible value for the limit is|at most)\s+", re.I)
_SUFFIX = re.compile(r"\s+is the only possible value$", re.I)
# "98 values", "0 integer-valued zeros", "n times": a count (or a variable) followed only by words.
_COUNT = re.compile(r"([-+]?(?:\d+(?:/\d+)?|[a-z]))(?:\s+[a-z][a-z\-]*)+", re.I)


def accepted_answers(answer: str) -> list[str]:
    """Strip CHAMP's prose around an answer; one entry per stated equivalent form."""
    accepted = []
    for part in _ALTERNATIVES.split(answer.strip()):
        part = _REMARK.sub("", part).strip()
        part = _SUFFIX.sub("", _PREFIX.sub("", part)).strip()
        count = _COUNT.fullmatch(part)
        if count and not part.lower().startswith(("no ", "at ")):
            part = count.group(1)
        if part and part not in accepted:
            accepted.append(part)
    return accepted or [answer]


def _problems() -> dict[str, Any]:
    try:
        path = resources.files("champ_dataset").joinpath("dataset_files", "v0.json")
    except ModuleNotFoundError:
        raise TaskError("task 'champ' needs the 'champ-dataset' package: pip install champ-dataset") from None
    with path.open("r", encoding="utf-8") as handle:
        problems: dict[str, Any] = json.load(handle)["problems"]
    return problems


def load_champ() -> Task:
    """The CHAMP task (problem text without CHAMP's ``@@`` math markers)."""
    items = []
    for identifier, problem in _problems().items():
        answer = problem["_raw_answer"].replace("@@", "")
        items.append(
            TaskItem(
                id=identifier,
                question=problem["_raw_text"].replace("@@", ""),
                reference=answer,
                metadata={"category": problem.get("category", ""), "accepted": accepted_answers(answer)},
            )
        )
    return Task(
        name=NAME,
        description=DESCRIPTION,
        answer_format="text",
        scorer=score_math,
        scorer_name="math",
        items=tuple(items),
    )
