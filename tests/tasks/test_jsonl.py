"""User JSONL tasks: loading, scorer inference, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentscale.tasks import TaskError, load_task
from agentscale.tasks.sources.jsonl import jsonl_records, load_jsonl


def _write(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(*records: dict[str, object]) -> list[str]:
    return [json.dumps(r) for r in records]


def test_loads_items_with_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _rows(
            {"question": "2+2?", "answer": 4},
            {"id": "q2", "question": "3*3?", "answer": "9", "metadata": {"topic": "x"}, "source": "book"},
        ),
    )
    task = load_task(str(path))
    assert task.name == "data" and task.size == 2
    assert [i.id for i in task.items] == ["line-1", "q2"]
    assert task.items[0].reference == "4"
    assert task.items[1].metadata == {"topic": "x", "source": "book"}
    assert task.scorer_name == "numeric" and task.answer_format == "number"
    assert task.score("4.0", task.items[0]).correct and not task.score("5", task.items[0]).correct


def test_a_file_mixing_numbers_and_text_is_scored_by_text(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _rows({"question": "2+2?", "answer": 4}, {"question": "Capital of France?", "answer": "Paris"})
    )
    task = load_task(str(path))
    assert task.scorer_name == "exact" and task.score("Paris", task.items[1]).correct


def test_a_file_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Notepad and Excel save UTF-8 with a BOM; line 1 was "invalid JSON"."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"question": "2+2?", "answer": 4}).encode() + b"\n")
    assert [(i.id, i.reference) for i in load_task(str(path)).items] == [("line-1", "4")]


def test_a_top_level_field_wins_over_the_same_key_in_metadata(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _rows({"question": "a?", "answer": "b", "metadata": {"source": "old", "k": 1}, "source": "new"})
    )
    assert load_task(str(path)).items[0].metadata == {"source": "new", "k": 1}


def test_blank_lines_are_skipped_and_ids_keep_line_numbers(tmp_path: Path) -> None:
    path = _write(tmp_path, ["", json.dumps({"question": "a?", "answer": "b"}), "   "])
    task = load_jsonl(path)
    assert [i.id for i in task.items] == ["line-2"]
    assert task.scorer_name == "exact"


def test_choices_infer_the_choice_scorer(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows({"question": "Capital of France?", "answer": "B", "choices": ["Rome", "Paris"]}))
    task = load_task(str(path))
    assert task.scorer_name == "choice" and task.answer_format == "choice"
    assert task.score("Paris", task.items[0]).correct and not task.score("A", task.items[0]).correct


@pytest.mark.parametrize(
    ("scorer", "answer_format", "right", "wrong"),
    [("exact", "text", "Forty Two", "42"), ("math", "text", "\\frac{84}{2}", "41"), ("numeric", "number", "42", "41")],
)
def test_explicit_scorer(tmp_path: Path, scorer: str, answer_format: str, right: str, wrong: str) -> None:
    reference = "forty two" if scorer == "exact" else "42"
    path = _write(tmp_path, _rows({"question": "?", "answer": reference}))
    task = load_task(str(path), scorer=scorer)
    assert (task.scorer_name, task.answer_format) == (scorer, answer_format)
    assert task.score(right, task.items[0]).correct
    assert not task.score(wrong, task.items[0]).correct


def test_code_scorer_runs_the_answer_against_the_tests(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _rows(
            {
                "id": "add",
                "question": "Write add(a, b).",
                "answer": "def check(f):\n    assert f(2, 3) == 5\n",
                "entry_point": "add",
            }
        ),
    )
    task = load_task(str(path), scorer="code")
    item = task.items[0]
    assert task.answer_format == "code"
    assert task.score("def add(a, b):\n    return a + b\n", item).correct
    assert not task.score("def add(a, b):\n    return a * b\n", item).correct


@pytest.mark.parametrize(
    ("lines", "line_no", "message"),
    [
        (['{"question": "a", "answer": "b"}', "{not json", '{"question": "c", "answer": "d"}'], 2, "invalid JSON"),
        (['{"question": "a", "answer": "b"}', '{"answer": "b"}'], 2, "missing required field 'question'"),
        (['{"question": "a"}'], 1, "missing required field 'answer'"),
        (['{"question": 5, "answer": "b"}'], 1, "field 'question' must be a non-empty string"),
        (['{"question": "a", "answer": ["b"]}'], 1, "field 'answer' must be a string or a number, got an array"),
        (['{"question": "a", "answer": true}'], 1, "field 'answer' must be a string or a number, got a boolean"),
        (['{"question": "a", "answer": null}'], 1, "field 'answer' must be a string or a number, got null"),
        (['{"question": "a", "answer": {"v": 1}}'], 1, "field 'answer' must be a string or a number, got an object"),
        (['{"question": "a", "answer": "b", "choices": "AB"}'], 1, "field 'choices' must be a non-empty list"),
        (['{"question": "a", "answer": "b", "id": 1.5}'], 1, "field 'id' must be"),
        (['{"question": "a", "answer": "b", "metadata": []}'], 1, "field 'metadata' must be an object"),
        (['["question", "answer"]'], 1, "expected a JSON object, got an array"),
        # accepted, then scored wrong whatever the model answered
        (['{"question": "a", "answer": " "}'], 1, "field 'answer' is empty"),
        (
            ['{"question": "a", "answer": "E", "choices": ["x", "y", "z", "w"]}'],
            1,
            r"field 'answer' 'E' names none of its choices \(a letter A-D, or one's text\)",
        ),
        (
            ['{"id": "x", "question": "a", "answer": "b"}', "", '{"id": "x", "question": "c", "answer": "d"}'],
            3,
            "duplicate id 'x' \\(first on line 1\\)",
        ),
        # a fuzzer's: eval --show-items and runs show printed it raw (a window title set, the screen cleared)
        (['{"id": "x\\u001b]0;pwned\\u0007", "question": "a", "answer": "b"}'], 1, "field 'id' holds a control"),
        (['{"id": "ab\\u202ec", "question": "a", "answer": "b"}'], 1, "field 'id' holds a control character"),
        # an API fuzzer's: valid JSON, no Unicode; the eval paid for its calls, then failed storing it
        (['{"question": "a \\ud800", "answer": "b"}'], 1, r"an unpaired surrogate escape \(\\ud800-\\udfff\)"),
        (['{"question": "a", "answer": "b", "metadata": {"k": "\\udfff"}}'], 1, "an unpaired surrogate escape"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, lines: list[str], line_no: int, message: str) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(TaskError, match=rf"data\.jsonl:{line_no}: {message}"):
        load_task(str(path))


def test_non_utf8_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"question": "a", "answer": "b"}\n{"question": "\xff", "answer": "b"}\n')
    with pytest.raises(TaskError, match=r"data\.jsonl:2: not UTF-8"):
        load_jsonl(path)


def test_an_endless_line_is_refused_not_read_to_the_end_of_memory() -> None:
    """`run --input /dev/zero` read one line without end until the kernel killed it (22 GB), and
    ignored SIGTERM while it did; the line stops at 64 MiB."""
    with pytest.raises(TaskError, match=r"/dev/zero:1: a line over 64 MiB: not a JSONL task file"):
        list(jsonl_records(Path("/dev/zero")))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no items"):
        load_jsonl(_write(tmp_path, [""]))
    with pytest.raises(TaskError, match="not found"):
        load_task(str(tmp_path / "missing.jsonl"))
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(TaskError, match=r"task file '.*folder\.jsonl' is a directory"):  # it said "not found"
        load_task(str(tmp_path / "folder.jsonl"))
    with pytest.raises(TaskError, match=r"task file '/dev/zero' is not a regular file \(a device or a pipe\)"):
        load_task("/dev/zero")  # it said "not found" (a fuzzer's)


def test_unknown_scorer_lists_valid_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, _rows({"question": "a", "answer": "b"}))
    with pytest.raises(TaskError, match="valid scorers: exact, numeric, choice, math, code"):
        load_task(str(path), scorer="fuzzy")


def test_choices_are_shown_to_the_model(tmp_path: Path) -> None:
    """The model was asked for "the letter of the correct choice" of options it was never shown."""
    path = _write(
        tmp_path,
        _rows(
            {"question": "Capital of France?", "answer": "B", "choices": ["Berlin", "Paris"]},
            {"question": "Capital of Italy? A. Rome B. Oslo", "answer": "A", "choices": ["Rome", "Oslo"]},
            {"question": "How many of 10, 21, 32 are odd?", "answer": "B", "choices": ["0", "1", "2", "3"]},
        ),
    )
    first, listed, mentioned = load_task(str(path)).items
    assert first.question == "Capital of France?\n\nA. Berlin\nB. Paris"
    assert listed.question == "Capital of Italy? A. Rome B. Oslo"  # it lists them itself
    # every choice's text is in it, but not as a list: it was taken for one and never shown
    assert mentioned.question.endswith("?\n\nA. 0\nB. 1\nC. 2\nD. 3")


def test_unreadable_values_name_their_line(tmp_path: Path) -> None:
    """Values nested 200,000 deep or a 5,000-digit number raised RecursionError / ValueError tracebacks."""
    deep = _write(tmp_path, ['{"question": "q", "answer": 1}', "[" * 200_000 + "]" * 200_000], "deep.jsonl")
    with pytest.raises(TaskError, match=r"deep.jsonl:2: values nested too deeply"):
        load_task(str(deep))
    big = _write(tmp_path, ['{"question": "q", "answer": ' + "9" * 5000 + "}"], "big.jsonl")
    with pytest.raises(TaskError, match=r"big.jsonl:1: cannot be read"):
        load_task(str(big))


def test_a_code_item_without_tests_is_never_passed(tmp_path: Path) -> None:
    """Without a `test` field the answer is the test program: a numeric answer "100" ran as the
    test and passed any code."""
    path = _write(tmp_path, _rows({"question": "What is 0 + 3?", "answer": 100}))
    with pytest.raises(TaskError, match=r"data\.jsonl:1: no tests to run: give a 'test' field"):
        load_task(str(path), scorer="code")  # refused on load since: it was found item by item
    task = load_task(str(path), scorer="code", stored=True)
    score = task.score("def f():\n    return 0\n", task.items[0])
    assert not score.correct and "no tests to run" in score.detail


def test_a_scorer_given_as_a_task_option_is_named(tmp_path: Path) -> None:
    """`--task t.jsonl --task-option scorer=exact` was a TypeError traceback."""
    path = _write(tmp_path, _rows({"question": "q", "answer": "a"}))
    with pytest.raises(TaskError, match="scorer is not a task option: give it as --scorer"):
        load_task(str(path), options={"scorer": "exact"})
    # the loader's keywords were listed as what a file accepts ("scorer, name, stored"), then refused
    for options in ({"a": "1"}, {"name": "x"}, {"stored": "yes"}):
        with pytest.raises(TaskError, match=rf"does not accept option\(s\) {next(iter(options))}; it accepts: none \("):
            load_task(str(path), options=options)


def test_items_their_scorer_marks_wrong_whatever_the_answer_are_refused(tmp_path: Path) -> None:
    """A NaN reference under a numeric scorer, a choice reference naming none of the item's choices:
    loaded, then scored wrong whatever the model said. The same lines under a scorer that reads them
    (numeric over listed numbers, a code item's tests) load, and so does a stored run's file."""
    choices = _write(tmp_path, ['{"question": "a", "answer": "E", "choices": ["8.0", "6.0"]}'])
    with pytest.raises(TaskError, match=r"data\.jsonl:1: field 'answer' 'E' names none of its choices \(a letter A-B"):
        load_task(str(choices))
    assert load_task(str(choices), stored=True).size == 1  # a run started before the check still resumes
    numeric = _write(tmp_path, ['{"question": "a", "answer": 8, "choices": ["8.0", "6.0"]}'])
    assert load_task(str(numeric), scorer="numeric").size == 1
    nan = _write(tmp_path, ['{"question": "a", "answer": NaN}'])
    for scorer in ("numeric", "math"):
        with pytest.raises(TaskError, match=r"data\.jsonl:1: field 'answer' must be a finite number, got nan"):
            load_task(str(nan), scorer=scorer)
    tested = '{"question": "def f(): ...", "answer": "", "test": "assert f() is None", "entry_point": "f"}'
    assert load_task(str(_write(tmp_path, [tested])), scorer="code").size == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [  # the bad-input review: 0% with "reference 'abc' is not a number"; a traceback at that item, on resume too
        ('{"question": "1+1?", "answer": "abc"}', r"field 'answer' 'abc' is not a number, which the numeric scorer"),
        ('{"question": "1+1?", "answer": 2, "rel_tol": "abc"}', r"'rel_tol' must be a finite number >= 0, got 'abc'"),
        ('{"question": "1+1?", "answer": 2, "metadata": {"rel_tol": -1}}', r"'rel_tol' must be .*, got -1"),
        ('{"question": "1+1?", "answer": 2, "rel_tol": Infinity}', r"'rel_tol' must be .*, got inf"),
        ('{"question": "1+1?", "answer": 2, "rel_tol": true}', r"'rel_tol' must be .*, got True"),
        ('{"question": "1+1?", "answer": 2, "rel_tol": 1' + "0" * 400 + "}", r"'rel_tol' must be .*, got 10+"),
    ],
)
def test_items_the_numeric_scorer_cannot_read_are_refused(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, ['{"question": "2+2?", "answer": 4}', line])
    with pytest.raises(TaskError, match=rf"data\.jsonl:2: {message}"):
        load_task(str(path), scorer="numeric")
    ok = _write(tmp_path, ['{"question": "2+2?", "answer": "4", "rel_tol": "0.01"}'])  # float() reads it, as before
    assert load_task(str(ok), scorer="numeric").size == 1


def test_code_items_are_scored_by_running_their_tests(tmp_path: Path) -> None:
    """MBPP-style items: a `test` list of asserts was scored as its own repr (a list literal that ran
    no assert: a wrong solution passed), plain asserts beside an entry point failed every answer on
    `check` (not defined), and a file of items with tests was scored by text without --scorer code;
    an item with tests and no `answer` field (MBPP's records) was refused: "missing required field"."""
    path = _write(
        tmp_path,
        _rows(
            {"id": "listed", "question": "Write add(a, b).", "test": ["assert add(1, 2) == 3"]},  # no answer, as MBPP
            {"id": "plain", "question": "Write add(a, b).", "answer": "", "test": "assert add(2, 2) == 4"},
            {
                "id": "entry",
                "question": "Write add(a, b).",
                "answer": "",
                "entry_point": "add",
                "test": "assert add(0, 3) == 3",
            },
        ),
    )
    task = load_task(str(path))
    assert task.scorer_name == "code"
    assert load_task(str(path), stored=True).scorer_name == "exact"  # a run resumed keeps the scorer it began with
    other = _write(tmp_path, _rows({"question": "1 + 1?", "answer": 2, "test": "heldout-v2"}), "other.jsonl")
    assert load_task(str(other)).scorer_name == "numeric"  # a field named test that holds no tests
    right, wrong = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"
    for item in task.items:
        assert task.score(right, item).correct, (item.id, task.score(right, item).detail)
        assert not task.score(wrong, item).correct, item.id


@pytest.mark.parametrize(
    ("record", "said"),
    [
        (
            {"question": "q", "answer": "", "test": {"assert": 1}},
            "field 'test' must be a program or a list of lines, got an object",
        ),
        ({"question": "Write f.", "answer": "def f(): pass"}, "no tests to run"),
        (  # nothing calls check(), and no function to call it with: every answer passed
            {
                "question": "Write add.",
                "answer": "",
                "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
            },
            r"the item's tests define check\(\) but nothing calls it",
        ),
    ],
)
def test_a_code_item_that_cannot_be_tested_is_refused_on_load(
    tmp_path: Path, record: dict[str, object], said: str
) -> None:
    path = _write(tmp_path, _rows(record))
    with pytest.raises(TaskError, match=rf"data\.jsonl:1: {said}"):
        load_task(str(path), scorer="code")


def test_an_item_without_choices_under_the_choice_scorer_is_refused(tmp_path: Path) -> None:
    """One item with choices made the file `choice`: the others were asked for a letter of choices
    they did not have, and scored "no answer" whatever the model said."""
    path = _write(
        tmp_path,
        _rows(
            {"question": "Capital of France?", "answer": "B", "choices": ["Berlin", "Paris"]},
            {"question": "What is 2 + 2?", "answer": 4},
        ),
    )
    with pytest.raises(
        TaskError, match=r"data\.jsonl:2: field 'answer' '4' is no letter, and the item has no 'choices'"
    ):
        load_task(str(path))
    assert load_task(str(path), scorer="exact").size == 2
    # choices the question lists itself, the answer a letter: scorable, as before
    listed = _write(tmp_path, _rows({"question": "Capital? A) Berlin B) Paris", "answer": "B"}), "listed.jsonl")
    assert load_task(str(listed), scorer="choice").size == 1


def test_a_json_document_spread_over_lines_is_named_as_such(tmp_path: Path) -> None:
    """A pretty-printed array was "line 1: invalid JSON: Expecting value (column 1)", at its `[`."""
    path = _write(tmp_path, ["[", '  {"question": "q", "answer": 1}', "]"], "data.json")
    with pytest.raises(TaskError, match=r"data\.json:1: invalid JSON: the line ends before its value does; .*JSONL"):
        load_task(str(path))


def test_more_choices_than_letters_are_refused(tmp_path: Path) -> None:
    """Past Z a choice's letter was `[`: a regex error (a traceback) on load of a question listing them."""
    choices = [f"option {i}" for i in range(27)]
    path = _write(tmp_path, _rows({"question": "Which?", "answer": "A", "choices": choices}))
    with pytest.raises(TaskError, match=r"data\.jsonl:1: field 'choices' holds 27; at most 26"):
        load_task(str(path))
    path = _write(tmp_path, _rows({"question": "Which?", "answer": "Z", "choices": choices[:26]}))
    assert load_task(str(path)).items[0].choices == choices[:26]  # A to Z


def test_an_empty_scorer_name_is_refused_not_inferred(tmp_path: Path) -> None:
    """`eval --task f.jsonl --scorer ''` ran with an inferred scorer, as if none were given (a built-in
    task refused it as an unknown scorer)."""
    path = _write(tmp_path, ['{"question": "a", "answer": "1"}'])
    with pytest.raises(TaskError, match="unknown scorer ''; valid scorers: exact"):
        load_task(str(path), scorer="")
