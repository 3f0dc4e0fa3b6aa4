"""Exact, numeric, choice and math scorers on known right and wrong answers."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest

from agentscale.tasks import Scorer, TaskError, TaskItem, get_scorer
from agentscale.tasks.scorers import parse_number, score_choice, score_exact, score_math, score_numeric
from agentscale.tasks.scorers.mathverify import accepted_references
from agentscale.tasks.scorers.normalize import same_text
from agentscale.tasks.scorers.numeric import numeric_scorer


def _item(reference: str, choices: list[str] | None = None, **metadata: object) -> TaskItem:
    return TaskItem(id="x", question="q", reference=reference, choices=choices, metadata=metadata)


@pytest.mark.parametrize("scorer", [score_exact, score_numeric, score_choice, score_math])
@pytest.mark.parametrize("answer", [None, "", "   \n"])
def test_no_answer_is_wrong(scorer: Scorer, answer: str | None) -> None:
    assert scorer(answer, _item("A", choices=["x", "y"])).correct is False


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("Paris", "paris"),
        ("  Paris. ", "Paris"),
        ("**paris**", "Paris"),
        ("New   York", "new york"),
        ("“yes”", "Yes"),
        ("1, 2, 3", "[1, 2, 3]"),  # one side wrapped in brackets: the same list
        ("(B)", "B"),
        ("- Paris", "Paris"),
        ("+5", "5"),
    ],
)
def test_exact_accepts_normalised_matches(answer: str, reference: str) -> None:
    assert score_exact(answer, _item(reference)).correct


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("Paris, France", "Paris"),
        ("Pari s", "Paris"),
        ("London", "Paris"),
        ("no", "yes"),
        ("-5", "5"),
        ("- 5", "5"),
        ("5!", "5"),
    ],
)
def test_exact_rejects_different_text(answer: str, reference: str) -> None:
    score = score_exact(answer, _item(reference))
    assert not score.correct and "expected" in score.detail


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("-7", -7),
        ("1,234,567", 1234567),
        ("$1,234.50", Fraction("1234.5")),
        ("3/4", Fraction(3, 4)),
        ("-3/4", Fraction(-3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("1e-3", Fraction(1, 1000)),
        ("2.5E3", 2500),
        ("1.2 \\times 10^{3}", 1200),
        ("x = 5", 5),
        ("5 apples", 5),
        ("42.", 42),
        ("−3", -3),
        ("\\boxed{17}", 17),
    ],
)
def test_parse_number(text: str, value: Fraction | int) -> None:
    parsed = parse_number(text)
    assert parsed is not None and parsed[0] == value


def test_parse_number_reads_percent_both_ways() -> None:
    assert parse_number("75%") == [75, Fraction(3, 4)]


@pytest.mark.parametrize("text", ["", "abc", "between 3 and 5", "1,2", "3/0", "1/2/3 4"])
def test_parse_number_rejects_non_numbers(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("1234", "1,234"),
        ("1234.0", "1234"),
        ("0.75", "3/4"),
        ("75%", "75"),
        ("75%", "0.75"),
        ("0.3333333", "1/3"),
        ("1e3", "1000"),
        ("The answer is 28080", "28080"),
        ("106475279601", "106475279601"),
    ],
)
def test_numeric_accepts_equal_numbers(answer: str, reference: str) -> None:
    assert score_numeric(answer, _item(reference)).correct


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("106475279602", "106475279601"),
        ("106475279601.5", "106475279601"),
        ("0.76", "3/4"),
        ("0.333", "1/3"),
        ("3 or 4", "3"),
        ("seven", "7"),
        ("-5", "5"),
        ("- 5", "5"),  # a spaced sign is a sign: it was dropped
    ],
)
def test_numeric_rejects_different_numbers(answer: str, reference: str) -> None:
    assert not score_numeric(answer, _item(reference)).correct


def test_numeric_tolerance_is_configurable() -> None:
    assert not score_numeric("0.333", _item("1/3")).correct
    assert numeric_scorer(rel_tol=1e-2)("0.333", _item("1/3")).correct
    assert score_numeric("0.333", _item("1/3", rel_tol=1e-2)).correct


def test_a_float_residual_matches_a_zero_reference() -> None:
    """Against 0 no relative tolerance helps (it scales with the values): the absolute one lets a
    float residual such as 0.1 + 0.2 - 0.3 count as 0, and only a residual that small."""
    assert score_numeric("5.551115123125783e-17", _item("0")).correct
    assert score_numeric("1e-12", _item("0")).correct
    assert not score_numeric("1e-6", _item("0")).correct


def test_an_items_own_tolerance_holds_for_a_whole_number_reference() -> None:
    """An integer reference matched only answers that round to it, before the tolerance was asked:
    an item's `rel_tol: 0.1` did nothing for 1050 against 1000. The default keeps that rule."""
    assert score_numeric("1050", _item("1000", rel_tol=0.1)).correct
    assert not score_numeric("1150", _item("1000", rel_tol=0.1)).correct
    assert not score_numeric("1000.4", _item("1000")).correct  # the default: whole answers for whole references
    assert not score_numeric("2000001", _item("2000000", rel_tol=1e-6)).correct  # the default written out
    assert numeric_scorer(rel_tol=0.1)("1050", _item("1000")).correct  # a scorer's own looser tolerance


@pytest.mark.parametrize("rel_tol", ["abc", float("nan"), -1.0, 10**400, None, True])
def test_an_unreadable_rel_tol_counts_only_an_exact_answer_and_says_why(rel_tol: object) -> None:
    """A stored run's item (its file loaded before the load-time check) killed eval --resume at that
    item with a traceback, every time (the diff review); an exact answer stays right, as it was."""
    assert score_numeric("5", _item("5", rel_tol=rel_tol)).correct
    score = score_numeric("5.0001", _item("5", rel_tol=rel_tol))
    assert not score.correct and f"rel_tol {rel_tol!r} is not a finite number >= 0" in score.detail
    scorer = numeric_scorer(rel_tol=float("nan"))  # a plugin's: it was a KeyError
    assert not scorer("5.0001", _item("5")).correct


def test_numeric_reports_a_non_numeric_reference() -> None:
    score = score_numeric("5", _item("five"))
    assert not score.correct and "not a number" in score.detail


@pytest.mark.parametrize("answer", ["1e9999999", "1E-99999999", "3 \\times 10^{9999999}", "2/1e99999999"])
def test_an_exponent_beyond_any_answer_is_no_number(answer: str) -> None:
    # building 10**9999999 held the event loop for 5.6 s; 1e99999999 for minutes
    assert parse_number(answer) is None
    assert not score_numeric(answer, _item("3")).correct


@pytest.mark.parametrize(
    ("answer", "reference", "correct", "shown"),
    [
        ("1e400", "0.5", False, "got 1e400"),
        ("1/1e-400", "0.5", False, "got 1/1e-400"),
        ("1e400", "1e400", True, "about 1e400 matches"),
        ("-2.5e500", "-25e499", True, "about -1e500 matches"),
    ],
)
def test_values_beyond_a_float_compare_without_overflow(answer: str, reference: str, correct: bool, shown: str) -> None:
    # float() raised OverflowError, which stopped the whole eval and again at every resume
    score = score_numeric(answer, _item(reference))
    assert score.correct is correct and shown in score.detail


def test_long_runs_of_whitespace_do_not_backtrack_for_minutes(in_a_child: Callable[[str], None]) -> None:
    """Patterns with two adjacent runs of whitespace took seconds on 20,000 spaces and grow with the
    square (the LaTeX fraction with the cube) of the run; fixed, each takes milliseconds."""
    program = """
from agentscale.tasks import TaskItem
from agentscale.tasks.scorers import score_choice, score_numeric
item = TaskItem(id="x", question="q", reference="5", choices=["a", "b", "c", "d", "e"])
spaces = " " * 200_000
assert score_numeric("5" + spaces + "x", item).correct
assert score_numeric("1" + "\\n" * 200_000 + "/2", item).correct is False
assert score_numeric("\\\\frac{" + " " * 20_000 + "x", item).correct is False
assert score_choice("answer" + spaces + "1", item).correct is False
"""
    in_a_child(program)


CHOICES = ["Paris", "London", "A city in Spain", "Rome"]


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("A", "A"),
        ("a", "A"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B) London", "B"),
        ("Answer: D", "D"),
        ("The answer is D", "D"),
        ("london", "B"),
        ("B", "London"),
        ("A city in Spain", "C"),
    ],
)
def test_choice_accepts_letter_or_text(answer: str, reference: str) -> None:
    assert score_choice(answer, _item(reference, CHOICES)).correct


@pytest.mark.parametrize(
    ("answer", "reference"),
    [("B", "A"), ("Paris", "B"), ("E", "E"), ("A city", "A"), ("Madrid", "C"), ("A or B", "A")],
)
def test_choice_rejects_other_options(answer: str, reference: str) -> None:
    assert not score_choice(answer, _item(reference, CHOICES)).correct


def test_an_option_whose_text_is_a_letter_is_read_as_that_option() -> None:
    """Text before letters: "Which letter comes next: A, C, E, G?" has options H, I, J, K and the
    reference "I", their text. Read as a letter first, "I" named a ninth option there is none of, and
    every answer to the item was scored wrong."""
    item = TaskItem(id="x", question="Which letter comes next: A, C, E, G?", reference="I", choices=list("HIJK"))
    assert score_choice("I", item).correct
    assert score_choice("(B)", item).correct  # option B, whose text is I
    assert not score_choice("H", item).correct


def test_choice_without_choices_compares_letters() -> None:
    assert score_choice("(c)", _item("C")).correct
    assert not score_choice("D", _item("C")).correct


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "1/2"),
        ("$\\sqrt{2}/2$", "1/sqrt(2)"),
        ("2^(n-1)", "2^(n-1)"),
        ("2**(n-1)", "2^(n-1)"),
        ("n(n+1)/2", "(n^2+n)/2"),
        ("The answer is $\\boxed{252}$.", "252"),
        ("x=6, y=5", "x=6, y=5"),
        ("No", "No"),
        ("no, it cannot", "No"),
        # a scorer audit's, each scored wrong before
        ("\\dfrac{1}{2}", "1/2"),  # unwrapped: "dfrac" read as a word of prose
        ("\\dbinom{10}{5}", "252"),
        ("1.5e3", "1500"),  # read as 1.5*E*3
        ("12 (because 2+10)", "12"),  # the explanation's last number, 2
        ("12. Note 5 is wrong.", "12"),
    ],
)
def test_math_accepts_equivalent_answers(answer: str, reference: str) -> None:
    assert score_math(answer, _item(reference)).correct


@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("2", "2^(n-1)"),
        ("0.51", "1/2"),
        ("n(n-1)/2", "n(n+1)/2"),
        ("253", "252"),
        ("yes", "No"),
        ("x=5, y=6", "x=6, y=5"),
        ("The sequence exists", "The sequence does not exist"),
        # signs, points, brackets and marks at the ends change an answer: they were stripped as punctuation
        ("-9", "9"),
        ("-5", "5"),
        (".5", "5"),
        ("(0, 1)", "[0, 1]"),
        ("-\\infty", "\\infty"),
        ("-x", "x"),
        # a scorer audit's, each scored right before
        ("12, not 13", "13"),  # the explanation's number
        ("No idea", "no"),
        ("yes and no", "yes"),
        # formulas math-verify cannot parse, read as their first number (CHAMP's; a real-model walk)
        ("2", "2^floor(n/2)*floor(n/2)!"),
        ("1", "sum_(k=1)^n 1/k"),
        ("1", "sum_(i=1)^n i^3"),
        ("Let me count. For n = 1 the sum is 1, and for", "sum_(i=1)^n i^2"),  # cut before its answer
    ],
)
def test_math_rejects_different_answers(answer: str, reference: str) -> None:
    assert not score_math(answer, _item(reference)).correct


def test_math_uses_accepted_alternatives() -> None:
    item = _item("C(10, 5), or equivalently 252", accepted=["C(10, 5)", "252"])
    assert score_math("252", item).correct
    assert not score_math("251", item).correct


def test_math_reads_the_end_of_a_long_reply() -> None:
    """A reply longer than MAX_ANSWER_CHARS is cut to its end, where the final answer is: cut to its
    start, a 2,500-character reply ending in \\boxed{42} scored wrong against 42 (nothing parseable)."""
    reasoning = "x" * 2500 + " \\boxed{42}"
    assert score_math(reasoning, _item("42")).correct
    assert not score_math(reasoning, _item("43")).correct


def test_math_works_off_the_main_thread(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Without math-verify's warning that its timeouts are off there (inputs are cut instead): it
    printed into every eval's output."""
    from concurrent.futures import ThreadPoolExecutor

    import math_verify.grader
    import math_verify.parser

    monkeypatch.setattr(math_verify.parser, "TIMEOUT_WARNING_SHOWN", False)  # once per process
    monkeypatch.setattr(math_verify.grader, "TIMEOUT_WARNING_SHOWN", False)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: score_math(a, _item("1/2")).correct, ["0.5", "0.6"]))
    assert results == [True, False]
    assert not [r for r in caplog.records if "Timeout is disabled" in r.getMessage()]


def test_get_scorer_lists_valid_names() -> None:
    assert get_scorer("numeric")[1] == "number"
    with pytest.raises(TaskError, match="valid scorers: exact, numeric, choice, math, code"):
        get_scorer("fuzzy")


def test_a_power_too_large_to_work_out_is_not_worked_out(in_a_child: Callable[[str], None]) -> None:
    """An answer of 9^{9^{9}} (or 10^999999999999) hung the eval for good: sympy worked the number
    out in the scoring thread, where math-verify's timeouts are off. Such a power only matches as text."""
    program = """
import threading
from agentscale.tasks.base import TaskItem
from agentscale.tasks.scorers import score_math
item = lambda reference: TaskItem(id="x", question="q", reference=reference)
def check():
    for answer in ["9^{9^{9}}", "2^{2^{100}}", "x \\\\times 10^999999999999", "2**2**100", "9^9^9"]:
        assert not score_math(answer, item("12")).correct, answer
    assert score_math("9^{9^{9}}", item("9^{9^{9}}")).correct  # the same text still matches
    assert score_math("2^{10}", item("1024")).correct  # a power of an answer's size is worked out
thread = threading.Thread(target=check)  # off the main thread, as the eval scores
thread.start()
thread.join()
"""
    in_a_child(program)


def test_a_number_inside_a_prose_reference_is_not_the_answer() -> None:
    """(A mutation audit: a one-line change to `if is_prose(reference):` survived every test.) The module docstring
    says prose references ("No", "The sequence does not exist") are compared as normalised text; with the skip gone
    math-verify reads a number out of the prose, and a user would see the answer "2" scored correct against the
    reference "2 apples" (and likewise any bare number found inside a worded reference): inflated accuracy on
    CHAMP-like tasks."""
    item = TaskItem(id="x", question="q", reference="2 apples")
    assert not score_math("2", item).correct
    assert score_math("2 apples", item).correct  # the text itself still matches


def test_only_a_matching_pair_of_brackets_is_unwrapped() -> None:
    """(A mutation audit: a one-line change to `_WRAPPERS.get(text[0]) == text[-1]` survived every test.) Any text that
    opens with a bracket then loses its first and last characters before the comparison, closed or not: a user would
    see the exact scorer count the answer "(10" correct against the reference "1", and "[2, 30" against "2, 3"."""
    assert same_text("[0, 1]", "0, 1") and same_text("(B)", "B") and same_text("1, 2", "{1, 2}")
    assert not same_text("(10", "1") and not same_text("[2, 30", "2, 3")
    assert not score_exact("(10", TaskItem(id="x", question="q", reference="1")).correct


def test_an_empty_accepted_list_means_the_reference() -> None:
    """(A mutation audit: a one-line change to `and accepted` survived every test.) An item whose metadata carries
    `accepted: []` (a JSONL file written with an empty list) then has no reference to compare with beyond exact
    text: a user would see "0.5" scored wrong against the reference "1/2" (and every equivalent form wrong), the
    detail reading "expected '1/2', got '1/2'"."""
    item = TaskItem(id="x", question="q", reference="1/2", metadata={"accepted": []})
    assert accepted_references(item) == ["1/2"]
    assert score_math("0.5", item).correct
    assert score_math(r"\frac{1}{2}", item).correct
