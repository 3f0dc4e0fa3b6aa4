"""Text normalisation shared by the exact and choice scorers.

Models decorate answers ("**Paris.**", "`42`", "  yes!") in ways that do not change their meaning;
normalising both sides keeps those from counting as wrong while still comparing whole strings.
"""

from __future__ import annotations

import re
import string
import unicodedata

_EDGE_CHARS = string.punctuation + string.whitespace + "“”‘’«»„‚…–—·"
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-fold, NFKC-normalise, collapse whitespace and strip punctuation at both ends."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _SPACES.sub(" ", text)
    return text.strip(_EDGE_CHARS)
