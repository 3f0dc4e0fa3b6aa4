"""Any reasoning-gym generator as a task: ``rg:<name>`` (e.g. ``rg:basic_arithmetic``).

Items are generated from a seed, so ``rg:chain_sum`` with ``size=200, seed=0`` is the same 200 questions
on every machine, each once (`_distinct_entries`); scoring uses the generator's own ``score_answer``
(full credit = correct), except where the reference is a number: one number is compared by value,
several are wrong (gsm_symbolic's own scorer dropped a leading minus and read "1,000" as 1). A few
generators (``boxnet``, ``rush_hour``...) verify answers instead of comparing to one reference; their
items have an empty ``reference``.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, get_type_hints

from agentscale.tasks.base import AnswerFormat, Score, Task, TaskInfo, TaskItem
from agentscale.tasks.errors import TaskError, TaskOptionError, check_generated_size
from agentscale.tasks.scorers.numeric import is_number, parse_number, several_numbers

PREFIX = "rg"
DEFAULT_SIZE = 200
DEFAULT_SEED = 0
_MOST_DRAWS_PER_ITEM = 10  # a generator repeating its questions draws on up to ten times the size


def _registry() -> dict[str, Any]:
    try:
        from reasoning_gym.factory import DATASETS
    except ModuleNotFoundError:
        raise TaskError("rg:<name> tasks need the 'reasoning-gym' package: pip install reasoning-gym") from None
    return dict(DATASETS)


def dataset_names() -> list[str]:
    """Every generator reasoning-gym registers."""
    return sorted(_registry())


def _description(name: str) -> str:
    dataset_cls, _ = _registry()[name]
    doc = (dataset_cls.__doc__ or "").strip().splitlines()
    return f"reasoning-gym {name}" + (f": {doc[0].rstrip('.')}" if doc else "")


def _json_safe(value: Any) -> Any:
    """Metadata as plain JSON (some generators keep sympy/fraction objects in it)."""
    return json.loads(json.dumps(value, default=str))


def _config_fields(config_class: type) -> list[str]:
    """The options a generator's config takes (its seed and size are the task's own)."""
    return [f for f in getattr(config_class, "__dataclass_fields__", {}) if f not in ("seed", "size")]


def _wrong_options(config_class: type, fields: dict[str, Any]) -> list[str]:
    """Options the generator's config does not have (its TypeError named `ChainSumConfig.__init__()`,
    with no "did you mean"), or whose value its field cannot take, checked here: the generator's own
    check failed inside a comparison ("'>=' not supported between instances of 'str' and 'int'" for
    `max_digits=abc`) or not at all (`allow_negation=maybe` was taken as true)."""
    known = _config_fields(config_class)
    try:
        hints = get_type_hints(config_class)
    except Exception:  # an annotation that does not resolve: leave the values to the generator
        hints = {}
    wrong = []
    for key, value in fields.items():
        if known and key not in known:  # the generator's own TypeError named its __init__
            near = difflib.get_close_matches(key, known, n=1)
            wrong.append(f"unknown option {key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
            continue
        hint = hints.get(key)
        if hint is bool and not isinstance(value, bool):
            wrong.append(f"{key} must be true or false, got {value!r}")
        elif hint is int and (isinstance(value, bool) or not isinstance(value, int)):
            wrong.append(f"{key} must be an integer, got {value!r}")
        elif hint is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            wrong.append(f"{key} must be a number, got {value!r}")
    return wrong


def _distinct_entries(make: Any, size: int) -> tuple[Any, list[tuple[int, dict[str, Any]]]]:
    """The first `size` distinct questions a generator draws, each with its draw's index (its item
    id, so that a question keeps its id whichever others are dropped), and the dataset that drew them.
    A generator with few possible questions repeats them: `chain_sum` of two one-digit terms drew 131
    distinct ones in 200, and a 40-item test split held 6 questions twice and one of the train
    split's, answered from the cache each time and counted as independent items (the demo walk).
    Draws go on, doubling, up to ten times `size`; a generator with fewer questions than `size`
    gives those it has."""
    draws = size
    while True:
        dataset = make(draws)
        entries: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        for index in range(draws):
            entry = dataset[index]
            if str(entry["question"]) not in seen:
                seen.add(str(entry["question"]))
                entries.append((index, entry))
                if len(entries) == size:
                    return dataset, entries
        if draws >= size * _MOST_DRAWS_PER_ITEM:
            return dataset, entries
        draws = min(draws * 2, size * _MOST_DRAWS_PER_ITEM)


def load_reasoning_gym(
    name: str,
    *,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    config: dict[str, Any] | None = None,
    **config_fields: Any,
) -> Task:
    """``size`` items of generator ``name`` generated from ``seed``; other keyword options go to its
    config (e.g. ``min_terms=3`` for ``chain_sum``). ``seed`` picks the questions; a task's
    ``split``/``sample`` seed then picks among them."""
    registry = _registry()
    if name not in registry:
        raise TaskError(f"unknown reasoning-gym task 'rg:{name}'; valid names: {', '.join(sorted(registry))}")
    check_generated_size(f"rg:{name}", size)
    if isinstance(seed, bool) or not isinstance(seed, int):  # None drew new questions under the same ids
        raise TaskOptionError(f"task 'rg:{name}': seed must be an integer, got {seed!r}")
    if config is not None and not isinstance(config, dict):
        raise TaskOptionError(f"task 'rg:{name}': config must be a mapping of option names to values, got {config!r}")
    from reasoning_gym import create_dataset

    fields = {**(config or {}), **config_fields}
    wrong = _wrong_options(registry[name][1], fields)
    valid = ", ".join(_config_fields(registry[name][1]))
    if wrong:
        raise TaskOptionError(f"task 'rg:{name}': {'; '.join(wrong)}; config fields: {valid}")
    try:
        dataset, entries = _distinct_entries(lambda draws: create_dataset(name, **fields, seed=seed, size=draws), size)
    except TypeError as error:
        raise TaskOptionError(f"task 'rg:{name}': bad option ({error}); config fields: {valid}") from None
    except (ValueError, AssertionError) as error:
        raise TaskOptionError(f"task 'rg:{name}': invalid configuration: {error}") from None

    items: list[TaskItem] = []
    raw: dict[str, dict[str, Any]] = {}
    for index, entry in entries:
        item_id = f"rg:{name}:{seed}:{index}"
        answer = entry.get("answer")
        items.append(
            TaskItem(
                id=item_id,
                question=str(entry["question"]),
                reference="" if answer is None else str(answer),
                metadata=_json_safe(entry.get("metadata", {})),
            )
        )
        raw[item_id] = entry

    def score_rg(answer: str | None, item: TaskItem) -> Score:
        if answer is None or not answer.strip():
            return Score(False, "no answer")
        if is_number(item.reference) and several_numbers(answer):  # gsm_symbolic's scorer took the first
            return Score(False, f"several numbers offered as one answer: {answer[:80]!r}")
        reference, readings = parse_number(item.reference), parse_number(answer)
        if is_number(item.reference) and reference is not None and readings is not None:
            # one number against one, by value: gsm_symbolic's scorer reads `\b-?\d+`, which drops a
            # leading minus ("-1" was right against 1, and "-5" wrong against -5) and stops at a comma
            right = reference[0] in readings
            return Score(right, "equal to the reference" if right else "another number than the reference")
        entry = raw.get(item.id)
        if entry is None or entry["question"] != item.question:
            # An item rebuilt elsewhere (e.g. from storage): score from its own fields.
            entry = {"question": item.question, "answer": item.reference or None, "metadata": item.metadata}
        try:
            value = float(dataset.score_answer(answer, entry))
        except Exception as error:  # a generator's scorer choking on odd input is a wrong answer
            return Score(False, f"reasoning-gym scorer error: {type(error).__name__}: {error}"[:300])
        return Score(value >= 1.0 - 1e-9, f"reasoning-gym score {value:.3g}")

    references = [item.reference for item in items]
    answer_format: AnswerFormat = "number" if all(r and is_number(r) for r in references) else "text"
    return Task(
        name=f"rg:{name}",
        description=_description(name),
        answer_format=answer_format,
        scorer=score_rg,
        scorer_name=f"rg:{name}",
        items=tuple(items),
    )


def infos() -> list[TaskInfo]:
    """One row per generator (sizes are the default ``size``; the format is decided when generated)."""
    return [
        TaskInfo(f"rg:{name}", DEFAULT_SIZE, "reasoning-gym", "number|text", _description(name))
        for name in dataset_names()
    ]
