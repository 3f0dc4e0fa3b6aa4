"""Program assembly for code answers and the code scorer on a small hand-written item."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentscale.tasks import TaskItem
from agentscale.tasks.sandbox import SandboxLimits
from agentscale.tasks.scorers import build_program, code_scorer, score_code
from agentscale.tasks.scorers.code_exec import strip_fences

PROMPT = '''import math


def _helper(x: int) -> int:
    return x * 2


def double_sqrt(x: int) -> float:
    """Return 2 * sqrt(x) using _helper."""
'''
TEST = """
def check(candidate):
    assert candidate(4) == 4.0
    assert candidate(9) == 6.0
"""
ITEM = TaskItem(
    id="t/0",
    question=PROMPT,
    reference="    return _helper(1) * math.sqrt(x)\n",
    metadata={"prompt": PROMPT, "test": TEST, "entry_point": "double_sqrt"},
)

BODY = "    return _helper(1) * math.sqrt(x)\n"
UNINDENTED_BODY = "return _helper(1) * math.sqrt(x)\n"
FULL_FUNCTION = "def double_sqrt(x):\n    return _helper(1) * math.sqrt(x)\n"
FULL_WITH_IMPORTS = "import math\n\ndef double_sqrt(x: int) -> float:\n    return 2 * math.sqrt(x)\n"
FENCED = "Here you go:\n```python\ndef double_sqrt(x):\n    return 2 * math.sqrt(x)\n```\nDone."
# a demo reading stdin under a main guard: the official harness never runs it (exec in fresh globals);
# run as __main__ here, it failed a right answer on EOFError
WITH_MAIN = FULL_FUNCTION + 'if __name__ == "__main__":\n    print(double_sqrt(float(input())))\n'
# U+2028 in a string literal is no line break to the parser: the lines after it were deleted instead
WITH_MAIN_AND_SEPARATOR = (
    'def double_sqrt(x):\n    s = "a\u2028b"\n    return 2 * math.sqrt(x)\n' + WITH_MAIN[len(FULL_FUNCTION) :]
)


@pytest.mark.parametrize(
    "answer", [BODY, UNINDENTED_BODY, FULL_FUNCTION, FULL_WITH_IMPORTS, FENCED, WITH_MAIN, WITH_MAIN_AND_SEPARATOR]
)
def test_correct_answers_in_every_shape_pass(answer: str) -> None:
    score = score_code(answer, ITEM)
    assert score.correct, score.detail


@pytest.mark.parametrize(
    "answer",
    [
        "    return math.sqrt(x)\n",
        "def double_sqrt(x):\n    return x\n",
        "    pass\n",
        "def double_sqrt(x:\n",
        "def something_else(x):\n    return 2 * math.sqrt(x)\n",
        "import sys\nsys.exit(0)\n",
        "    import os; os._exit(0)\n",
    ],
)
def test_wrong_answers_fail(answer: str) -> None:
    score = score_code(answer, ITEM)
    assert not score.correct
    assert score.detail.startswith("tests failed")


def test_full_function_program_keeps_prompt_helpers() -> None:
    program = build_program(FULL_FUNCTION, test=TEST, prompt=PROMPT, entry_point="double_sqrt")
    assert program.index("def _helper") < program.index("def double_sqrt(x):") < program.index("check(double_sqrt)")


def test_unindented_body_is_indented() -> None:
    program = build_program(UNINDENTED_BODY, test=TEST, prompt=PROMPT, entry_point="double_sqrt")
    assert '"""\n    return _helper(1)' in program


def test_unparseable_prompt_falls_back_to_its_imports() -> None:
    prompt = "from math import sqrt\ndef f(x:\n"  # not valid Python on its own
    program = build_program("def f(x):\n    return sqrt(x)\n", test="", prompt=prompt, entry_point="f")
    assert program.startswith("from math import sqrt\n\ndef f(x):")


def test_strip_fences_prefers_the_block_defining_the_entry_point() -> None:
    """The block defining the entry point wins over a longer one: taken by length, a usage example
    longer than the solution became the program, and the item failed on a NameError."""
    text = "```python\nprint('usage')\n```\n```py\ndef f():\n    return 1\n```"
    assert strip_fences(text, "f").startswith("def f()")
    example = "```python\n# usage: call f() and print what it returns\nresult = f()\nprint(result, 'expected 1')\n```\n"
    solution = "```python\ndef f():\n    return 1\n```"
    assert strip_fences(example + solution, "f") == "def f():\n    return 1\n"
    assert strip_fences("no fences") == "no fences"


def test_code_task_without_entry_point_runs_reference_as_tests() -> None:
    item = TaskItem(id="j", question="write add(a, b)", reference="assert add(2, 3) == 5\n")
    assert score_code("def add(a, b):\n    return a + b\n", item).correct
    assert not score_code("def add(a, b):\n    return a - b\n", item).correct


def test_timeout_is_reported() -> None:
    scorer = code_scorer(SandboxLimits(timeout_s=1.0))
    score = scorer("    while True:\n        pass\n", ITEM)
    assert not score.correct and "timed out" in score.detail


def test_an_unfinished_fence_of_blanks_does_not_backtrack_for_minutes(in_a_child: Callable[[str], None]) -> None:
    # an opener then 20,000 blanks took 0.24 s with the old pattern, growing with the square
    in_a_child(
        "from agentscale.tasks.scorers.code_exec import strip_fences\n"
        "code = 'def f():\\n    return 1\\n```' + ' ' * 1_000_000 + 'x'\n"
        "assert strip_fences(code) == code\n"
    )


UNITTEST = "import unittest\nclass T(unittest.TestCase):\n    def test_one(self):\n        self.assertEqual(f(), 1)\n"
UNITTEST_MAIN = UNITTEST + "\n\nif __name__ == '__main__':\n    unittest.main()\n"
UNCALLED_CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n"


@pytest.mark.parametrize(
    ("metadata", "right", "wrong"),
    [  # defined and never run, a TestCase and a check() passed every answer; run by its own main(), whose
        # exit skipped the pass mark, a TestCase failed every one
        ({"test": UNITTEST}, "def f():\n    return 1\n", "def f():\n    return 0\n"),
        ({"test": UNITTEST_MAIN}, "def f():\n    return 1\n", "def f():\n    return 0\n"),
        ({"test": UNCALLED_CHECK, "prompt": "def add(a, b):\n"}, "    return a + b\n", "    return 0\n"),
        (
            {"test": UNCALLED_CHECK, "prompt": 'def add(a, b):\n    """Sum."""\n'},
            "    return a + b\n",
            "    return 0\n",
        ),
    ],
)
def test_tests_defined_but_not_called_by_the_item_are_run(metadata: dict[str, str], right: str, wrong: str) -> None:
    item = TaskItem(id="t/1", question="Write it.", reference="", metadata=metadata)
    assert score_code(right, item).correct, score_code(right, item).detail
    wrong_score = score_code(wrong, item)
    assert not wrong_score.correct and "passed" not in wrong_score.detail


def test_a_check_nothing_calls_with_no_function_to_call_it_with_fails_every_answer() -> None:
    item = TaskItem(id="t/2", question="Write add.", reference="", metadata={"test": UNCALLED_CHECK})
    score = score_code("def add(a, b):\n    return a + b\n", item)
    assert not score.correct and "nothing calls it" in score.detail and "entry_point" in score.detail


def test_a_test_case_class_without_tests_passes_no_answer() -> None:
    item = TaskItem(
        id="t/3",
        question="q",
        reference="",
        metadata={"test": "import unittest\nclass T(unittest.TestCase):\n    pass\n"},
    )
    assert not score_code("def f():\n    return 1\n", item).correct


TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n\ncheck(add)\n"


def test_tests_that_call_check_themselves_need_no_entry_point() -> None:
    """(A mutation audit: a one-line change to `if _defines(test, "check"):` survived every test.) An item whose tests
    define `check` and call it themselves, with no `entry_point` (a JSONL file written that way is accepted), then
    gets a trailing `check(None)`: a user would see every answer, the right ones included, scored wrong ("tests
    failed: TypeError: 'NoneType' object is not callable")."""
    item = TaskItem(id="x", question="Write add(a, b).", reference="", metadata={"test": TESTS})
    right = score_code("def add(a, b):\n    return a + b\n", item)
    assert right.correct, right.detail
    assert not score_code("def add(a, b):\n    return a - b\n", item).correct
