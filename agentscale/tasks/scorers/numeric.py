"""Numeric scorer: compares numbers, not strings ("1,234" == "1234.0", "3/4" == "0.75", "75%" == "75").

Numbers are parsed into exact fractions where possible so integer answers are compared exactly; a
relative/absolute tolerance only applies when a non-integer is involved (rounded decimals such as
0.3333 vs 1/3 need it, 106475279601 vs 106475279602 must not pass).

A model's answer is arbitrary text, scored on the event loop that drives an evaluation's calls
(`tasks/scoring.py`), so nothing here may take long on any input: an exponent beyond
`MAX_EXPONENT` is no number (`1e9999999` held the loop for 5.6 s building 10**9999999), values too
large for a float are compared as fractions (`float()` raised OverflowError, which stopped the whole
eval and again at every resume), and no pattern has two adjacent unbounded runs of whitespace
(`"5" + " " * 20000 + "x"` took seconds by backtracking).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from agentscale.tasks.base import Score, Scorer, TaskItem

DEFAULT_REL_TOL = 1e-6
DEFAULT_ABS_TOL = 1e-9
MAX_EXPONENT = 1000  # |n| of a written 10^n beyond which a token is no number (a float ends at 308)

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_DECIMAL = rf"(?:{_DIGITS})(?:[eE][-+]?\d+)?"
_NUMBER = rf"[-+]?(?:{_DECIMAL})(?:\s*/\s*(?:{_DECIMAL}))?(?:\s*%)?"
_FULL = re.compile(rf"\s*[$€£¥]?\s*(?P<num>{_NUMBER})(?:\s*\.)?\s*")
_ANY = re.compile(rf"(?<![\w.])(?P<num>{_NUMBER})(?![\w])")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{([^{}]+)\}|(\d))\s*(?:\{([^{}]+)\}|(\d))")
# digit runs are bounded: int() of a longer one raised ValueError (4,300 digits), which ended an eval
_MIXED = re.compile(r"(?<![\w.^])(\d{1,9})\s*\\[dt]?frac\s*(?:\{\s*(\d{1,9})\s*\}|(\d))\s*(?:\{\s*(\d{1,9})\s*\}|(\d))")
_SIGN_SPACED = re.compile(r"(^|[=:(,][ \t]*)([-+])[ \t]+(?=[\d.])")  # "- 5" where a number starts: -5
# a dash for a minus sign where a number starts ("–7", a word processor's; not the range "12–13"), and
# a sign before a currency symbol ("-$12"): the number's sign was lost, and -7 matched a reference 7
_DASH_MINUS = re.compile(r"(?<![\w.])[\u2010-\u2015\ufe63\uff0d](?=[\d.$])")
_SIGNED_DOLLARS = re.compile(r"([-+])[ \t]?\$(?=[ \t]?[\d.])")
_TIMES_TEN = re.compile(r"(?<=[\d.])\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?")
_EXPONENT = re.compile(r"[eE]([-+]?\d+)")
_POWER = re.compile(
    r"(?:\(\s*([-+]?\d{1,7})\s*\)|(?<![\w.^)])(\d{1,7}))\s*\^\s*(?:\{\s*([-+]?\d{1,2})\s*\}|([-+]?\d{1,2}))(?![\d.^])"
)
MAX_POWER_EXPONENT, MAX_POWER_BASE = 64, 10**6  # 2^{10} is written out; 10^{400} is not


def plain_numbers(text: str) -> str:
    r"""`text` with its numbers written plainly: a Unicode minus, thin spaces, LaTeX's `{,}`, `\%`,
    `\frac{3}{4}` and `\frac34` (3/4), mixed numbers (`2\frac{1}{2}`: 5/2) and `1.5 \times 10^{3}`
    (1.5e3). Also what the answer extractor reads numbers from, so that it passes on the number the
    scorer would read (it took `3` from `\frac{3}{4}` and `5` from `−5`).

    >>> plain_numbers(r"−5, \frac{3}{4}, \dfrac12, 2\frac{1}{2}, 2\frac12, 1{,}000, 1.5 \times 10^{3}, 50\%")
    '-5, 3/4, 1/2, 5/2, 5/2, 1,000, 1.5e3, 50%'
    >>> plain_numbers(r"2^{10}, (-3)^2")
    '1024, 9'
    >>> plain_numbers("- 5"), plain_numbers("x = - 5"), plain_numbers("3 - 5")
    ('-5', 'x = -5', '3 - 5')
    >>> plain_numbers("–7"), plain_numbers("-$12"), plain_numbers("12–13")
    ('-7', '-12', '12–13')
    """
    text = text.replace("−", "-").replace("\u2009", "").replace("{,}", ",")
    text = text.replace("\\%", "%").replace("\\$", "$").replace("\\!", "")
    text = _SIGNED_DOLLARS.sub(r"\1", _DASH_MINUS.sub("-", text))
    text = _SIGN_SPACED.sub(r"\1\2", text)
    text = _MIXED.sub(_mixed, text)
    text = _LATEX_FRAC.sub(
        lambda m: f"({(m.group(1) or m.group(2)).strip()})/({(m.group(3) or m.group(4)).strip()})", text
    )
    text = _POWER.sub(_power, _TIMES_TEN.sub(r"e\1", text))  # before the brackets go: (-3)^2 is 9
    return re.sub(r"\((\s*[-+]?[\d.,eE+-]+\s*)\)", r"\1", text)  # (3)/(4) from \frac -> 3/4


def _mixed(match: re.Match[str]) -> str:
    """A mixed number as a fraction (2\\frac{1}{2}, 2\\frac12: 5/2)."""
    whole, numerator, denominator = match.group(1), match.group(2) or match.group(3), match.group(4) or match.group(5)
    return f"{int(whole) * int(denominator) + int(numerator)}/{denominator}"


def _power(match: re.Match[str]) -> str:
    """An integer power written out (2^{10}: 1024, (-3)^2: 9), if small enough to be an answer's value."""
    base, exponent = int(match.group(1) or match.group(2)), int(match.group(3) or match.group(4))
    if abs(exponent) > MAX_POWER_EXPONENT or abs(base) > MAX_POWER_BASE or (base == 0 and exponent < 0):
        return match.group(0)
    return str(base**exponent) if exponent >= 0 else str(Fraction(1, base**-exponent))


def _clean(text: str) -> str:
    text = plain_numbers(text.strip())
    if text.startswith("$") and text.endswith("$") and len(text) > 1:
        text = text.strip("$")
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", text.strip())
    return boxed.group(1) if boxed else text


def _value(token: str) -> tuple[Fraction, bool]:
    """(value, written_as_percent) for one number token matched by ``_NUMBER``."""
    token = token.replace(",", "").replace(" ", "")
    percent = token.endswith("%")
    token = token.rstrip("%")
    if any(abs(int(exponent)) > MAX_EXPONENT for exponent in _EXPONENT.findall(token)):
        raise ValueError(f"{token[:40]!r}: an exponent beyond {MAX_EXPONENT}")
    if "/" in token:
        num, den = token.split("/", 1)
        value = Fraction(num) / Fraction(den)
    else:
        value = Fraction(token)
    return value, percent


def parse_number(text: str) -> list[Fraction] | None:
    """The values a written number may mean, or None if ``text`` is not one number.

    A percentage yields both readings (``75%`` -> 75 and 0.75) because references and answers are
    inconsistent about it. Free text with exactly one number in it ("x = 5", "5 apples") yields that
    number; text with several numbers is ambiguous and yields None.
    """
    cleaned = _clean(text)
    match = _FULL.fullmatch(cleaned)
    if match is None:
        found = _ANY.findall(cleaned)
        if len(found) != 1:
            return None
        token = found[0]
    else:
        token = match.group("num")
    try:
        value, percent = _value(token)
    except (ValueError, ZeroDivisionError):
        return None
    return [value, value / 100] if percent else [value]


def several_numbers(text: str) -> bool:
    """Whether `text` offers more than one number ("3 or 4", "between 3 and 4", "3, 4"): no answer
    to a question that asks for one, however the scorer behind it reads it."""
    return parse_number(text) is None and len(_ANY.findall(_clean(text))) > 1


def is_number(text: str) -> bool:
    """True when ``text`` is one written number and nothing else (no surrounding words)."""
    return _FULL.fullmatch(_clean(text)) is not None


def _close(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    """Under the default, near-exact tolerance (or a stricter one; `rel_tol: 1e-6` written on an item
    is the default) an integer reference only matches answers that round to it; a looser one, an
    item's or a scorer's, is taken at its word: 1050 is within 10% of 1000."""
    if a == b:
        return True
    if rel_tol <= DEFAULT_REL_TOL and b.denominator == 1 and round(a) != b:
        return False
    # math.isclose's rule on the exact values: a float could not hold 1e400
    return abs(a - b) <= max(Fraction(rel_tol) * max(abs(a), abs(b)), Fraction(abs_tol))


def _shown(value: Fraction) -> str:
    """A value as a verdict's detail shows it (`:g`, or its magnitude beyond a float's range)."""
    try:
        return f"{float(value):g}"
    except OverflowError:
        magnitude = math.log10(abs(value.numerator)) - math.log10(value.denominator)  # exact ints, any size
        return f"about {'-' if value < 0 else ''}1e{int(magnitude)}"


def readable_tolerance(value: object) -> float | None:
    """`value` as a relative tolerance, or None when it is none (text, a boolean, NaN, negative)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def numeric_scorer(rel_tol: float = DEFAULT_REL_TOL, abs_tol: float = DEFAULT_ABS_TOL) -> Scorer:
    """A numeric scorer with the given tolerance (an item's ``metadata['rel_tol']`` overrides it)."""

    def score_numeric(answer: str | None, item: TaskItem) -> Score:
        if answer is None or not answer.strip():
            return Score(False, "no answer")
        wanted = parse_number(item.reference)
        if wanted is None:
            return Score(False, f"reference {item.reference!r} is not a number")
        got = parse_number(answer)
        if got is None:
            return Score(False, f"answer {answer[:100]!r} is not a single number")
        given = item.metadata.get("rel_tol", rel_tol)
        item_rel = readable_tolerance(given)
        if item_rel is None:  # a stored run's file, not checked on load (a JSONL task's load refuses it)
            if any(g == w for g in got for w in wanted):
                return Score(True, f"{_shown(got[0])} matches {item.reference}")
            return Score(False, f"rel_tol {given!r} is not a finite number >= 0: only an exact answer counts")
        if any(_close(g, w, item_rel, abs_tol) for g in got for w in wanted):
            return Score(True, f"{_shown(got[0])} matches {item.reference}")
        return Score(False, f"expected {item.reference}, got {answer.strip()[:100]}")

    return score_numeric


score_numeric = numeric_scorer()
