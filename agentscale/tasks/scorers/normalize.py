"""Text normalisation shared by the exact, choice and math scorers.

Models decorate answers ("**Paris.**", "`42`", "  yes!") in ways that do not change their meaning;
normalising both sides keeps those from counting as wrong while still comparing whole strings. Only
decoration is stripped: a sign, a decimal point, brackets, a backslash, a percent or a factorial
change an answer (stripping every punctuation mark from both ends scored "-5", ".5", "5%" and "5!"
correct against "5", "-9" against CHAMP's "9", and "(0, 1)" against "[0, 1]").
"""

from __future__ import annotations

import re
import unicodedata

_QUOTES = "\"'`“”‘’«»„‚"
_MARKUP = "*_"  # Markdown emphasis
_LEADING = _QUOTES + _MARKUP + "$"
# a closing full stop, comma, colon, semicolon or question mark ends a sentence; "!" only after a
# letter ("yes!"), since after a digit or a bracket it is a factorial
_TRAILING = _QUOTES + _MARKUP + "$.,;:?…–—·"
_SPACES = re.compile(r"\s+")
_EXCLAIMED = re.compile(r"(?<=[^\W\d_])!+$")


def normalize_text(text: str) -> str:
    """Case-fold, NFKC-normalise, collapse whitespace and strip the decoration at both ends.

    >>> [normalize_text(t) for t in ("**Paris.**", " `42` ", "Yes!", "-5", ".5", "5!", "(0, 1)", "$x$")]
    ['paris', '42', 'yes', '-5', '.5', '5!', '(0, 1)', 'x']
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    while True:
        stripped = _EXCLAIMED.sub("", text.lstrip(_LEADING + " ").rstrip(_TRAILING + " "))
        if stripped == text:
            return text
        text = stripped
