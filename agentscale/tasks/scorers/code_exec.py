"""Code scorer: assemble a test program from the model's code and run it in the sandbox.

Models answer a function-completion prompt in two ways: the body only (HumanEval's canonical
format) or a whole ``def entry_point(...)``, often with the imports and helpers again. Both are
accepted: when the code defines the entry point, the program is the prompt (it still provides imports
and helper functions such as HumanEval/10's ``is_palindrome``; its own stub is then redefined) followed
by the code; otherwise the code is taken as the body and appended to the prompt, re-indented if the
answer extractor stripped its indentation. The item's tests follow, then ``check(entry_point)``.

Item fields used: ``metadata['test']`` (a program, or a list of assert lines as MBPP's ``test_list``
has them; else the reference is the test code), ``metadata['prompt']`` (optional) and
``metadata['entry_point']`` (optional: without it the tests must call things themselves; with it,
``check(entry_point)`` runs when the tests define ``check``).
"""

from __future__ import annotations

import ast
import re
import textwrap

from agentscale.tasks.base import Score, Scorer, TaskItem
from agentscale.tasks.python_source import parse_python
from agentscale.tasks.sandbox import DEFAULT_LIMITS, SandboxLimits, run_python

# possessive blanks: after a fence opener, 20,000 blanks and no newline backtracked quadratically
_FENCE = re.compile(r"```[ \t]*+(?:python3?|py)?[ \t]*+\n(.*?)```", re.DOTALL | re.IGNORECASE)


def strip_fences(code: str, entry_point: str | None = None) -> str:
    """The code inside Markdown fences if there are any (the block defining the entry point first)."""
    blocks = _FENCE.findall(code)
    if not blocks:
        return code
    if entry_point:
        for block in blocks:
            if _defines(block, entry_point):
                return str(block)
    return str(max(blocks, key=len))


def _defines(code: str, name: str) -> bool:
    try:
        tree = parse_python(code)
    except SyntaxError:
        return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None
    return any(isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name for node in tree.body)


def _without_main_block(code: str) -> str:
    """The code without its top-level `if __name__ == "__main__":` blocks. The official HumanEval
    harness runs an answer with exec() in fresh globals, where such a block never runs; here the
    program runs as `__main__` (the tests may need it), so a correct solution with a demo reading
    input() failed on EOFError.

    >>> print(_without_main_block('def f():\\n    return 1\\nif __name__ == "__main__":\\n    print(f(input()))\\n'))
    def f():
        return 1
    <BLANKLINE>
    """
    try:
        tree = parse_python(code)
    except SyntaxError:
        return code
    # the line breaks the parser counts (str.splitlines also breaks at form feeds and U+2028, which may
    # sit in a string literal: the wrong lines were deleted)
    lines = code.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for node in reversed(tree.body):
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.end_lineno is not None:
            del lines[node.lineno - 1 : node.end_lineno]
    return "\n".join(lines)


def _is_main_test(test: ast.expr) -> bool:
    """`__name__ == "__main__"`, either way round."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = {ast.unparse(test.left), ast.unparse(test.comparators[0])}
    return sides == {"__name__", "'__main__'"}


def _imports_of(prompt: str) -> str:
    lines = [ln for ln in prompt.splitlines() if re.match(r"\s*(?:import|from)\s+\w", ln) and not ln[:1].isspace()]
    return "\n".join(lines)


def _as_body(code: str) -> str:
    """Indent a function body that lost its indentation (first code line at column 0)."""
    first = next((ln for ln in code.splitlines() if ln.strip()), "")
    if first[:1] in (" ", "\t"):
        return code
    return textwrap.indent(code, "    ")


def assemble_solution(code: str, *, prompt: str = "", entry_point: str | None = None) -> str:
    """The answer as a runnable module: prompt and code joined by the rules in the module docstring.

    Also what the tester role runs the question's stated examples against.
    """
    code = _without_main_block(strip_fences(code, entry_point))
    if entry_point and _defines(code, entry_point):
        try:
            parse_python(prompt)
            head = prompt
        except SyntaxError:
            head = _imports_of(prompt)
        return f"{head}\n\n{code}\n" if head.strip() else f"{code}\n"
    if prompt:
        return f"{prompt}{_as_body(code)}\n"
    return f"{code}\n"


# runs the tests' TestCase classes and fails unless every one of at least one test passed
_RUN_TEST_CASES = """
import unittest as __agentscale_unittest
__agentscale_result = __agentscale_unittest.main(module=__name__, argv=["tests"], exit=False, verbosity=0).result
if not __agentscale_result.wasSuccessful() or not __agentscale_result.testsRun:
    raise AssertionError(
        f"{len(__agentscale_result.failures)} failed and {len(__agentscale_result.errors)} raised "
        f"of {__agentscale_result.testsRun} unittest tests"
    )
"""


def build_program(code: str, *, test: str, prompt: str = "", entry_point: str | None = None) -> str:
    """The full program to run for one answer: the solution, the item's tests, then ``check()`` if
    they define it (plain asserts beside an entry point failed every answer on NameError: check),
    called with the entry point (`entry_point_of`: a `check` no one called passed every answer).
    `unittest.TestCase` tests are run, and must all pass: defined
    and never run they passed every answer, and run by their own `unittest.main()`, whose exit
    skipped the harness's pass mark, they failed every one."""
    if defines_test_case(test):
        test = _without_main_block(test) + _RUN_TEST_CASES
    program = assemble_solution(code, prompt=prompt, entry_point=entry_point) + f"\n\n{test}\n"
    if entry_point and _defines(test, "check"):
        program += f"\n\ncheck({entry_point})\n"
    return program


def _module(code: str) -> ast.Module | None:
    try:
        return parse_python(code)
    except SyntaxError:
        return None


_TOP_LEVEL_DEF = re.compile(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE)


def last_function(prompt: str) -> str | None:
    """The prompt's last top-level function: the one a function-completion prompt asks for (a prompt
    may end in a bare signature, which does not parse)."""
    names = _TOP_LEVEL_DEF.findall(prompt)
    return names[-1] if names else None


def entry_point_of(item: TaskItem) -> str | None:
    """The function the item's tests call: its `entry_point`, else, when its tests define a `check`
    that nothing calls, its prompt's last function."""
    given = item.metadata.get("entry_point") or None
    if given or not check_is_uncalled(tests_of(item)):
        return given
    return last_function(str(item.metadata.get("prompt", "")))


def check_is_uncalled(test: str) -> bool:
    """Whether the tests define `check` and no top-level statement calls it (HumanEval's form, whose
    harness calls `check(entry_point)`)."""
    tree = _module(test)
    if tree is None or not _defines(test, "check"):
        return False
    top_level = [node for node in tree.body if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    return not any(
        isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "check"
        for node in top_level
        for call in ast.walk(node)
    )


def defines_test_case(test: str) -> bool:
    """Whether the tests define a `unittest.TestCase` subclass."""
    tree = _module(test)
    return tree is not None and any(
        isinstance(node, ast.ClassDef)
        and any(ast.unparse(base) in ("unittest.TestCase", "TestCase") for base in node.bases)
        for node in tree.body
    )


UNCALLED_CHECK = (
    "the item's tests define check() but nothing calls it, and it names no function to call it with: "
    "give it an 'entry_point' (or a 'prompt' ending in the function's def)"
)
_TESTS = re.compile(r"\bassert\b|\bcheck\s*\(|\bunittest\b|\braise\b")


def tests_of(item: TaskItem) -> str:
    """The item's tests as a program: its `test` field, a list of lines joined (a list was scored as
    its own repr, a list literal that ran no assert: every answer passed), else its reference."""
    test = item.metadata.get("test", item.reference)
    return "\n".join(str(line) for line in test) if isinstance(test, list) else str(test)


def has_tests(program: str) -> bool:
    """Whether `program` tests anything (a reference "100" as the test program passed any answer)."""
    return _TESTS.search(program) is not None


def code_scorer(limits: SandboxLimits = DEFAULT_LIMITS) -> Scorer:
    """A scorer that runs each answer against its item's tests in a fresh sandbox."""

    def score_code(answer: str | None, item: TaskItem) -> Score:
        if answer is None or not answer.strip():
            return Score(False, "no answer")
        meta = item.metadata
        test = tests_of(item)
        if not has_tests(test):
            return Score(False, "the item has no tests to run (no 'test' field; its answer holds no assert or check)")
        entry_point = entry_point_of(item)
        if entry_point is None and check_is_uncalled(test):
            return Score(False, UNCALLED_CHECK)
        program = build_program(answer, test=test, prompt=str(meta.get("prompt", "")), entry_point=entry_point)
        result = run_python(program, limits=limits)
        if result.passed:
            return Score(True, f"tests passed in {result.duration_s:.2f}s")
        if result.timed_out:
            return Score(False, f"timed out after {limits.timeout_s:g}s")
        if (ended := result.ended_by()) is not None:
            return Score(False, f"killed by {ended}")
        last = result.stderr_tail.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        return Score(False, f"tests failed: {last[0][:300]}")

    return score_code


score_code = code_scorer()
