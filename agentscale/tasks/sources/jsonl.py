"""A user's own questions from a JSONL file: one JSON object per line.

Fields: ``question`` (string) and ``answer`` (string or number) are required; ``id`` (string or
integer, default ``line-<n>``), ``choices`` (list of strings) and ``metadata`` (object) are optional;
any other field is kept in the item's metadata (e.g. ``entry_point``/``prompt``/``test`` for code
tasks, ``rel_tol`` for numeric ones). Blank lines are skipped. Every problem is reported as a
`TaskError` naming the file and the line.

Without an explicit scorer one is inferred: ``choice`` if items have choices, ``code`` if every
item's ``test`` holds tests, ``numeric`` if every answer is a number, else ``exact``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentscale.tasks.base import Task, TaskItem
from agentscale.tasks.errors import TaskError
from agentscale.tasks.scorers import get_scorer
from agentscale.tasks.scorers.choice import choice_index
from agentscale.tasks.scorers.code_exec import UNCALLED_CHECK, check_is_uncalled, entry_point_of, has_tests, tests_of
from agentscale.tasks.scorers.numeric import is_number, parse_number, readable_tolerance

_KNOWN = ("id", "question", "answer", "choices", "metadata")


def _fail(path: Path, line_no: int, message: str) -> TaskError:
    return TaskError(f"{path}:{line_no}: {message}")


def _json_kind(value: object) -> str:
    """A JSON value's kind in JSON's words: the messages said Python's ("got NoneType", "got dict")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def record_id(path: Path, line_no: int, record: dict[str, Any], default: str) -> str:
    """A line's `id` as text (`default` without one): a non-empty string or an integer, free of
    control characters. `run --input` took null, an object or a repeated id as given ("None",
    "{'k': 1}"), and an id holding escape sequences reset the terminal that printed it."""
    item_id = record.get("id", default)
    if isinstance(item_id, bool) or not isinstance(item_id, str | int) or str(item_id) == "":
        raise _fail(path, line_no, "field 'id' must be a non-empty string or an integer")
    text = str(item_id)
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in text):
        raise _fail(path, line_no, f"field 'id' holds a control character: {text!r}")
    return text


_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Characters that reorder the text printed after them (an id could make a line read otherwise)."""


def unique_id(path: Path, line_no: int, item_id: str, first_line: dict[str, int]) -> None:
    """Refuse an id given before (`first_line`: each id's line, updated here)."""
    if item_id in first_line:
        raise _fail(path, line_no, f"duplicate id {item_id!r} (first on line {first_line[item_id]})")
    first_line[item_id] = line_no


def _item(path: Path, line_no: int, record: Any) -> TaskItem:
    if not isinstance(record, dict):
        raise _fail(path, line_no, f"expected a JSON object, got {_json_kind(record)}")
    # a code item's tests stand in for its answer (MBPP's records have none, only a test_list)
    for field in ("question",) if "test" in record else ("question", "answer"):
        if field not in record:
            raise _fail(path, line_no, f"missing required field {field!r}")
    question, answer = record["question"], record.get("answer", "")
    if not isinstance(question, str) or not question.strip():
        raise _fail(path, line_no, "field 'question' must be a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise _fail(path, line_no, f"field 'answer' must be a string or a number, got {_json_kind(answer)}")
    item_id = record_id(path, line_no, record, f"line-{line_no}")
    choices = record.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices)
    ):
        raise _fail(path, line_no, "field 'choices' must be a non-empty list of strings")
    if choices is not None and len(choices) > 26:  # a choice is named by a letter, A to Z
        raise _fail(path, line_no, f"field 'choices' holds {len(choices)}; at most 26 (letters A-Z) can be named")
    metadata = record.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _fail(path, line_no, "field 'metadata' must be an object")
    extra = {k: v for k, v in record.items() if k not in _KNOWN}
    return TaskItem(
        id=item_id,
        question=with_choices(question, choices),
        reference=str(answer),
        metadata={**metadata, **extra},
        choices=choices,
    )


def with_choices(question: str, choices: list[str] | None) -> str:
    """The question as the model sees it: with its choices listed by letter, unless it lists them
    itself, each after its letter. The model was asked for "the letter of the correct
    choice" of options it was never shown.

    >>> print(with_choices("Capital of France?", ["Berlin", "Paris"]))
    Capital of France?
    <BLANKLINE>
    A. Berlin
    B. Paris
    """
    if not choices or _lists_by_letter(question, choices):
        return question
    listed = "\n".join(f"{chr(ord('A') + index)}. {choice}" for index, choice in enumerate(choices))
    return f"{question.rstrip()}\n\n{listed}"


def _lists_by_letter(question: str, choices: list[str]) -> bool:
    """Whether the question lists every choice after its letter ("B. Paris", "(B) Paris", "B) Paris",
    on a line of its own or not). Every choice's text somewhere in it was taken for a list: choices "0"
    to "3" in a question mentioning 10, 21, 32 were never shown, and the model could not answer.

    >>> _lists_by_letter("Capital?\\nA. Berlin\\n(B) Paris", ["Berlin", "Paris"])
    True
    >>> _lists_by_letter("Capital of Italy? A. Rome B. Oslo", ["Rome", "Oslo"])
    True
    >>> _lists_by_letter("Which of 10, 21, 32?", ["0", "1", "2", "3"])
    False
    >>> _lists_by_letter("A. Parisian B. Berliner", ["Paris", "Berlin"])
    False
    """
    return all(
        re.search(rf"(?<![^\s(]){chr(ord('A') + index)}[.):]\s*{re.escape(choice.strip())}(?!\w)", question)
        for index, choice in enumerate(choices)
    )


MAX_LINE_BYTES = 64 * 1024 * 1024
"""One JSONL line's limit: far above any question (a 20 MB line reads fine)."""


def jsonl_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Each non-blank line's JSON value with its line number; a file that cannot be read (missing, a
    directory), a line that is not UTF-8 or not JSON raises `TaskError` naming the file and line."""
    try:
        handle = path.open("rb")
    except OSError as error:
        raise TaskError(f"{path}: cannot read: {error.strerror or error}") from None
    with handle:
        for line_no, raw in enumerate(iter(lambda: handle.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:  # `run --input /dev/zero` read one endless line until the OOM killer
                raise _fail(path, line_no, f"a line over {MAX_LINE_BYTES // 2**20} MiB: not a JSONL task file")
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise _fail(path, line_no, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise _fail(path, line_no, _invalid_json(line, error)) from None
            except RecursionError:
                raise _fail(path, line_no, "values nested too deeply to read") from None
            except ValueError as error:  # a number of more than 4,300 digits
                raise _fail(path, line_no, f"cannot be read: {error}") from None
            if "\\u" in line:
                _refuse_unpaired_surrogates(path, line_no, record)
            yield line_no, record


def _refuse_unpaired_surrogates(path: Path, line_no: int, record: Any) -> None:
    """An escaped half of a surrogate pair ("\\ud800") is valid JSON but no Unicode text: the eval
    paid for its calls, then failed as a whole when SQLite was given the question."""
    try:
        json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(path, line_no, "an unpaired surrogate escape (\\ud800-\\udfff): not Unicode text") from None


def _invalid_json(line: str, error: json.JSONDecodeError) -> str:
    """What is wrong with a line; one that ends inside its value is likely a JSON document spread over
    lines (a pretty-printed array was "invalid JSON: Expecting value (column 1)" at its `[`)."""
    if error.pos < len(line.rstrip()):
        return f"invalid JSON: {error.msg} (column {error.colno})"
    message = "invalid JSON: the line ends before its value does"
    if line.lstrip().startswith(("[", "{")):
        message += "; a task file holds one JSON object per line (JSONL), not a document spread over lines"
    return message


def read_items(path: Path) -> dict[int, TaskItem]:
    """Parse and validate every line (the items by line number); the first bad line raises with its number."""
    items: dict[int, TaskItem] = {}
    first_line: dict[str, int] = {}
    for line_no, record in jsonl_records(path):
        item = _item(path, line_no, record)
        unique_id(path, line_no, item.id, first_line)
        items[line_no] = item
    if not items:
        raise TaskError(f"{path}: no items (expected one JSON object per line)")
    return items


def _refuse_unscorable(path: Path, items: dict[int, TaskItem], scorer_name: str) -> None:
    """An item its scorer marks wrong whatever the model says: an empty reference (a code item's tests
    may stand in for it), a NaN, a numeric scorer's reference that is no number, a choice reference
    naming none of the item's choices; or one it cannot score at all: a numeric item's `rel_tol`
    that is no finite number ≥ 0 (the eval died at that item with a traceback, and again on resume)."""
    for line_no, item in items.items():
        reference = item.reference.strip()
        if not reference and not (scorer_name == "code" and item.metadata.get("test")):
            raise _fail(path, line_no, "field 'answer' is empty")
        if reference.lower() == "nan" and scorer_name in ("numeric", "math"):
            raise _fail(path, line_no, "field 'answer' must be a finite number, got nan")
        if scorer_name == "numeric" and parse_number(reference) is None:
            message = f"field 'answer' {reference[:60]!r} is not a number, which the numeric scorer compares"
            raise _fail(path, line_no, message + " (text answers: --scorer exact)")
        if (
            scorer_name == "numeric"
            and "rel_tol" in item.metadata
            and readable_tolerance(item.metadata["rel_tol"]) is None
        ):
            raise _fail(path, line_no, f"'rel_tol' must be a finite number >= 0, got {item.metadata['rel_tol']!r}")
        if scorer_name == "code":
            _refuse_untestable(path, line_no, item)
        if scorer_name == "choice" and not item.choices and choice_index(reference, None) is None:
            message = f"field 'answer' {reference[:60]!r} is no letter, and the item has no 'choices' to name"
            raise _fail(path, line_no, message + ": give them (or the letter), or another --scorer")
        if scorer_name == "choice" and item.choices and choice_index(reference, item.choices) is None:
            last = chr(ord("A") + len(item.choices) - 1)
            message = f"field 'answer' {reference!r} names none of its choices (a letter A-{last}, or one's text)"
            raise _fail(path, line_no, message)


def _refuse_untestable(path: Path, line_no: int, item: TaskItem) -> None:
    """A code item whose tests are no program (a `test` of another type) or test nothing: every
    answer failed on "the item has no tests to run", found item by item as the eval went."""
    test = item.metadata.get("test")
    if test is not None and not (
        isinstance(test, str) or (isinstance(test, list) and all(isinstance(line, str) for line in test))
    ):
        raise _fail(path, line_no, f"field 'test' must be a program or a list of lines, got {_json_kind(test)}")
    if not has_tests(tests_of(item)):
        raise _fail(
            path,
            line_no,
            "no tests to run: give a 'test' field (asserts, or a check(candidate) function) or asserts in 'answer'",
        )
    if entry_point_of(item) is None and check_is_uncalled(tests_of(item)):
        raise _fail(path, line_no, UNCALLED_CHECK)  # every answer passed: check() was defined, never run


def infer_scorer(items: list[TaskItem], *, stored: bool = False) -> str:
    """``choice`` / ``code`` / ``numeric`` / ``exact`` from what the items look like (code items,
    those whose `test` field holds tests, were scored by text: a right solution was 0%). Runs store
    the scorer inferred; `stored`: a run stored before they did, inferred without `code`, keeps the
    scorer its items were scored by."""
    if any(item.choices for item in items):
        return "choice"
    if not stored and all("test" in item.metadata and has_tests(tests_of(item)) for item in items):
        return "code"  # a `test` field that tests something: `"test": "heldout-v2"` is another field
    if all(is_number(item.reference) for item in items):
        return "numeric"
    return "exact"


def load_jsonl(path: str | Path, *, scorer: str | None = None, name: str | None = None, stored: bool = False) -> Task:
    """A task from a JSONL file, scored by ``scorer`` (``exact|numeric|choice|math|code``); ``stored``:
    a stored run's file, taken as it was started (without the checks added since)."""
    path = Path(path)
    numbered = read_items(path)
    items = list(numbered.values())
    scorer_name = infer_scorer(items, stored=stored) if scorer is None else scorer  # "" is no scorer's name
    if not stored:
        _refuse_unscorable(path, numbered, scorer_name)
    scorer_fn, answer_format = get_scorer(scorer_name)
    return Task(
        name=name or path.stem,
        description=f"{len(items)} questions from {path}",
        answer_format=answer_format,
        scorer=scorer_fn,
        scorer_name=scorer_name,
        items=tuple(items),
    )
