"""From an extraction model's reply to checked behaviors: JSON parsing, name normalisation, filters.

The extract prompt asks for `{"behaviors": [{"name": "behavior_...", "instruction": "..."}]}`. Replies
are parsed leniently (code fences, prose around the JSON, a bare list, or a `{"behavior_x": "..."}`
mapping are accepted) because small models rarely follow a format exactly; a reply with no usable JSON
is *malformed*: it is skipped and counted, never an error.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentscale.agents.json_repair import MAX_REPAIRS, escape_mended, open_brackets
from agentscale.memory.embed import content_words, tokens

PREFIX = "behavior_"
# the extract prompt's example name (prompts/extract.yaml), which small curators copy for any behavior
EXAMPLE_NAME = "behavior_inclusion_exclusion_principle"
_OWN_NAME_WORDS = 4  # content words of its instruction that name a behavior given the example's name
_EXAMPLE_SUBJECT = frozenset({"inclusion", "exclusion"})  # what the example's name is about
_EXAMPLE_WORDS = frozenset(tokens(EXAMPLE_NAME.removeprefix(PREFIX)))
MIN_INSTRUCTION_CHARS = 20
MAX_NAME_CHARS = 80
MAX_INSTRUCTION_CHARS = 600
NAME_PATTERN = f"^{PREFIX}[a-z0-9_]{{1,{MAX_NAME_CHARS - len(PREFIX)}}}$"  # a whole name, at most MAX_NAME_CHARS

_NON_WORD = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FENCE = re.compile(r"```[a-zA-Z]*+\n?+(.*?)```", re.DOTALL)  # possessive: an unclosed fence is scanned once
_CITED_START = re.compile(r"\bbehaviou?r(?=[ _-]+[a-z0-9])", re.IGNORECASE)  # where a cited name may start
_CITED_WORD = re.compile(r"(?:_|[ -]{1,2})([a-z0-9]+)", re.IGNORECASE)  # its next word, after one separator
_CONTINUED = re.compile(r"_[a-z0-9]", re.IGNORECASE)  # an identifier going on past a name
MAX_CITED_WORDS = 16
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")  # as `contains_answer` reads numbers
QUOTED_NUMBERS = 2  # of its question's numbers an instruction may not quote (`quotes_question`)


def extraction_schema(max_behaviors: int) -> dict[str, Any]:
    """The extract prompt's reply as a JSON schema, for servers that constrain decoding to one.

    Only the shape is enforced; names are still normalised and instructions filtered afterwards. The
    name's length bound lives in its pattern: vLLM's xgrammar backend refuses a string with both a
    `pattern` and a `maxLength` (a 400 for every extraction when the server pins that backend). At
    least one behavior is required: allowed an empty list, Qwen2.5-Coder-1.5B under constrained
    decoding replied `{"behaviors":[]}` to 24 of 24 reflections (a free-text extraction of the same
    reflections proposed 13); xgrammar honours `minItems`.
    """
    behavior = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "instruction": {"type": "string", "minLength": MIN_INSTRUCTION_CHARS, "maxLength": MAX_INSTRUCTION_CHARS},
        },
        "required": ["name", "instruction"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"behaviors": {"type": "array", "items": behavior, "minItems": 1, "maxItems": max_behaviors}},
        "required": ["behaviors"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Proposal:
    """A behavior as extracted from one item, before it meets the handbook."""

    name: str
    instruction: str
    run_id: str | None = None
    item_id: str | None = None
    topic: str | None = None


@dataclass
class ExtractionOutcome:
    """What one extraction reply gave: accepted proposals and why the others were dropped."""

    proposals: list[Proposal] = field(default_factory=list)
    malformed: bool = False
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> count


def normalize_name(raw: str) -> str | None:
    """`Behavior-Inclusion Exclusion` → `behavior_inclusion_exclusion`; None if nothing is left.

    Accented letters lose their accents (`vérifier_résultat` → `behavior_verifier_resultat`: it
    became `behavior_v_rifier_r_sultat`), CamelCase is split, anything else not a letter or digit
    becomes one underscore, and a leading `behavior` (with any separator) is replaced by the single
    `behavior_` prefix. A name of no Latin letter or digit at all (`behavior_加法进位`) is None.
    """
    words = _NON_WORD.sub("_", _CAMEL.sub("_", _unaccented(raw.strip())).lower()).strip("_")
    while words == "behavior" or words.startswith("behavior_") or words.startswith("behaviour_"):
        words = words.partition("_")[2] if "_" in words else ""
    words = words.strip("_")
    if not words:
        return None
    name = PREFIX + words
    return name[:MAX_NAME_CHARS].rstrip("_")


def _unaccented(text: str) -> str:
    """Accented Latin letters without their accents (`vérifier` → `verifier`)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def only_its_name(instruction: str, name: str) -> bool:
    """Whether the instruction has content words and all of them are in the behavior's name
    ("Calculate the total cost." for `behavior_calculate_total_cost`): a real SmolLM2 curator's
    behavior said no more than its name, passed the 20-character filter, and was shown to every
    question. An instruction of no Latin word (Chinese, Russian) is not judged so."""
    said = set(tokens(_unaccented(instruction)))
    return bool(said) and said <= set(tokens(name.removeprefix(PREFIX)))


def _not_the_example(name: str, instruction: str) -> str:
    """`name`, unless it is the prompt's example name copied (only the example's words, or two of them,
    and the instruction says neither "inclusion" nor "exclusion"): then a name of the instruction's
    first content words (no numbers). A real 0.5B curator gave 17 of 30 proposals the example's name
    or a variant of it (`behavior_apply_inclusion_exclusion_principle`); kept apart as NAME_2, NAME_3,
    ... since 09353d6, their names said nothing and put the example's words into every retrieval."""
    words = set(tokens(name.removeprefix(PREFIX)))
    copied = bool(words) and (words <= _EXAMPLE_WORDS or len(words & _EXAMPLE_WORDS) >= 2)
    plain = _unaccented(instruction)
    if not copied or _EXAMPLE_SUBJECT & set(tokens(plain)):  # "principle" alone says nothing of it
        return name
    said = [word for word in content_words(plain) if len(word) > 2 and not word.isdigit()]
    own = list(dict.fromkeys(said))[:_OWN_NAME_WORDS]
    return (normalize_name(PREFIX + "_".join(own)) if own else None) or name


def one_line(text: str) -> str:
    return " ".join(text.split())


def contains_answer(instruction: str, answer: str | None) -> bool:
    """Whether the instruction gives away the item's answer.

    Numbers and words match as whole tokens (answer `12` is in "gives 12 apples", not in "120"); a
    single-letter choice only in answer-like phrases ("answer B", "option (B)") since letters are
    common words; long references (code) match as substrings.
    """
    if answer is None:
        return False
    reference = one_line(answer).strip().rstrip(".")
    if not reference:
        return False
    text = one_line(instruction)
    if len(reference) == 1 and reference.isalpha():
        letter = re.escape(reference.upper())
        pattern = rf"(?:answer|option|choice|choose|pick)\s*(?:is\s*)?\(?{letter}\)?(?![A-Za-z])|\({letter}\)"
        return re.search(pattern, text, re.IGNORECASE) is not None
    if len(reference) > 200:
        return reference in text
    number = reference.replace(",", "")
    if re.fullmatch(r"[-+]?\d+(?:\.\d+)?", number):
        return float(number) in _numbers(text)
    pattern = r"(?<![\w])" + re.escape(reference) + r"(?![\w])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def quotes_question(instruction: str, question: str | None) -> bool:
    """Whether the instruction quotes two or more distinct numbers of its question. A real 0.5B
    curator kept 20 behaviors of 30 items, 9 of them restatements of their question ("Steve swims a
    kilometer in 20 minutes..."), which its student then took as facts of other questions; a general
    behavior names no quantity of one question, one number ("divide by 2") may be a coincidence."""
    if not question:
        return False
    shared = set(_numbers(instruction)) & set(_numbers(question))
    return len(shared) >= QUOTED_NUMBERS


def _numbers(text: str) -> list[float]:
    values = []
    for token in _NUMBER.findall(text):
        try:
            values.append(float(token.replace(",", "")))
        except ValueError:
            continue
    return values


def _json_candidates(text: str) -> list[str]:
    """Texts that may hold the JSON: fenced blocks first, then the widest {...} and [...] spans."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if start != -1 and end > start:
            candidates.append(text[start : end + 1])
    candidates.append(text)
    return candidates


def _entries(data: Any) -> list[Any] | None:
    """The list of behavior entries in a parsed reply, or None when its shape is unusable."""
    if isinstance(data, dict) and "behaviors" in data:
        entries = data["behaviors"]
        return entries if isinstance(entries, list) else None
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data and all(str(k).lower().startswith("behavior") for k in data):
        # {"behavior_x": "instruction", ...}: the mapping form some extraction scripts use
        return [{"name": k, "instruction": v} for k, v in data.items()]
    return None


def _repaired_json(text: str) -> Any:
    """`json.loads` of `text` after the repairs a small model's reply needed, each where the parser
    stops: a backslash that starts no JSON escape (LaTeX's `\\(` in an instruction) is taken as a
    backslash; a closing bracket that closes nothing open is dropped (`...}]]}`), and one that closes
    a bracket below the innermost gets the closers it skipped (`{"behaviors": [{...}}`). Real 0.5B
    curators' builds lost 5 of 12 and 15 of 30 extraction replies, each with a usable behavior, to
    these. Valid escapes stay as they are (a `\\n` is a line break even before a letter, and LaTeX's
    `\\frac` is a form feed and "rac", as JSON reads it)."""
    for _ in range(MAX_REPAIRS):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            mended = escape_mended(text, exc)
            if mended is not None:
                text = mended
            elif exc.pos < len(text) and text[exc.pos] in "]}":
                text = text[: exc.pos] + _skipped_closers(text[: exc.pos], text[exc.pos]) + text[exc.pos + 1 :]
            else:
                raise
    return json.loads(text)


def _skipped_closers(before: str, closer: str) -> str:
    """What replaces `closer` after `before`: nothing when it closes no bracket open there, else the
    closers of the brackets opened after the one it closes, then itself (strings are skipped)."""
    opened, _, _ = open_brackets(before)
    opener = "[" if closer == "]" else "{"
    if opener not in opened:
        return ""
    skipped = opened[len(opened) - opened[::-1].index(opener) :]
    return "".join("]" if o == "[" else "}" for o in reversed(skipped)) + closer


def parse_reply(text: str) -> list[Any] | None:
    """The behavior entries of an extraction reply, or None if it holds no usable JSON."""
    for candidate in _json_candidates(text or ""):
        for parse in (json.loads, _repaired_json):
            try:
                data = parse(candidate)
            except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
                continue
            entries = _entries(data)
            if entries is not None:
                return entries
    return None


def check_proposals(
    reply: str,
    *,
    answer: str | None,
    question: str | None = None,
    run_id: str | None = None,
    item_id: str | None = None,
    topic: str | None = None,
    max_behaviors: int | None = None,
) -> ExtractionOutcome:
    """Parse an extraction reply and keep the behaviors that pass the filters.

    Rejection reasons: `bad_entry` (not an object with string name and instruction), `bad_name`
    (nothing left after normalisation), `short` (instruction under 20 characters), `only_its_name`
    (every word of the instruction is in its name: it says nothing more), `contains_answer`
    (the instruction gives away the item's answer), `quotes_question` (it quotes two or more of the
    `question`'s numbers: a restatement of this question, not a behavior for similar ones),
    `duplicate` (same name twice in one reply).
    """
    outcome = ExtractionOutcome()
    entries = parse_reply(reply)
    if entries is None:
        outcome.malformed = True
        return outcome
    seen: set[str] = set()
    for entry in entries:
        if max_behaviors is not None and len(outcome.proposals) >= max_behaviors:
            outcome.rejected["over_limit"] += 1
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
            outcome.rejected["bad_entry"] += 1
            continue
        instruction = entry.get("instruction", entry.get("description"))
        if not isinstance(instruction, str):
            outcome.rejected["bad_entry"] += 1
            continue
        name = normalize_name(entry["name"])
        instruction = one_line(instruction)
        if name is None:
            outcome.rejected["bad_name"] += 1
        elif len(instruction) < MIN_INSTRUCTION_CHARS:
            outcome.rejected["short"] += 1
        elif only_its_name(instruction, name):
            outcome.rejected["only_its_name"] += 1
        elif contains_answer(instruction, answer):
            outcome.rejected["contains_answer"] += 1
        elif quotes_question(instruction, question):
            outcome.rejected["quotes_question"] += 1
        elif only_its_name(instruction, name := _not_the_example(name, instruction)):
            outcome.rejected["only_its_name"] += 1  # the example's name, for an instruction that is a name
        elif name in seen:
            outcome.rejected["duplicate"] += 1
        else:
            seen.add(name)
            outcome.proposals.append(
                Proposal(name, instruction[:MAX_INSTRUCTION_CHARS], run_id=run_id, item_id=item_id, topic=topic)
            )
    return outcome


def find_citations(texts: list[str | None], known: set[str]) -> list[str]:
    """Behavior names from `known` cited in `texts`, in order of first citation.

    A name counts written as given (`behavior_units_first`, any case) or with spaces or hyphens for its
    underscores (`Behavior Units-First`): real 0.5B workers wrote "**Behavior Inclusion-Exclusion
    Principle**: ..." and the behavior counted as never cited (`handbook prune` then offered to
    remove it). The longest known name wins; one that an underscore continues is another identifier
    (`behavior_units_2` is no citation of `behavior_units`).
    """
    cited: list[str] = []
    for text in texts:
        for start in _CITED_START.finditer(text or ""):
            name = _cited_name(text or "", start.end(), known)
            if name is not None and name not in cited:
                cited.append(name)
    return cited


def _cited_name(text: str, position: int, known: set[str]) -> str | None:
    """The longest name of `known` that the words from `position` on spell (see `find_citations`)."""
    words: list[str] = []
    ends: list[int] = []
    while len(words) < MAX_CITED_WORDS and (word := _CITED_WORD.match(text, position)) is not None:
        words.append(word.group(1).lower())
        position = word.end()
        ends.append(position)
    for count in range(len(words), 0, -1):
        name = PREFIX + "_".join(words[:count])
        if name in known and not _CONTINUED.match(text, ends[count - 1]):
            return name
    return None
