"""Extraction replies → checked behaviors: lenient JSON, names, the 20-character and answer filters."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from agentscale.memory.extract import (
    EXAMPLE_NAME,
    MAX_INSTRUCTION_CHARS,
    MAX_NAME_CHARS,
    MIN_INSTRUCTION_CHARS,
    ExtractionOutcome,
    check_proposals,
    contains_answer,
    extraction_schema,
    find_citations,
    normalize_name,
    parse_reply,
    quotes_question,
)

LONG = "Convert every quantity to one unit before combining them."


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("behavior_inclusion_exclusion", "behavior_inclusion_exclusion"),
        ("Inclusion-Exclusion Principle", "behavior_inclusion_exclusion_principle"),
        ("behavior: unit conversion", "behavior_unit_conversion"),
        ("Behavior_Behavior_check units!", "behavior_check_units"),
        ("behaviour_estimate_first", "behavior_estimate_first"),
        ("translateVerbalToEquation", "behavior_translate_verbal_to_equation"),
        ("  __  ", None),
        ("behavior_", None),
        ("vérifier_résultat", "behavior_verifier_resultat"),  # was behavior_v_rifier_r_sultat
        ("BehaviorÉtapeParÉtape", "behavior_etape_par_etape"),  # was behavior_tape_par_tape
        ("behavior_加法进位", None),
    ],
)
def test_names_are_normalised_to_behavior_snake_case(raw: str, expected: str | None) -> None:
    assert normalize_name(raw) == expected


def test_reply_forms_accepted() -> None:
    canonical = {"behaviors": [{"name": "behavior_units", "instruction": LONG}]}
    fenced = "Here you go:\n```json\n" + json.dumps(canonical) + "\n```\nHope it helps."
    prose = "Sure! " + json.dumps(canonical) + " Done."
    bare_list = json.dumps([{"name": "units", "instruction": LONG}])
    mapping = json.dumps({"behavior_units": LONG})
    for reply in (json.dumps(canonical), fenced, prose, bare_list, mapping):
        outcome = check_proposals(reply, answer="7")
        assert not outcome.malformed, reply
        assert [(p.name, p.instruction) for p in outcome.proposals] == [("behavior_units", LONG)]


def test_near_miss_json_of_a_small_curator_is_repaired() -> None:
    """Forms a real Qwen2.5-Coder-0.5B curator wrote (5 of 12 replies of one build, each with a usable
    behavior, were counted malformed): a stray closing bracket, and LaTeX in an instruction."""
    replies = {
        '{"behaviors": [{"name": "behavior_count_cards", "instruction": "' + LONG + '"}]]}': LONG,
        r'{"behaviors": [{"name": "behavior_half", "instruction": "Half as many: \(\dfrac{54}{2}\), \sqrt{x}, \u00bd"}]}': (
            r"Half as many: \(\dfrac{54}{2}\), \sqrt{x}, ½"
        ),
        r'{"behaviors": [{"name": "behavior_bad_u", "instruction": "Escapes \uZZ and \q are kept as written"}]}': (
            r"Escapes \uZZ and \q are kept as written"
        ),
        # a valid escape stays one when a stray bracket is mended (the repair once read \n before a
        # letter as a backslash and an n: the review of 6fd46a4)
        r'{"behaviors": [{"name": "behavior_share", "instruction": "Find each share.\nThen check the sum."}]]}': (
            "Find each share. Then check the sum."
        ),
        # a missing bracket before a closing one: it gets the one it skipped (2 of 30 real replies)
        '{"behaviors": [{"name": "behavior_lists", "instruction": "' + LONG + ' [in order] {once}"}}': (
            LONG + " [in order] {once}"
        ),
        '{"behaviors": [{"name": "behavior_ok", "instruction": "A tab\\tand \\"quotes\\" stay escapes"}]}': (
            'A tab and "quotes" stay escapes'  # valid JSON as it stands: parsed as such, not repaired
        ),
    }
    for reply, instruction in replies.items():
        outcome = check_proposals(reply, answer=None)
        assert not outcome.malformed, reply
        assert [p.instruction for p in outcome.proposals] == [instruction]


@pytest.mark.parametrize(
    "reply",
    ["", "I could not find any behaviors.", '{"behaviors": "none"}', '{"behaviors": [', '{"answer": 42}', "null"],
)
def test_malformed_replies_are_flagged_not_raised(reply: str) -> None:
    outcome = check_proposals(reply, answer="42")
    assert outcome.malformed and outcome.proposals == []
    assert parse_reply(reply) is None


def test_filters_reject_short_leaky_bad_and_duplicate_entries() -> None:
    reply = json.dumps(
        {
            "behaviors": [
                {"name": "behavior_short", "instruction": "Add them up."},  # < 20 characters
                {"name": "behavior_leak", "instruction": "The total number of apples here is 42, remember it."},
                {"name": "!!!", "instruction": LONG},
                {"name": "behavior_units", "instruction": LONG},
                {"name": "Behavior Units", "instruction": LONG + " Again."},
                {"instruction": LONG},
                "behavior_string_only",
                {"name": "behavior_ok_with_similar_number", "instruction": "Round 420 to the nearest hundred first."},
                # says no more than its name (a real SmolLM2 curator's, then shown to every question)
                {"name": "behavior_calculate_the_total_costs", "instruction": "Calculate the total cost."},
                {"name": "behavior_total_cost", "instruction": "Calculate the total cost of each item."},
            ]
        }
    )
    outcome = check_proposals(reply, answer="42", run_id="r1", item_id="q3", topic="math")
    kept = ["behavior_units", "behavior_ok_with_similar_number", "behavior_total_cost"]
    assert [p.name for p in outcome.proposals] == kept
    assert dict(outcome.rejected) == {
        "short": 1,
        "contains_answer": 1,
        "bad_name": 1,
        "duplicate": 1,
        "bad_entry": 2,
        "only_its_name": 1,
    }
    first = outcome.proposals[0]
    assert (first.run_id, first.item_id, first.topic) == ("r1", "q3", "math")


def test_an_instruction_quoting_its_questions_numbers_is_a_restatement_not_a_behavior() -> None:
    """A real 0.5B curator kept 9 restatements of their question among 20 behaviors ("Steve swims a
    kilometer in 20 minutes..."), which its student took as facts of other questions."""
    question = "Steve swims a kilometer in 20 minutes. When the water is warm, he swims 1,500 meters in 25 minutes."
    reply = json.dumps(
        {
            "behaviors": [
                {
                    "name": "behavior_swim_speed",
                    "instruction": "Steve swims a kilometer in 20 minutes, and 1500 m in 25.",
                },
                {
                    "name": "behavior_rates",
                    "instruction": "Turn each distance and time into a rate before comparing them.",
                },
                {"name": "behavior_halves", "instruction": "Divide by 2 to halve a quantity; 20 of 40 is a half."},
            ]
        }
    )
    outcome = check_proposals(reply, answer="99", question=question)
    assert [p.name for p in outcome.proposals] == ["behavior_rates", "behavior_halves"]  # one number: coincidence
    assert dict(outcome.rejected) == {"quotes_question": 1}
    assert quotes_question("Swim 1,500 m in 25 minutes.", question) and not quotes_question("Swim 1,500 m.", question)


def _checked(entries: list[tuple[str, str]]) -> ExtractionOutcome:
    """`check_proposals` of a reply giving these (name, instruction) pairs."""
    return check_proposals(json.dumps({"behaviors": [{"name": n, "instruction": i} for n, i in entries]}), answer="99")


def test_the_prompts_example_name_copied_for_another_behavior_is_named_by_its_instruction() -> None:
    """A real 0.5B curator gave 17 of 30 proposals the extract prompt's example name or part of it
    (`behavior_inclusion_exclusion_principle`) whatever they said; the names meant nothing and their
    words entered retrieval. Used for what it names, the example's name stays."""
    from importlib.resources import files

    assert EXAMPLE_NAME in files("agentscale.memory").joinpath("prompts/extract.yaml").read_text()
    entries = [
        (EXAMPLE_NAME, "Convert percentages to decimals before multiplying two amounts."),
        ("Behavior Inclusion-Exclusion", "Check the units of every quantity first, then compute."),
        (EXAMPLE_NAME, "Count each set, then subtract what the sets share: inclusion-exclusion."),
        ("behavior_exclusion_of_cases", "Rule out impossible cases before counting the remaining ones."),
        ("behavior_apply_inclusion_exclusion_principle", "Divide 120 tickets by the graduates' count to share."),
    ]
    outcome = _checked(entries)
    assert [p.name for p in outcome.proposals] == [
        "behavior_convert_percentages_decimals_multiplying",
        "behavior_check_units_every_quantity",
        EXAMPLE_NAME,  # it speaks of inclusion-exclusion: its own name
        "behavior_exclusion_of_cases",  # one of the example's words among others: a name of its own
        "behavior_divide_tickets_graduates_count",  # a variant of the example's, numbers left out
    ]


def test_a_name_check_neither_drops_other_scripts_nor_passes_a_name_under_the_example() -> None:
    """A review's findings: an instruction of no Latin word had no words, a subset of any name's, and
    was rejected; a bare name under the example's name was renamed to itself and kept; "principle"
    alone kept the example's name for another principle; accented words lost their letters."""
    entries = [
        ("behavior_check_units", "Проверяйте единицы измерения перед вычислением."),
        (EXAMPLE_NAME, "Calculate the total cost."),
        (EXAMPLE_NAME, "Use the pigeonhole principle to show two share a box."),
        ("behavior_inclusion_exclusion", "Vérifier les unités avant de calculer le total."),
    ]
    outcome = _checked(entries)
    assert [p.name for p in outcome.proposals] == [
        "behavior_check_units",
        "behavior_pigeonhole_principle_show_two",
        "behavior_verifier_les_unites_avant",
    ]
    assert dict(outcome.rejected) == {"only_its_name": 1}


def test_instructions_are_one_line_and_the_limit_holds() -> None:
    reply = json.dumps(
        {
            "behaviors": [
                {"name": f"behavior_b{i}", "instruction": "Check the\n   units   twice, always."} for i in range(4)
            ]
        }
    )
    outcome = check_proposals(reply, answer=None, max_behaviors=2)
    assert [p.instruction for p in outcome.proposals] == ["Check the units twice, always."] * 2
    assert outcome.rejected["over_limit"] == 2


def test_long_names_and_instructions_are_cut_to_the_schemas_limits() -> None:
    """Without structured output nothing else holds a model to the limits the schema states."""
    reply = json.dumps({"behaviors": [{"name": "behavior_" + "x" * 200, "instruction": "Check the units. " * 60}]})
    (proposal,) = check_proposals(reply, answer=None, max_behaviors=2).proposals
    assert len(proposal.name) == MAX_NAME_CHARS and len(proposal.instruction) == MAX_INSTRUCTION_CHARS


def test_an_instruction_of_exactly_the_schemas_minimum_length_is_kept() -> None:
    """The schema tells a constrained model `minLength: MIN_INSTRUCTION_CHARS`: an instruction of
    exactly that length is valid there and must be kept here; one character less is short."""
    exact = "Check units, always."
    assert len(exact) == MIN_INSTRUCTION_CHARS
    reply = json.dumps(
        {"behaviors": [{"name": "behavior_a", "instruction": exact}, {"name": "behavior_b", "instruction": exact[:-1]}]}
    )
    outcome = check_proposals(reply, answer=None, max_behaviors=2)
    assert [p.instruction for p in outcome.proposals] == [exact] and dict(outcome.rejected) == {"short": 1}
    assert extraction_schema(2)["properties"]["behaviors"]["items"]["properties"]["instruction"]["minLength"] == len(
        exact
    )


@pytest.mark.parametrize(
    ("instruction", "answer", "leaks"),
    [
        ("The result is 1,250 after rounding.", "1250", True),
        ("Multiply by 12.0 to get dozens.", "12", True),
        ("Use 120 as the base.", "12", False),
        ("A useful trick: draw a diagram first.", "A", False),
        ("The answer is B because of symmetry.", "B", True),
        ("Pick option (C) when in doubt.", "C", True),
        ("Remember that Paris is the capital.", "paris", True),
        ("Compare parish records carefully.", "paris", False),
        ("Anything at all goes here.", None, False),
    ],
)
def test_contains_answer(instruction: str, answer: str | None, leaks: bool) -> None:
    assert contains_answer(instruction, answer) is leaks


def test_citations_are_found_case_insensitively_and_only_for_known_names() -> None:
    known = {"behavior_units", "behavior_estimate_first"}
    texts = [
        "Using (Behavior_Units) we convert. Also behavior_made_up.",
        None,
        "By behavior_estimate_first, then behavior_units again.",
    ]
    assert find_citations(texts, known) == ["behavior_units", "behavior_estimate_first"]
    assert find_citations(["no citations"], known) == []


def test_a_name_written_with_spaces_or_hyphens_is_a_citation_and_the_longest_known_wins() -> None:
    """Real 0.5B workers wrote "**Behavior Inclusion-Exclusion Principle**: ..." and it counted as no
    citation (`handbook prune` then offered to remove the behavior they had used)."""
    known = {"behavior_inclusion_exclusion_principle", "behavior_units", "behavior_units_2"}
    text = "**Behavior Inclusion-Exclusion Principle**: count both. Then behaviour units."
    assert find_citations([text], known) == ["behavior_inclusion_exclusion_principle", "behavior_units"]
    assert find_citations(["By behavior_units_2 first"], known) == ["behavior_units_2"]
    assert find_citations(["behavior_units_first is no name of ours"], known) == []  # another identifier
    assert find_citations(["the behavior apply_inclusion_exclusion_principle"], known) == []


def test_package_docstring_examples_run() -> None:
    import doctest

    import agentscale.memory

    failures, tried = doctest.testmod(agentscale.memory)
    assert failures == 0 and tried > 0


def test_an_unclosed_fence_and_deep_nesting_are_no_reply(in_a_child: Callable[[str], None]) -> None:
    # an unclosed fence of 20,000 letters took 1.8 s to read; JSON nested 100,000 deep raised RecursionError
    in_a_child(
        "from agentscale.memory.extract import parse_reply\n"
        "assert parse_reply('```' + 'a' * 200_000) is None\n"
        "assert parse_reply('{\"behaviors\": ' + '[' * 100_000) is None\n"
    )
