"""Answer extraction per format, and the vote's notion of "the same answer"."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentscale.agents.extract import extract_answer, normalize_for_vote
from agentscale.tasks.base import TaskItem
from agentscale.tasks.scorers.choice import score_choice
from agentscale.tasks.scorers.numeric import score_numeric


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("17 + 25 = 42.\nFinal answer: 42", "42"),
        ("Final Answer: 1,234 apples", "1234"),
        ("The answer is \\boxed{3/4}.", "3/4"),
        ("so we get 12 and then 15", "15"),
        ("Final answer: -7.50", "-7.50"),
        ("Final answer: 8.0", "8"),
        ("no digits here", None),
        # Qwen's convention: reasoning full of numbers, then the boxed answer
        ("Step 1: 12 * 3 = 36.\nStep 2: 36 + 6 = 42.\nSo the total is \\boxed{42}.", "42"),
        ("The final answer is $\\boxed{\\frac{3}{4}}$.", "3/4"),
        ("Cost: \\boxed{\\$1,234}", "1234"),
        ("Final answer: \\boxed{-5}", "-5"),
        ("First \\boxed{7}, then corrected: \\boxed{8}", "8"),
        # numbers as people and LaTeX write them: the scorer would read them whole, extraction cut them
        ("Final answer: −5", "-5"),  # a Unicode minus (was 5)
        ("Final answer: .5", ".5"),  # (was 5)
        ("Final answer: $\\frac{3}{4}$", "3/4"),  # \\frac outside a box (was 3)
        ("So \\boxed{\\frac12}", "1/2"),  # (was 12)
        ("So \\boxed{2\\frac{1}{2}}", "5/2"),  # a mixed number (was 21/2)
        ("So \\boxed{1{,}000}", "1000"),  # (was 1)
        ("\\boxed{1.5 \\times 10^{3}}", "1.5e3"),  # (was 1.5)
        ("So \\boxed{2^{10}}", "1024"),  # (was 2)
        ("Final answer: 50%", "50%"),  # the scorer reads 50 and 0.5 (was 50 only)
        ("Final answer: 3 + 4 = 7", "7"),  # the result of an equation (was 3)
        ("Final answer: 5 (when x = 2)", "5"),  # an "=" in an explanation is no equation's result
        ("Final answer: 42 = 6 \\times 7", "42"),
        ("Final answer: (-3)^2", "9"),
        ("Final answer: - 5", "-5"),  # a spaced sign is a sign (was 5)
        ("Final answer: 2\\frac12", "5/2"),  # a mixed number without braces (was 21/2)
        ("Final answer: 12\n\nActually, the final answer is 15.", "15"),  # a self-correction wins
        ("**Final Answer:**\n\\[\n\\boxed{42}\n\\]\nThis took 3 steps.", "42"),  # display math below
        ("Final answer: 252\nThis final answer is consistent with the count above.", "252"),  # prose after
        # a scorer audit's: without the marker, the last number of the reply was taken
        ("The answer is 12. We checked with 3 examples.", "12"),  # (was 3)
        ("The answer is 18 dollars (9 eggs x $2).", "18"),  # (was 2)
        ("Answer: 42\n\nNote: this assumes 7 days a week.", "42"),  # (was 7)
        # two numbers offered as one answer are passed on whole, for the scorer to refuse (was the first)
        ("Final answer: 3 or 4", "3 or 4"),
        ("Final answer: between 3 and 4", "between 3 and 4"),
        ("Final answer: 12 to 13", "12 to 13"),
        ("Final answer: 1,234 apples", "1234"),  # one number with a thousands separator, not two
        # a minus written as a dash, a sign before a currency symbol (both were lost: -7 matched 7)
        ("Final answer: 3 x 4 = 12", "12"),  # (was 3)
        ("Final answer: The total is 5 + 7 = 12", "12"),  # an equation after words (was 5)
        ("Final answer: 10 (3 + 4 = 7 plus 3)", "10"),  # not one after the answer
        ("Final answer: –7", "-7"),
        ("Final answer: -$12", "-12"),
    ],
)
def test_number(text: str, expected: str | None) -> None:
    assert extract_answer(text, "number") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning...\nFinal answer: B", "B"),
        ("Final answer: (C) because", "C"),
        ("I think the answer is D.", "D"),
        ("**Final answer: A**", "A"),
        ("Checking each option... so the answer is \\boxed{\\text{C}}", "C"),
        ("Final answer: I believe it is C", "C"),  # the pronoun I is no option (was I)
        ("Final answer: B is correct, not A.", "B"),  # a letter before a word is an option still
        ("Answer C. Options A and B are incorrect", "C"),  # "Answer C" without "is" or a colon
        ("Final answer: A because B is too small.", "A"),  # only the pronoun I is skipped, not A
        ("Final answer: I is the only valid option; J is not", "I"),
        ("To answer a question like this, check each option. Blue fits, so C is right.", "C"),  # (was A)
        ("the answer is b", "B"),
        ("answer: a must be right", "A"),  # a lower-case a is an option here, as before
        ("**Answer:** B\n\nExplanation: Option A is wrong because Paris is in France; C is also wrong.", "B"),
        ("Answer: **B**\n\nA is incorrect since Paris is the capital of France.", "B"),  # (were C and A)
        # a scorer audit's: without "answer is", the last capital letter was taken (an article, a rejected option)
        ("B. A bicycle", "B"),  # (was A)
        ("Therefore, the correct choice is (B) A bicycle.", "B"),  # (was A)
        ("I choose B: A bicycle", "B"),  # (was A)
        ("The best choice is C because A and B are too slow.", "C"),  # (was B)
        ("C is correct. A is too slow.", "C"),  # (was A)
        ("So the answer must be C; A would cost more.", "C"),  # (was A)
        ("Final answer: A or C", "A or C"),  # a hedge, passed on for the scorer to refuse (was A)
    ],
)
def test_choice(text: str, expected: str) -> None:
    assert extract_answer(text, "choice") == expected


@pytest.mark.parametrize(
    ("reply", "choices", "reference"),
    [
        ("Final answer: Rome", ["Paris", "Rome"], "B"),  # no letter: no answer
        ("Rome", ["Paris", "Rome"], "B"),
    ],
)
def test_a_choice_answered_by_its_text_is_scored_by_it(reply: str, choices: list[str], reference: str) -> None:
    item = TaskItem(id="q", question="Which?", reference=reference, choices=choices)
    assert score_choice(extract_answer(reply, "choice"), item).correct
    assert normalize_for_vote("Rome", "choice") != normalize_for_vote("Rio", "choice")
    long_option = "It decreases the amount of carbon dioxide released"  # quoted whole, it is that option
    item = TaskItem(id="q", question="Which?", reference="B", choices=["It grows", long_option])
    assert score_choice(extract_answer(f"{long_option}.", "choice"), item).correct


def test_code_prefers_last_python_block() -> None:
    text = "First try:\n```python\ndef f():\n    return 1\n```\nBetter:\n```python\ndef f():\n    return 2\n```"
    assert extract_answer(text, "code") == "def f():\n    return 2\n"
    assert extract_answer("def g(x):\n    return x", "code") == "def g(x):\n    return x\n"
    assert extract_answer("just words", "code") is None


def test_code_skips_a_usage_example_after_the_solution_and_prose_before_it() -> None:
    """The last block was taken even when it only used the solution (30 of 30 right HumanEval answers
    scored 0), and an unfenced answer kept the sentence before its code (a SyntaxError)."""
    solution = "def add(a, b):\n    return a + b\n"
    usage = f"```python\n{solution}```\nExample usage:\n```python\nprint(add(1, 2))\n```"
    assert extract_answer(usage, "code") == solution
    assert extract_answer(f"Here is the function:\n{solution}", "code") == solution
    for before in (
        "MOD = 10**9 + 7",
        "MOD: int = 10**9 + 7",
        "MOD, BASE = 10**9 + 7, 10",
        "try:\n    import math\nexcept ImportError:\n    math = None",
    ):
        code = f"{before}\n\n{solution}"  # code before the first def is code
        assert extract_answer(f"Here:\n{code}", "code") == code


def test_code_skips_a_test_or_demo_block_and_keeps_the_blocks_the_solution_uses() -> None:
    """Only the last block defining anything was kept: a `def test_add()` or `def main()` block after
    the solution was scored as the answer (5 of 5 right HumanEval answers failed), and a helper in a
    block of its own was lost (NameError)."""
    solution = "def add(a, b):\n    return a + b\n"
    for after in ("def test_add():\n    assert add(1, 2) == 3\n\ntest_add()\n", "def main():\n    print(add(2, 3))\n"):
        reply = f"Here it is:\n```python\n{solution}```\nTry it:\n```python\n{after}```"
        assert extract_answer(reply, "code") == solution
    helper = "import operator\n\ndef _plus(a, b):\n    return operator.add(a, b)\n"
    uses_helper = "def add(a, b):\n    return _plus(a, b)\n"
    unrelated = "def unused():\n    return 0\n"
    reply = f"```python\n{unrelated}```\n```python\n{helper}```\nThen:\n```python\n{uses_helper}```"
    assert extract_answer(reply, "code") == f"{helper}\n{uses_helper}"
    tests_first = f"Tests:\n```python\ndef test_add():\n    assert add(1, 2) == 3\n```\nCode:\n```python\n{solution}```"
    assert extract_answer(tests_first, "code") == solution
    only_tests = "```python\ndef test_a():\n    pass\n```\n```python\ndef test_b():\n    pass\n```"
    assert extract_answer(only_tests, "code") == "def test_b():\n    pass\n"  # no solution: the last block, as before


@pytest.mark.parametrize(
    "before",
    [
        "def remove(s, ch):\n    return s.replace(ch, '')\n\ns = 'banana'\nassert remove(s, 'a') == 'bnan'\n",  # a failed try
        "s = 'hello'\nprint(remove(s, 'l'))\n",  # an example before the solution
        "s = input()\nch = input()\nprint(s.replace(ch, ''))\n",  # a script, then "as a function:"
    ],
)
def test_an_earlier_block_that_runs_something_is_not_pulled_in_by_a_shared_name(before: str) -> None:
    """A block that assigned `s` was joined before a solution whose parameter is `s` (a name it reads
    but binds itself), and ran first: a failing assert, a NameError, input() at EOF (a diff review)."""
    solution = "def remove(s, ch):\n    s = s.replace(ch, '', 1)\n    return s[::-1].replace(ch, '', 1)[::-1]\n"
    reply = f"First:\n```python\n{before}```\nFixed:\n```python\n{solution}```"
    assert extract_answer(reply, "code") == solution


@pytest.mark.parametrize(
    ("helper", "definitions"),
    [
        (
            "def dist(a, b):\n    return abs(a - b)\n\nprint(dist(1.0, 2.5))  # 1.5\n",
            "def dist(a, b):\n    return abs(a - b)",
        ),
        (
            "def dist(a, b):\n    return abs(a - b)\n\nassert dist(1, 3) == 2\n",
            "def dist(a, b):\n    return abs(a - b)",
        ),
        (
            "EPS = 0.0\n\ndef dist(a, b):\n    return abs(a - b) + EPS\n",
            "EPS = 0.0\n\ndef dist(a, b):\n    return abs(a - b) + EPS",
        ),
        (
            "try:\n    from math import dist\nexcept ImportError:\n    pass\n",
            "try:\n    from math import dist\nexcept ImportError:\n    pass",
        ),
    ],
)
def test_a_helper_block_gives_its_definitions_not_its_demo(helper: str, definitions: str) -> None:
    """A helper block that also printed or asserted was left out (NameError), and a constant never
    counted as something to join (the second diff review); its demo lines must not run first."""
    solution = "def close(a, b):\n    return dist(a, b) < 1\n"
    reply = f"Helper:\n```python\n{helper}```\nThen:\n```python\n{solution}```"
    assert extract_answer(reply, "code") == f"{definitions}\n\n{solution}"


def test_a_walk_through_that_assigns_a_builtins_name_is_not_joined() -> None:
    """A block tracing the idea by hand (`min = float('inf')`, a loop, a print) was joined before a
    solution calling min(): 'float' object is not callable (the third diff review)."""
    trace = "numbers = [1.0, 2.8]\nmin = float('inf')\nfor a in numbers:\n    min = a if a < min else min\nprint(min)\n"
    solution = "def smallest(xs):\n    return min(xs)\n"
    assert extract_answer(f"```python\n{trace}```\nSo:\n```python\n{solution}```", "code") == solution


def test_a_block_of_constants_the_solution_reads_is_joined() -> None:
    solution = "def close(a, b):\n    return abs(a - b) < LIMIT\n"
    assert extract_answer(f"```python\nLIMIT = 1\n```\n```python\n{solution}```", "code") == f"LIMIT = 1\n\n{solution}"


def test_a_parametrized_pytest_after_the_solution_is_no_solution() -> None:
    solution = "def close(a, b):\n    return abs(a - b) < 1\n\nprint(close(1, 2))\n"
    tests = (
        "import pytest\n\n@pytest.mark.parametrize('a, b', [(1, 2)])\ndef test_close(a, b):\n    assert close(a, b)\n"
    )
    assert extract_answer(f"```python\n{solution}```\n```python\n{tests}```", "code") == solution


def test_a_test_named_function_with_parameters_is_a_solution() -> None:
    """MBPP names solutions `test_duplicate(arraynums)`, `test_three_equal(x, y, z)`: the naive block
    before one was taken as the answer (NameError: test_duplicate)."""
    naive = "def has_duplicate_naive(arr):\n    return len(arr) != len(set(arr))\n"
    solution = "def test_duplicate(arraynums):\n    return len(arraynums) != len(set(arraynums))\n"
    reply = f"```python\n{naive}```\nAs asked:\n```python\n{solution}```"
    assert extract_answer(reply, "code") == solution


def test_an_answer_below_its_marker_is_its_line_and_the_rows_below() -> None:
    """A grid after "Final answer:" was cut to its first row (reasoning-gym's grid tasks scored 0);
    an answer's explanation on the next line is not part of it."""
    reply = "Rotating...\n**Final answer:**\n3 1\n4 2\n\nDone."
    assert extract_answer(reply, "text") == "3 1\n4 2"
    assert extract_answer("Final answer:\n42", "number") == "42"
    assert extract_answer("Final answer:\nParis\nThe capital of France is Paris.", "text") == "Paris"


def test_a_boxed_expression_is_kept_as_written_and_numbers_of_any_length_are_safe() -> None:
    """Boxed text went through the number reader, which removed brackets (`42*(30-4-23)` became
    `42*30-4-23`: 12 of 14 right rg:countdown answers scored wrong); and int() of a digit run of
    more than 4,300 digits raised ValueError, which ended the whole eval."""
    assert extract_answer("\\boxed{42*(30-4-23)}", "text") == "42*(30-4-23)"
    assert extract_answer("Reasoning " + "1" * 5000 + "^2 so the answer is 7", "number") == "7"
    assert extract_answer("\\boxed{2\\frac{" + "1" * 5000 + "}{3}}", "text") is not None


def test_text_uses_marker_or_whole_reply() -> None:
    assert extract_answer("thinking\nFinal answer: Paris", "text") == "Paris"
    assert extract_answer("  Paris  ", "text") == "Paris"
    assert extract_answer("   ", "text") is None


def test_vote_normalization() -> None:
    assert normalize_for_vote("50%", "number") == normalize_for_vote("50", "number")  # the scorer reads 50 too
    assert normalize_for_vote("5!", "text") != normalize_for_vote("5", "text")  # the scorer tells them apart
    assert normalize_for_vote("(0, 1)", "text") != normalize_for_vote("[0, 1]", "text")
    assert normalize_for_vote("42", "number") == normalize_for_vote("42.0", "number")
    assert normalize_for_vote("1/2", "number") == normalize_for_vote("0.5", "number")
    assert normalize_for_vote("$\\frac{1}{2}$", "text") == normalize_for_vote("0.5", "text")  # (split before)
    assert normalize_for_vote(" paris. ", "text") == normalize_for_vote("Paris", "text")
    assert normalize_for_vote("b", "choice") == "B"
    # one number in a text answer votes by value, as the math scorer reads it (3 answers split 1-1-1)
    assert (
        normalize_for_vote("\\frac{1}{2}", "text")
        == normalize_for_vote("0.50", "text")
        == normalize_for_vote("0.5", "text")
    )
    assert normalize_for_vote("1{,}000", "text") == normalize_for_vote("1000", "text")
    assert normalize_for_vote("x = 5", "text") != normalize_for_vote("5", "text")


def test_prose_mentioning_a_final_answer_is_not_a_marker() -> None:
    assert extract_answer("You cannot provide a final answer.", "text") == "You cannot provide a final answer."
    assert extract_answer("The final answer is 12", "number") == "12"


def test_boxed_text_is_unwrapped() -> None:
    assert extract_answer("Reasoning.\n\\boxed{\\text{Paris}}", "text") == "Paris"
    assert extract_answer("The final answer is: $\\boxed{x^2}$", "text") == "x^2"


def test_a_division_by_zero_is_a_vote_for_itself() -> None:
    # "Final answer: 1/0" from one sample raised ZeroDivisionError and failed the whole vote node
    assert normalize_for_vote("1/0", "number") == "1/0"
    assert normalize_for_vote("1/0", "number") != normalize_for_vote("1", "number")


def test_degenerate_completions_do_not_backtrack_for_minutes(in_a_child: Callable[[str], None]) -> None:
    """A small model's completion can end in thousands of blanks or backticks; patterns with two
    unbounded runs that match the same text side by side took 28 s (choice), 14 s (code), 1.9 s (the
    final-answer marker, on 20,000) on 50,000 of them, on the event loop running the graph; the
    sizes here would take minutes with the old patterns, milliseconds now."""
    program = """
from agentscale.agents.extract import extract_answer
assert extract_answer("answer" + " " * 200_000 + "1", "choice") is None
assert extract_answer("answer" + "\\n" * 200_000 + "is B", "choice") == "B"
assert extract_answer("1" + "\\n" * 200_000 + "/2", "code") is None
assert extract_answer("\\n" * 200_000 + "    def f(): pass", "code") == "def f(): pass\\n"
assert extract_answer("Final answer is" + "\\n" * 200_000, "number") is None
assert extract_answer("```x" * 200_000, "code") is None
assert extract_answer("`" * 400_000, "code") is None
from agentscale.tasks.scorers.normalize import normalize_text
assert normalize_text("42" + ")" * 400_000).startswith("42)")  # one pass (a loop took 16 s on 40,000)
assert normalize_text("- " * 400_000 + "x") and normalize_text("yes" + "!" * 400_000 + "x")
assert extract_answer("\\\\boxed{" * 100_000 + "7" + "}" * 100_000, "number") == "7"  # nested boxes: one slice
assert extract_answer("```python\\nprint(1)\\n```", "code") == "print(1)\\n"
from agentscale.agents.extract import normalize_for_vote
assert normalize_for_vote("1e1234567890", "number") == "inf"  # a Fraction of 10^1234567890 took the loop for good
assert normalize_for_vote("1e1234567890", "text") == "inf"
assert extract_answer("Final answer: is " + "1" * 200_000 + " apples", "number") == "1" * 200_000
"""
    in_a_child(program)


def test_a_helper_block_with_lone_carriage_returns_gives_whole_definitions() -> None:
    """The parser counts a lone carriage return as a line break; the lines cut from the block must too."""
    helper = "import math\rprint(1)\rdef helper(x):\r    return math.sqrt(x)\r\n"
    reply = f"```python\n{helper}```\n```python\ndef f(x):\n    return helper(x)\n```"
    assert (
        extract_answer(reply, "code")
        == "import math\n\ndef helper(x):\n    return math.sqrt(x)\n\ndef f(x):\n    return helper(x)\n"
    )


@pytest.mark.parametrize(
    ("reply", "answer_format", "reference"),
    [("Final answer: 3 or 4", "number", "3"), ("Final answer: A or C", "choice", "A")],
    ids=["number", "choice"],
)
def test_a_hedged_answer_is_scored_wrong_through_extraction(reply: str, answer_format: str, reference: str) -> None:
    """The scorers refuse "3 or 4" and "A or B", but the extractor passed on the first option, which
    then scored right (a scorer audit's)."""
    item = TaskItem(id="q", question="Which?", reference=reference, choices=["w", "x", "y", "z"])
    scorer = score_numeric if answer_format == "number" else score_choice
    assert not scorer(extract_answer(reply, answer_format), item).correct  # type: ignore[arg-type]


def test_unfenced_code_followed_by_prose_is_the_code() -> None:
    """A small model's reply of a definition, then a sentence about it, was a SyntaxError (a scorer audit's)."""
    reply = "Here it is:\ndef add(a, b):\n    return a + b\n\nThis function returns the sum.\nIt works for ints."
    assert extract_answer(reply, "code") == "def add(a, b):\n    return a + b\n"


@pytest.mark.parametrize(
    ("reply", "text", "number"),
    [
        ("The answer is Friday.", "Friday.", None),  # the whole reply before, which "Friday" never matched
        ("Counting the days...\n**Answer:** Friday", "Friday", None),
        ("my answer is: 42", "42", "42"),
        # "To answer:" states no answer: the reply's last number, and the whole reply, as before
        ("To answer: we add 3 and 4, so 7.", "To answer: we add 3 and 4, so 7.", "7"),
    ],
    ids=["sentence", "answer-line", "my-answer", "to-answer"],
)
def test_an_answer_stated_without_the_marker(reply: str, text: str, number: str | None) -> None:
    """Small models often write "The answer is X" instead of "Final answer: X" (a scorer audit's:
    reasoning-gym's calendar tasks scored 0/30 on "The answer is Friday.")."""
    assert extract_answer(reply, "text") == text
    assert extract_answer(reply, "number") == number


def test_a_boxed_mixed_number_on_the_marker_line_is_read_as_a_number() -> None:
    """E5: the box on a "Final answer:" line was unwrapped without the numeric reading: 2 1/2 became 21/2."""
    assert extract_answer("Final answer: \\boxed{2\\frac{1}{2}}", "number") == "5/2"
    assert extract_answer("The final answer is $\\boxed{2^{10}}$.", "number") == "1024"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("So the probability is \\boxed{\\frac{1}{3}}", "1/3"),
        ("Final answer: \\boxed{\\dfrac{2}{7}}", "2/7"),
        ("Final answer: \\boxed{\\tfrac{3}{8}}", "3/8"),
    ],
)
def test_a_latex_fraction_in_a_text_answer_keeps_numerator_over_denominator(reply: str, expected: str) -> None:
    """E12: swapping the fraction's groups (1/3 read as 3/1) passed every test: only number answers,
    which go through the numeric reader first, checked a fraction."""
    assert extract_answer(reply, "text") == expected


def test_prose_about_the_answer_after_a_lead_word_is_not_a_marker() -> None:
    """E7: the word right before the marker decides ("So this final answer is ..." is prose), not the
    line's first word."""
    reply = "Final answer: 252\nSo this final answer is consistent with the count above."
    assert extract_answer(reply, "text") == "252"
    assert extract_answer("Final answer: 12\nA quick check: the final answer is 15", "number") == "15"


def test_the_last_stated_answer_wins_without_a_marker() -> None:
    """E21: without a marker the *last* "the answer is" is taken (a reply correcting itself)."""
    reply = "The answer is 12, I first thought.\nAfter checking again, the answer is 15."
    assert extract_answer(reply, "number") == "15"
    assert (
        extract_answer("The answer is Monday at first sight.\nRechecking: the answer is Tuesday.", "text") == "Tuesday."
    )


def test_one_letter_repeated_is_no_hedge() -> None:
    """E22: "B or B" offers one option; only two different letters are passed on for the scorer to refuse."""
    assert extract_answer("Final answer: B or B", "choice") == "B"


def test_a_box_inside_a_box_is_part_of_the_outer_one() -> None:
    """E10: a nested box restarted the outer one's text: "\\boxed{\\boxed{5}}" gave "5}"."""
    assert extract_answer("So \\boxed{\\boxed{x+1}}", "text") == "\\boxed{x+1}"


def test_the_last_stated_pick_wins_without_a_marker() -> None:
    """E25: a reply that changes its mind ("I choose A ... the answer is C") is its last pick."""
    assert extract_answer("At first I choose A. On reflection, the answer is C.", "choice") == "C"
    assert extract_answer("Answer: B\nWait, B is wrong since 3 > 2. The correct option is D", "choice") == "D"


def test_without_a_stated_pick_the_last_lone_letter_is_the_answer() -> None:
    """E27: a reply that eliminates options and ends on its pick, with no marker or "answer is"."""
    assert extract_answer("B fails the first test, C fails the second; only D works.\nD", "choice") == "D"


def test_a_unittest_case_after_the_solution_is_no_solution() -> None:
    """E34: a TestCase not named Test* (`AddChecks(unittest.TestCase)`) was taken as the solution, with
    its `unittest.main()`, which exits the program that scores it."""
    solution = "def add(a, b):\n    return a + b\n"
    checks = (
        "import unittest\n\nclass AddChecks(unittest.TestCase):\n    def test_small(self):\n"
        "        self.assertEqual(add(1, 2), 3)\n\nunittest.main()\n"
    )
    assert extract_answer(f"```python\n{solution}```\nChecks:\n```python\n{checks}```", "code") == solution


def test_a_decorated_helper_is_joined_with_its_decorator() -> None:
    """E37: a helper class from an earlier block lost its `@dataclass` line (Point(1, 2): TypeError)."""
    helper = "from dataclasses import dataclass\n\n@dataclass\nclass Point:\n    x: int\n    y: int\n"
    solution = "def origin():\n    return Point(0, 0)\n"
    code = extract_answer(f"```python\n{helper}```\n```python\n{solution}```", "code")
    assert code == f"{helper}\n{solution}"


def test_a_rounded_decimal_votes_with_its_fraction() -> None:
    """E44: the docstring's promise: 0.333333333 votes with 1/3 (keys to 9 significant digits)."""
    from agentscale.agents.extract import normalize_for_vote

    assert normalize_for_vote("0.333333333", "number") == normalize_for_vote("1/3", "number")
    assert normalize_for_vote("0.666666667", "text") == normalize_for_vote("\\frac{2}{3}", "text")


def test_whole_numbers_vote_exactly() -> None:
    """E45: as floats, two 20-digit numbers are one vote; the existing vote test passes either way
    (the majority spelling hides it), so the key is checked itself."""
    from agentscale.agents.extract import normalize_for_vote

    assert normalize_for_vote("12345678901234567890", "number") != normalize_for_vote("12345678901234567891", "number")
    assert normalize_for_vote("12345678901234567890", "number") == "12345678901234567890"
