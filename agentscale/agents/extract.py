"""Answer extraction: turn a completion into the answer that is passed on, voted on and scored.

Role prompts ask for a closing "Final answer: ..." line; extractors prefer that marker and fall back
to format-specific heuristics, because small models often forget it.
"""

from __future__ import annotations

import ast
import builtins
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from agentscale.graphs.spec import AnswerFormat
from agentscale.tasks.python_source import parse_python
from agentscale.tasks.scorers.normalize import normalize_text
from agentscale.tasks.scorers.numeric import plain_numbers

# Completions are arbitrary text, often a small model's thousands of blanks or backticks, and these
# patterns run on the loop that runs the graph: no two unbounded runs that can match the same text
# side by side (such patterns backtracked for seconds: 28 s on 50,000 blanks, 1.9 s on 20,000).
# "Final answer: X" or "final answer is X" (X on the marker's line, else the paragraph below it);
# a bare "a final answer." is prose, not a marker
_FINAL = re.compile(r"final\s+answer[ \t]*(?:is[ \t]*(?:[:：][ \t]*)?|[:：][ \t]*)([^\n]*)", re.IGNORECASE)
# a marker after one of these words is prose about an answer ("This final answer is consistent with
# ..."), not a statement of it; after others it is one ("Actually, the final answer is 15")
_NOT_MARKER_AFTER = frozenset(["this", "that", "a", "an", "no", "any", "your", "each", "every", "his", "her", "their"])
_WORD = re.compile(r"[a-z]+")
# "3 + 4 = 7", "3 x 4 = 12": an arithmetic expression, then its result (not "5 (when x = 2)" or "42 = 6 x 7")
_EQUATION = re.compile(
    r"\s*(?:[-+]?\(?\d[\d.,]*\)?[ \t]*(?:[-+*/×÷x]|\\times|\\cdot)[ \t]*)+[-+]?\(?\d[\d.,]*\)?[ \t]*="
)
# a row of a grid or a list has no word of two letters or more (an answer's first line, then its rows)
_TWO_LETTERS = re.compile(r"[A-Za-z]{2}")
_NUMBER = re.compile(r"[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?%?")
_CHOICE = re.compile(r"(?:^|[\s(\[*])([A-J])(?:[)\].:,*]|\s|$)")
# an info string holds no backtick (CommonMark), so a line of backticks cannot open a fence at each
_CODE_BLOCK = re.compile(r"```[ \t]*+([A-Za-z0-9_+-]*+)[^\n`]*+\n(.*?)```", re.DOTALL)
# "answer is b", "answer: (C)", "Answer C", "**Answer:** B"; not "to answer a question" (lower case,
# no "is" or colon)
_EXPLICIT_CHOICE = re.compile(
    r"(?i:answer)[\s*]*+(?:(?i:is)\b[\s*]*+(?::[\s*]*+)?\(?([A-Ja-j])|:[\s*]*+\(?([A-Ja-j])|\(?([A-J]))\b"
)
# a pick stated without "answer is": "the correct option is (B)", "the answer must be C", "I choose B",
# "C is correct" (not "is incorrect", "is not correct")
_STATED_CHOICE = re.compile(
    r"(?i:option|choice|answer)[ \t*]*+(?:is|must[ \t]+be|would[ \t]+be|should[ \t]+be)[ \t*]*+\(?([A-J])\b"
    r"|(?i:choose|select|pick|go[ \t]+with)[ \t*]*+(?:option[ \t]+)?\(?([A-J])\b"
    r"|(?<![\w(])([A-J])\)?[ \t]+is[ \t]+(?:the[ \t]+)?(?i:correct|right|best)\b"
)
# two options offered as one answer: "A or C", "(A) and (C)", "A, C", "A/C"
_CHOICE_HEDGE = re.compile(r"[ \t*(]*+([A-J])\)?[ \t*]*+(?:or|and|,|/)[ \t*(]*+([A-J])\b")
# after a capital A or I, a lower-case word: the article or the pronoun ("A bicycle", "I think")
_ARTICLE = re.compile(r"[ \t]+[a-z]")
# "I" before these is the pronoun ("I believe it is C"), not option I
_PRONOUN_I = re.compile(
    r"[ \t]+(?:think|believe|guess|would|will|am|choose|select|pick|feel|say|conclude|suppose|'[a-z]+)\b"
)
# what parsing a reply as Python raises: not Python, a NUL byte, nesting too deep for the parser
_UNPARSABLE = (SyntaxError, ValueError, RecursionError, MemoryError)
_CODE_LINE = re.compile(r"^[ \t]*(def|class|import|from)\s", re.MULTILINE)
# unfenced code: how many lines of prose before its first definition are tried away, and up to what
# size of reply (each try parses the rest)
_PROSE_LINES, _PARSED_CHARS = 10, 100_000
_DEFINITION = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]", re.MULTILINE)


def _final_marker(text: str, *, numeric: bool = False) -> str | None:
    r"""Content after the last 'Final answer:' marker, or of the last \boxed{...} (LaTeX unwrapped).

    A marker in prose about an answer ("This final answer is ...") does not replace the one before
    it; an answer that starts on the line below its marker is that line, with the rows of a grid or
    a list below it (its first row alone was taken).

    >>> _final_marker("Final answer: 252\nThis final answer is consistent with the count above.")
    '252'
    >>> _final_marker("Final answer: 12\n\nActually, the final answer is 15.")
    '15.'
    >>> _final_marker("**Final answer:**\n1 2\n3 4\n\nRotated once.")
    '1 2\n3 4'
    >>> _final_marker("Final answer:\nParis\nThe capital of France is Paris.")
    'Paris'
    """
    matches = list(_FINAL.finditer(text))
    if matches:
        match = ([m for m in matches if _states_answer(text, m.start())] or matches)[-1]
        value = match.group(1).strip().strip("*").strip() or _below(text, match.end())
        value = value.strip().strip("*").strip()
        if value:
            boxed_in_line = boxed_contents(value)
            return _unlatex(boxed_in_line[-1], numeric=numeric) if boxed_in_line else value
    boxed = boxed_contents(text)
    if boxed:
        return _unlatex(boxed[-1], numeric=numeric)
    return None


def _states_answer(text: str, start: int) -> bool:
    """Whether the marker at `start` states an answer: not after "this", "a", "no", ... on its line."""
    prefix = text[max(text.rfind("\n", 0, start) + 1, start - 40) : start].lower()
    words = _WORD.findall(prefix)
    return not words or words[-1] not in _NOT_MARKER_AFTER


def _below(text: str, position: int) -> str:
    """The answer below a marker: the first box after it (a display `\\[ \\boxed{...} \\]`), else its
    first line that is not a math delimiter, with the lines right below it while they and it read
    as rows (of a grid, a list: no word of two letters or more)."""
    rest = text[position:]
    boxed = boxed_contents(rest[:_BOX_LOOKAHEAD])
    if boxed:
        return f"\\boxed{{{boxed[0]}}}"
    lines = [line for line in rest.lstrip("\r\n").split("\n") if line.strip() not in _MATH_DELIMITERS]
    if not lines:
        return ""
    block = [lines[0].rstrip()]
    if not _TWO_LETTERS.search(block[0]):
        for line in lines[1:]:
            if not line.strip() or _TWO_LETTERS.search(line):
                break
            block.append(line.rstrip())
    return "\n".join(block)


def boxed_contents(text: str) -> list[str]:
    r"""What every outermost \boxed{...} holds, braces nested to any depth (`\boxed{2^{10}}`, a JSON
    object), in order; found in one pass, so a reply of unclosed or nested boxes costs no more than its
    length (a box inside a box is part of the outer one's text, not an answer of its own).

    >>> boxed_contents(r'\boxed{\frac{1}{2^{3}}} and \boxed{{"a": 1}}')
    ['\\frac{1}{2^{3}}', '{"a": 1}']
    """
    found: list[str] = []
    opened: list[bool] = []  # for each "{" still open, whether it opens a box
    boxes_open = start = 0
    for index, char in enumerate(text):
        if char == "{":
            is_box = text.endswith("\\boxed", 0, index)
            if is_box and not boxes_open:
                start = index
            opened.append(is_box)
            boxes_open += is_box
        elif char == "}" and opened and opened.pop():
            boxes_open -= 1
            if not boxes_open:
                found.append(text[start + 1 : index])
    return found


_BOX_LOOKAHEAD = 2000  # how far below a marker its boxed answer may stand
_MATH_DELIMITERS = frozenset(["\\[", "\\]", "$$"])
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_LATEX_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def _unlatex(value: str, *, numeric: bool = False) -> str:
    """Plain text of a boxed answer: fractions as a/b, \\text{} unwrapped, $ and spacing commands gone.
    Expressions are kept as written (`42*(30-4-23)`, `(-1)^{2}`); `numeric`: the answer is a number,
    read as the numeric scorer reads it (`2\\frac{1}{2}` is 5/2, `2^{10}` is 1024)."""
    if numeric:
        value = plain_numbers(value)
    value = _LATEX_FRACTION.sub(r"\1/\2", value)
    value = _LATEX_WRAPPER.sub(r"\1", value)
    for token in ("\\$", "\\%", "\\!", "\\,", "\\;", "^\\circ", "^{\\circ}", "$"):
        value = value.replace(token, "")
    return value.strip()


def extract_text(text: str) -> str | None:
    """After the marker; else after the last "The answer is" (or a line's "Answer:") on its line ("The
    answer is Friday." was the whole reply, which an exact reference never matched); else the reply."""
    marked = _final_marker(text)
    if marked is not None:
        return marked
    stated = _stated_answer(text, _holds_text)
    if stated is not None:
        return stated.strip(" \t*:")
    stripped = text.strip()
    return stripped or None


def _clean_number(raw: str) -> str:
    value = raw.replace(",", "").replace(" ", "")
    if "/" in value:
        return value
    if re.fullmatch(r"[-+]?\d+\.0+", value):
        value = value.split(".")[0]
    return value.lstrip("+")


def extract_number(text: str) -> str | None:
    """The number after the marker (of an equation there, its result); else, without a marker, after
    the last "the answer is" or "Answer:" on its line ("The answer is 12. We checked 3 cases." read 3);
    else the last number of the reply. Two numbers offered as one answer ("Final answer: 3 or 4",
    "between 3 and 4") are passed on as written, for the scorer to refuse: the first counted as the
    answer, right when it was the reference, and a vote for it."""
    marked = _final_marker(text, numeric=True)
    for candidate in (marked,) if marked else (_stated_answer(text, _holds_number),):
        if candidate:
            equation = _equation(candidate)
            if equation and _NUMBER.search(candidate, equation.end()):  # "3 + 4 = 7": its result
                candidate = candidate[equation.end() :]
            plain = plain_numbers(candidate)
            if _HEDGE.match(plain):
                return candidate.strip()
            numbers = _NUMBER.findall(plain)
            if numbers:
                return _clean_number(numbers[0])
    numbers = _NUMBER.findall(plain_numbers(text))
    return _clean_number(numbers[-1]) if numbers else None


# "The answer is 12", "my answer is 12", a line "Answer: 12": an answer stated without the marker (not
# "To answer: we add 3 and 4, so 7", where the last number is the answer)
_ANSWER_STATED = re.compile(r"^[ \t*#>-]*+answer[ \t*]*+:|\b(?:the|my)[ \t]++answer[ \t]++is\b", re.I | re.M)
# two numbers where one is asked for: "3 or 4", "either 3 or 4", "between 3 and 4", "3, 4", "3 to 4"
_WHOLE_NUMBER = rf"\$?(?>{_NUMBER.pattern})"  # atomic: "1,234" is one number, not "1" and "234"
_HEDGE = re.compile(
    rf"[ \t*]*+(?:(?:between|either|from)[ \t]++)?{_WHOLE_NUMBER}[ \t*]*+(?:or|and|to|,|–)[ \t]*+{_WHOLE_NUMBER}",
    re.IGNORECASE,
)


_WORDS_BEFORE_EQUATION = 200


def _equation(answer: str) -> re.Match[str] | None:
    """An equation the answer opens with, or that follows words only ("The total is 5 + 7 = 12"
    read 5); not one after a number ("10 (3 + 4 = 7 plus 3)" is 10)."""
    opening = _EQUATION.match(answer)
    if opening:
        return opening
    found = _EQUATION.search(answer[:_WORDS_BEFORE_EQUATION])  # each start retried: a window, not a line of digits
    return found if found and not any(c.isdigit() for c in answer[: found.start()]) else None


def _stated_answer(text: str, holds: Callable[[str], bool]) -> str | None:
    """What follows the last "the answer is" (or a line's "Answer:") whose line `holds` an answer, to
    its line's end."""
    for match in reversed(list(_ANSWER_STATED.finditer(text))):
        end = text.find("\n", match.end())
        line = text[match.end() : end if end != -1 else len(text)]
        if holds(line):
            return line
    return None


def _holds_number(line: str) -> bool:
    return _NUMBER.search(plain_numbers(line)) is not None


def _holds_text(line: str) -> bool:
    return bool(line.strip(" \t*:"))


def extract_choice(text: str) -> str | None:
    """The option letter: after the marker, the first letter that reads as an option (in "I believe
    it is C", the pronoun "I" is not), or two letters offered as one answer ("A or C") as written,
    for the scorer to refuse; else the last pick stated ("answer is X", "answer: X", "Answer X",
    "the correct option is X", "I choose X", "X is correct"); else the last letter standing alone
    that is not the article A or the pronoun I ("B. A bicycle": B); else, for an answer given as the
    option's text ("Final answer: Rome", a reply of one line), that text, which the choice scorer
    matches against the options (it was no answer)."""
    marked = _final_marker(text)
    if marked:
        hedge = _CHOICE_HEDGE.match(marked)
        if hedge and hedge.group(1) != hedge.group(2):  # "A or C" was A: right when A was the reference
            return marked.strip()
        padded = " " + marked
        found = list(_CHOICE.finditer(padded))
        options = [m for m in found if not _is_word(padded, m)]
        if options or found:
            return (options or found)[0].group(1)
    stated = sorted(
        (m.start(), next(letter for letter in m.groups() if letter))
        for pattern in (_EXPLICIT_CHOICE, _STATED_CHOICE)
        for m in pattern.finditer(text)
    )
    if stated:
        return stated[-1][1].upper()
    found_all = list(_CHOICE.finditer(text))
    if found_all:  # the last letter standing alone, unless it is the article or the pronoun ("B. A bicycle")
        letters = [m for m in found_all if not (m.group(1) in "AI" and _ARTICLE.match(text, m.end(1)))]
        return (letters or found_all)[-1].group(1)
    # an option's words after a marker, or alone (a long option quoted whole is right; a line of prose
    # such as "I'm not sure which it is" then enters a vote, where it can only win a tie)
    answer = marked or text.strip()
    return answer if answer and "\n" not in answer and len(answer) <= _OPTION_TEXT_CHARS else None


_OPTION_TEXT_CHARS = 200  # a longer line without a letter is prose, not an option's text


def _is_word(text: str, match: re.Match[str]) -> bool:
    return match.group(1) == "I" and _PRONOUN_I.match(text, match.end(1)) is not None


def extract_code(text: str) -> str | None:
    """The code of a reply: its last fenced block that defines something other than a test or a demo
    (a usage example, a `def test_add()` or a `def main()` after the solution replaced it: right
    answers failed), after the definitions it reads from earlier blocks (`_with_what_it_uses`: a
    helper, an import in a block of its own); else its last block; without fences, the text from the
    first line from which it parses as Python (prose before it was a SyntaxError; constants, imports
    in a try block, decorators before the first definition are code), else from that definition."""
    blocks = _CODE_BLOCK.findall(text)
    if blocks:
        python = [body for lang, body in blocks if lang.lower() in ("python", "py", "python3")]
        pool = python or [body for _, body in blocks]
        chosen = _with_what_it_uses(pool)
        return chosen.rstrip() + "\n" if chosen.strip() else None
    if _CODE_LINE.search(text):
        return _from_first_code_line(text.strip()) + "\n"
    return None


def _with_what_it_uses(blocks: list[str]) -> str:
    """The solution among fenced `blocks` (see `extract_code`), after the definitions it reads from
    earlier blocks: each top-level function, class, import or assignment there that binds a name the
    solution (or a definition so taken) reads and binds nowhere; nothing else of those blocks (their
    prints, asserts, loops, other variables). A parameter's name is bound, a built-in's is not taken
    (a walk-through's `min = float('inf')` shadowed min())."""
    defining = [index for index, body in enumerate(blocks) if _DEFINITION.search(body)]
    if not defining:
        return blocks[-1]
    names = [_BlockNames.of(body) for body in blocks]
    chosen = ([index for index in defining if names[index].solutions] or defining)[-1]
    needed = set(names[chosen].free)
    kept = [blocks[chosen].rstrip()]
    for index in range(chosen - 1, -1, -1):
        taken: set[int] = set()
        while True:
            more = {i for i, d in enumerate(names[index].definitions) if i not in taken and d.names & needed}
            if not more:
                break
            taken |= more
            for i in more:
                needed |= names[index].definitions[i].free
        if taken:
            chosen_here = [d for i, d in enumerate(names[index].definitions) if i in taken]
            kept.insert(0, "\n\n".join(d.source for d in chosen_here))
            needed -= {name for d in chosen_here for name in d.names}
    return "\n\n".join(kept)


@dataclass(frozen=True)
class _Definition:
    """One top-level statement of a block that binds names: a function, class, import or assignment."""

    names: frozenset[str]
    free: frozenset[str]  # what it reads and binds nowhere, built-ins aside
    source: str


@dataclass(frozen=True)
class _BlockNames:
    """What one fenced block of a reply defines and reads (empty when it does not parse)."""

    solutions: frozenset[str] = frozenset()  # its functions and classes that are not a test or a demo
    definitions: tuple[_Definition, ...] = ()
    free: frozenset[str] = frozenset()  # names it reads and binds nowhere (parameters and locals are bound)

    @classmethod
    def of(cls, code: str) -> _BlockNames:
        try:
            tree = parse_python(code)
        except _UNPARSABLE:
            return cls()
        # the line breaks the parser counts (a lone carriage return is one): lines[n - 1] is line n
        lines = code.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        solutions: set[str] = set()
        definitions: list[_Definition] = []
        for node in tree.body:
            bound = _bound_at_top(node)
            if not bound:
                continue
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and not _is_test_or_demo(node):
                solutions.add(node.name)
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            source = "\n".join(lines[first - 1 : node.end_lineno])
            definitions.append(_Definition(frozenset(bound), _free_names(node), source))
        return cls(frozenset(solutions), tuple(definitions), _free_names(tree))


def _bound_at_top(node: ast.stmt) -> set[str]:
    """The names a top-level definition binds (none for a statement that only runs something)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    imports: list[ast.Import | ast.ImportFrom] = []
    if isinstance(node, ast.Import | ast.ImportFrom):
        imports = [node]
    elif isinstance(node, ast.Try) and all(isinstance(n, ast.Import | ast.ImportFrom) for n in node.body):
        imports = [n for n in node.body if isinstance(n, ast.Import | ast.ImportFrom)]  # an optional import
    if imports:
        return {(alias.asname or alias.name).split(".")[0] for each in imports for alias in each.names}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
    return set()


def _free_names(tree: ast.AST) -> frozenset[str]:
    """Names `tree` reads and binds nowhere in itself, built-ins aside."""
    bound: set[str] = set()
    read: set[str] = set()
    for each in ast.walk(tree):
        if isinstance(each, ast.Name):
            (read if isinstance(each.ctx, ast.Load) else bound).add(each.id)
        elif isinstance(each, ast.arg):
            bound.add(each.arg)
        elif isinstance(each, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(each.name)
        elif isinstance(each, ast.Import | ast.ImportFrom):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in each.names)
        elif isinstance(each, ast.ExceptHandler) and each.name:
            bound.add(each.name)
    return frozenset(read - bound - _BUILTINS)


_BUILTINS = frozenset(dir(builtins))


def _is_test_or_demo(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> bool:
    """A definition that tries or shows the solution: `main`, `check`, `demo*`, `example*`,
    `run_tests`; a `test*` function without parameters (MBPP's `test_duplicate(arraynums)` is a
    solution) or under a pytest decorator; a `Test*` class or a unittest case."""
    name = node.name
    if isinstance(node, ast.ClassDef):
        bases = {ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases}
        return name.startswith("Test") or "TestCase" in bases
    if any("pytest" in ast.unparse(decorator) for decorator in node.decorator_list):  # parametrized tests
        return True
    if name in ("main", "check", "run_test", "run_tests") or name.lower().startswith(("demo", "example")):
        return True
    arguments = node.args
    takes_none = not (arguments.posonlyargs or arguments.args or arguments.vararg or arguments.kwonlyargs)
    return takes_none and name.lower().startswith(("test", "_test"))


def _from_first_code_line(text: str) -> str:
    """Unfenced code: from the first line of prose before it that it parses with, else from its first
    definition with the lines of prose after it dropped ("def add(a, b): ...\n\nThis function returns
    the sum." was a SyntaxError), else from its first definition as written."""
    lines = text.split("\n")
    definition = next(i for i, line in enumerate(lines) if _CODE_LINE.match(line))
    if len(text) <= _PARSED_CHARS:
        starts = [(start, len(lines)) for start in range(min(definition, _PROSE_LINES) + 1)]
        ends = [(definition, end) for end in range(len(lines) - 1, max(definition, len(lines) - 1 - _PROSE_LINES), -1)]
        for start, end in starts + ends:
            candidate = "\n".join(lines[start:end])
            if _parses(candidate):
                return candidate.rstrip()
    return "\n".join(lines[definition:]).strip()


def _parses(source: str) -> bool:
    try:
        parse_python(source)
    except _UNPARSABLE:
        return False
    return True


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "text": extract_text,
    "number": extract_number,
    "choice": extract_choice,
    "code": extract_code,
}


def extract_answer(text: str, answer_format: AnswerFormat = "text") -> str | None:
    """The answer in `text` for the given format, or None when there is none."""
    return EXTRACTORS[answer_format](text)


def normalize_for_vote(answer: str, answer_format: AnswerFormat = "text") -> str:
    """A comparison key so that '42', '42.0' and ' 42 ' count as the same vote: for numbers their
    value ('50%' votes with '50', as the scorer reads it so too), also for a text answer that is one
    number ('0.5' and '\\frac{1}{2}', '1,000' and '1{,}000': the math scorer counts them equal, and
    they split a vote under text tasks such as champ); for other text the scorers' normalisation (so
    that answers the scorer tells apart, '5!' and '5', '(0, 1)' and '[0, 1]', vote apart)."""
    if answer_format == "text":  # "$\\frac{1}{2}$" voted apart from "0.5"
        answer = _without_math_dollars(answer)
    if answer_format == "number" or (answer_format == "text" and _NUMBER.fullmatch(plain_numbers(answer).strip())):
        return _number_key(_clean_number(plain_numbers(answer).strip()).rstrip("%"))
    if answer_format == "choice":  # a letter, or an option's text (see extract_choice)
        letter = answer.strip().upper()
        return letter if len(letter) == 1 else normalize_text(answer)
    if answer_format == "code":
        return "\n".join(line.rstrip() for line in answer.strip().splitlines() if line.strip())
    return normalize_text(answer)


def _without_math_dollars(answer: str) -> str:
    """An answer inside LaTeX's inline math dollars, without them ("$x$", "$$x$$")."""
    text = answer.strip()
    return text.strip("$") if len(text) > 2 and text[0] == text[-1] == "$" else answer


_EXPONENT = re.compile(r"[eE]([-+]?\d+)$")
_EXACT_EXPONENT = 400  # beyond it a float (inf or 0.0) keys the vote


def _number_key(cleaned: str) -> str:
    """A number's vote key: a whole number exactly (as floats, 12345678901234567890 and ...891 were
    one vote), else its value to 9 significant digits (rounding to 9 decimals made 1e-10 and 2e-10
    one vote; 0.333333333 still votes with 1/3)."""
    try:
        exponent = _EXPONENT.search(cleaned)  # of any length: 1e1234567890 as a Fraction took the loop for good
        if exponent and abs(int(exponent.group(1))) > _EXACT_EXPONENT:  # 1e5000 as a Fraction: 5,000 digits
            return repr(float(f"{float(cleaned):.9g}"))
        value = Fraction(cleaned.replace(" ", ""))  # exact: 1e20 and 6.02e23 vote with their digits
    except (ValueError, ZeroDivisionError, OverflowError):  # "1/0" is a vote for itself, not a failed vote
        return cleaned
    if value.denominator == 1:
        return str(value.numerator)
    return repr(float(f"{float(value):.9g}"))
