"""The tester role: run each candidate program on the examples stated in the question, pass on the best.

Function-completion questions (HumanEval-style) state examples in their docstring: doctest lines
(``>>> f(1)`` then the expected output) or example calls (``f(1) == 2``, ``f(1) ➞ 2``, ``f(1) => 2``,
``f(1) returns 2``). These, and only these, are what the tester runs: never an item's hidden tests,
which the question does not contain. Each candidate runs in the same sandbox as `eval`'s code scorer,
so a hostile candidate is contained the same way; the one that passes the most examples is passed on,
ties going to the majority among the tied (then to the first finished). Small models often write
several plausible programs of which one is right: executing the stated examples separates them where
a vote cannot (syntactically different programs rarely agree textually).
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import secrets
from dataclasses import dataclass

from agentscale.agents.extract import normalize_for_vote
from agentscale.tasks.python_source import literal_value, parse_expression
from agentscale.tasks.sandbox import SandboxLimits, in_worker_thread, run_python
from agentscale.tasks.scorers.code_exec import assemble_solution, last_function

_TESTER_LIMITS = SandboxLimits(timeout_s=5.0)
_ARROWS = ("==>", "==", "=>", "➞", "->", "→", "should return", "returns", "return", "=")


@dataclass(frozen=True)
class Example:
    """One stated example: a call and its expected value (source text of Python expressions)."""

    call: str
    expected: str


@dataclass(frozen=True)
class Verdict:
    """How one candidate did: examples passed, and whether its code ran at all."""

    passed: int
    ran: bool


def _call_at(text: str, start: int) -> int | None:
    """End index of the balanced call whose name starts at ``start`` (None if unbalanced)."""
    depth = 0
    quote: str | None = None
    for index in range(text.index("(", start), len(text)):
        char = text[index]
        if quote:
            if char == quote and text[index - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index + 1
    return None


_JSON_WORDS = {"true": "True", "false": "False", "null": "None"}


def _literal(source: str) -> str | None:
    """``source`` if it is a Python literal (docstrings also write JSON's true/false), else None.

    Literals only: a line such as ``fib4(n) -> fib4(n-1) + fib4(n-2)`` defines, it does not exemplify.
    """
    source = _JSON_WORDS.get(source, source)
    try:
        literal_value(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return source


def _literal_call(call: str) -> bool:
    """A call whose arguments are all literals (``is_happy(a)`` names no value it could be run with)."""
    try:
        node = parse_expression(call)
    except SyntaxError:
        return False
    if not isinstance(node, ast.Call):
        return False
    arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
    return all(_literal(ast.unparse(argument)) is not None for argument in arguments)


def _expected_after(rest: str) -> str | None:
    """The expected value in what follows a call on its line (``== 2``, ``➞ 2``, ``returns 2.``)."""
    rest = rest.strip()
    for arrow in _ARROWS:
        if rest.startswith(arrow):
            return _literal(rest[len(arrow) :].strip().rstrip(".,;"))
    return None


def stated_examples(question: str) -> list[Example]:
    """Examples of the entry point stated in the question, in order, each at most once.

    A call stated with two different results (a definition next to an example) is dropped.
    """
    name = last_function(question)
    if name is None:
        return []
    lines = question.splitlines()
    found: list[Example] = []
    for index, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith(("def ", "async def ")):
            continue
        doctest = line.startswith(">>>")
        body = line[3:].strip() if doctest else line
        match = re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", body)
        if match is None:
            continue
        end = _call_at(body, match.start())
        if end is None:
            continue
        call = body[match.start() : end]
        if doctest and match.start() == 0 and end == len(body.rstrip()):
            following = lines[index + 1].strip() if index + 1 < len(lines) else ""
            expected = _literal(following) if following and not following.startswith(">>>") else None
        else:
            expected = _expected_after(body[end:])
        if expected is not None and _literal_call(call):
            example = Example(call, expected)
            if example not in found:
                found.append(example)
    contradicted = {e.call for e in found if any(o.call == e.call and o.expected != e.expected for o in found)}
    return [e for e in found if e.call not in contradicted]


_CANDIDATE = "candidate.py"


def _harness(examples: list[Example]) -> str:
    """The program the sandbox runs: it binds what it needs before the candidate runs (the candidate's
    module may redefine `print`, `eval` or patch `builtins`: a redefined `print` crashed the whole eval
    on its output, and a redefined `eval` passed every example), runs the candidate, tries every
    example in its namespace, and writes the count on a line of its own (a candidate's output without
    a trailing newline hid it, and the candidate did not run). The token comes on stdin, read before
    the candidate runs: written into this program's file, a candidate read it there and claimed every
    example (a security review). The candidate runs in this interpreter, so code that walks its call
    stack up to these globals can still claim every example (a mutation audit): no more than a program
    that special-cases the examples the question shows it can do. The tester picks among programs
    written to solve the question; it is no proof against one written to fool it."""
    checks = json.dumps([[e.call, e.expected] for e in examples])
    return f"""\
import builtins, os, runpy, sys
_token = sys.stdin.readline().strip()
_eval, _float, _abs, _max, _isinstance, _str = builtins.eval, float, abs, max, isinstance, str
_write, _TypeError, _ValueError, _BaseException = os.write, TypeError, ValueError, BaseException


def _same(got, want):
    if got == want:
        return True
    if _isinstance(got, _float) or _isinstance(want, _float):
        try:
            return _abs(_float(got) - _float(want)) <= 1e-6 * _max(1.0, _abs(_float(want)))
        except (_TypeError, _ValueError):
            return False
    return False


_namespace = runpy.run_path({_CANDIDATE!r}, run_name="__main__")
_passed = 0
for _call, _want in {checks}:
    try:
        if _same(_eval(_call, _namespace), _eval(_want, {{}})):
            _passed += 1
    except _BaseException:
        pass
_write(1, ("\\n" + _token + " " + _str(_passed) + "\\n").encode())
"""


def run_candidate(code: str, question: str, examples: list[Example]) -> Verdict:
    """Run one candidate in the sandbox; a crash, a timeout or a syntax error passes nothing, and no
    output of the candidate's can claim more examples than there are."""
    token = f"__agentscale_examples_{secrets.token_hex(8)}"
    candidate = assemble_solution(code, prompt=question, entry_point=last_function(question))
    result = run_python(
        _harness(examples), limits=_TESTER_LIMITS, extra_files={_CANDIDATE: candidate}, stdin=token + "\n"
    )
    for line in reversed(result.stdout_tail.splitlines()):
        words = line.split()
        if len(words) == 2 and words[0] == token and words[1].isdigit():
            return Verdict(min(int(words[1]), len(examples)), ran=True)
    return Verdict(0, ran=False)


def choose(answers: list[str], verdicts: list[Verdict]) -> int:
    """Index of the answer to pass on: most examples passed, then ran at all, then majority, then first."""
    best = max((v.passed, v.ran) for v in verdicts)
    tied = [i for i, v in enumerate(verdicts) if (v.passed, v.ran) == best]
    keys = [normalize_for_vote(answers[i], "code") for i in tied]
    top = max(keys.count(key) for key in keys)
    return next(i for i, key in zip(tied, keys, strict=True) if keys.count(key) == top)


async def passes_stated_examples(question: str, answer: str) -> bool | None:
    """Whether a program passes every example the question states; None when it states none (nothing
    to check). A discussion's stop guard asks this of the answer its CEO wants to stop on."""
    examples = stated_examples(question)
    if not examples:
        return None
    verdict = await in_worker_thread(run_candidate, answer, question, examples)
    return verdict.passed == len(examples)


async def pick_tested(question: str, answers: list[str]) -> tuple[str | None, str]:
    """The best candidate by the stated examples, and a one-line-per-candidate report for the trace."""
    if not answers:
        return None, "no candidates"
    examples = stated_examples(question)
    verdicts = await asyncio.gather(*(in_worker_thread(run_candidate, a, question, examples) for a in answers))
    chosen = choose(answers, list(verdicts))
    lines = [
        f"Candidate {i}: {v.passed}/{len(examples)} stated examples passed" + ("" if v.ran else " (did not run)")
        for i, v in enumerate(verdicts, start=1)
    ]
    lines.append(f"Passed on: candidate {chosen + 1}")
    return answers[chosen], "\n".join(lines)
