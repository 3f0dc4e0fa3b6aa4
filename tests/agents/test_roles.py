"""Role prompts come from package data; the verifier and the vote pick as documented."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentscale.agents.extract import normalize_for_vote
from agentscale.agents.roles import Candidate, builtin_roles, majority_vote, pick_verified, resolve_roles
from agentscale.graphs.spec import RoleSpec
from agentscale.testing import Rule, ScriptedServer


def test_builtin_roles_load_from_package_data() -> None:
    roles = builtin_roles()
    assert set(roles) == {"assistant", "critic", "fuser", "verifier", "vote", "tester"}
    assert not roles["vote"].calls_model and not roles["tester"].calls_model


def test_assistant_switches_prompt_when_it_has_inputs() -> None:
    assistant = builtin_roles()["assistant"]
    alone = assistant.messages("What is 2+2?", [], "number")
    assert "What is 2+2?" in alone[1]["content"] and "Candidate" not in alone[1]["content"]
    assert "Final answer: <number>" in alone[1]["content"]
    helped = assistant.messages("What is 2+2?", [Candidate("x", "4")], "number")
    assert "Candidate 1:\n4" in helped[1]["content"]
    assert helped[0]["content"] != alone[0]["content"]


def test_placeholders_leave_other_braces_alone() -> None:
    role = resolve_roles({"coder": RoleSpec(system="s", user='Q: {question} json: {"a": 1}')})["coder"]
    user = role.messages("x", [], "code")[1]["content"]
    assert '{"a": 1}' in user and "```python" in user  # {format} was appended for extraction


def test_a_custom_role_gets_the_coordinators_direction() -> None:
    """A CEO's direction reached the built-in roles only: a custom template without `{direction}`
    lost it silently."""
    role = resolve_roles({"solver": RoleSpec(system="s", user="Solve: {question}")})["solver"]
    directed = role.messages("2+2?", [], "number", direction="check the units")[1]["content"]
    assert directed.startswith("Focus for this round: check the units") and "Solve: 2+2?" in directed
    assert role.messages("2+2?", [], "number")[1]["content"].startswith("Solve: 2+2?")  # none: as written
    # placed in the system template by its author: there, and only there
    placed = resolve_roles({"s": RoleSpec(system="{direction}{format}", user="Solve: {question}")})["s"]
    system, user = (m["content"] for m in placed.messages("2+2?", [], "number", direction="check the units"))
    assert system.count("check the units") == 1 and "check the units" not in user
    assert user == "Solve: 2+2?"  # the format instruction is in the system template too


def test_code_inputs_are_fenced() -> None:
    critic = builtin_roles()["critic"]
    content = critic.messages("write f", [Candidate("a", "def f():\n    pass")], "code")[1]["content"]
    assert "```python\ndef f():" in content


def test_direction_and_behaviors_are_inserted_when_given() -> None:
    content = builtin_roles()["critic"].messages(
        "q", [Candidate("a", "1")], "text", direction="check units", behaviors="behavior_x: do y"
    )[1]["content"]
    assert content.startswith("behavior_x: do y") and "Focus for this round: check units" in content


def test_verifier_picks_highest_score_and_earliest_on_ties() -> None:
    candidates = [Candidate("a", "1"), Candidate("b", "2"), Candidate("c", "3")]
    assert pick_verified("Candidate 1: 3\nCandidate 2: 8\nCandidate 3: 8", candidates) == "2"
    assert pick_verified("no scores at all", candidates) == "1"
    assert pick_verified("Candidate 9: 10\ncandidate #3 = 9.5", candidates) == "3"


def test_majority_vote_breaks_ties_by_finishing_order() -> None:
    assert majority_vote([Candidate("a", "x"), Candidate("b", "y"), Candidate("c", "y")], "text") == "y"
    assert majority_vote([Candidate("a", "x"), Candidate("b", "y")], "text") == "x"
    assert majority_vote([], "text") is None


def test_a_choice_vote_counts_letters_before_any_text() -> None:
    """A hedging reply ("None of these look right to me.") won a two-voter tie once a reply without a
    letter counted as an option's text, and an option's text split its letter's votes (a review)."""
    assert majority_vote([Candidate("a", "None of these look right to me."), Candidate("b", "A")], "choice") == "A"
    assert majority_vote([Candidate("a", "Paris"), Candidate("b", "B"), Candidate("c", "Rome")], "choice") == "B"
    assert majority_vote([Candidate("a", "Rome"), Candidate("b", "Rome")], "choice") == "Rome"  # no letter: text


def test_a_vote_returns_the_majority_spelling_of_the_answer_that_won() -> None:
    """Answers that vote together ('007', '7', '7' are one number) came back in the first finished
    spelling, which an exact scorer marked wrong; two whole numbers floats cannot tell apart voted
    together (a diff review)."""
    sevens = [Candidate("a", "007"), Candidate("b", "7"), Candidate("c", "7")]
    assert majority_vote(sevens, "text") == "7"
    big = [Candidate("a", "12345678901234567890"), Candidate("b", "12345678901234567891")]
    assert majority_vote([*big, Candidate("c", "12345678901234567891")], "number") == "12345678901234567891"
    tiny = [Candidate("a", "1e-10"), Candidate("b", "2e-10"), Candidate("c", "2e-10")]
    assert majority_vote(tiny, "text") == "2e-10"  # rounded to 9 decimals both were 0.0
    exact = [Candidate("a", "5"), Candidate("b", "1e20"), Candidate("c", "100000000000000000000")]
    assert majority_vote(exact, "number") == "1e20"  # one value in two spellings (a float key split them)
    huge = [Candidate("a", "1e5000"), Candidate("b", "7"), Candidate("c", "7")]
    assert majority_vote(huge, "number") == "7"  # 1e5000 was made a 5,000-digit integer, which raised
    assert normalize_for_vote("2.5e3", "number") == normalize_for_vote("2500", "number")


ROLES_WITH_FORMAT = ("assistant", "critic", "fuser")


@pytest.mark.parametrize("style", ["final_line", "boxed"])
@pytest.mark.parametrize("role_name", ROLES_WITH_FORMAT)
@pytest.mark.parametrize("answer_format", ["text", "number", "choice"])
def test_every_role_asks_for_reasoning_before_the_answer(role_name: str, answer_format: str, style: str) -> None:
    """Small models skip reasoning when the prompt's last words only ask for the answer line."""
    role = builtin_roles()[role_name]
    candidates = [Candidate("x", "4")] if role_name != "assistant" else []
    user = role.messages("What is 2+2?", candidates, answer_format, answer_style=style)[1]["content"]  # type: ignore[arg-type]
    closing = user.rsplit("\n\n", 1)[-1].lower()
    assert "reason step by step" in closing
    assert ("\\boxed{}" in closing) == (style == "boxed")
    assert ("final answer:" in closing) == (style == "final_line")


def test_a_small_models_reasoned_reply_is_parsed_in_both_styles() -> None:
    from agentscale.agents.extract import extract_answer

    assistant = builtin_roles()["assistant"]
    reasoned = {
        "final_line": "Tom has 3 boxes of 4 apples: 3 * 4 = 12. He eats 2: 12 - 2 = 10.\nFinal answer: 10",
        "boxed": "Tom has 3 boxes of 4 apples: 3 * 4 = 12. He eats 2: 12 - 2 = 10.\nSo he has \\boxed{10} apples.",
    }
    for style, reply in reasoned.items():
        assert assistant.answer(reply, [], "number") == "10", style
        assert extract_answer(reply, "text") == "10", style


def test_model_entries_carry_their_family_answer_style() -> None:
    from agentscale.graphs.spec import ModelSpec
    from agentscale.models.registry import resolve

    assert resolve("local/qwen2.5-coder-0.5b", None).answer_style == "boxed"
    assert resolve("hosted_vllm/Qwen/Qwen2.5-7B-Instruct", None).answer_style == "boxed"
    assert resolve("local/smollm2-135m", None).answer_style == "final_line"
    assert resolve("openai/gpt-4o-mini", None).answer_style == "final_line"
    override = ModelSpec(model="hosted_vllm/Qwen/Qwen2.5-7B-Instruct", answer_style="final_line")
    assert resolve("q", override).answer_style == "final_line"


def test_a_verifier_reply_of_blanks_does_not_backtrack_for_minutes(in_a_child: Callable[[str], None]) -> None:
    # "Candidate 1:" then 20,000 blanks took 7 s to read with the old pattern; 200,000 would take minutes
    in_a_child(
        "from agentscale.agents.roles import Candidate, pick_verified\n"
        "candidates = [Candidate('a', '1'), Candidate('b', '2')]\n"
        "assert pick_verified('Candidate 1:' + ' ' * 200_000, candidates) == '1'\n"
        "assert pick_verified('candidate' + '\\n' * 200_000 + '# 2 = 9', candidates) == '2'\n"
    )


def test_the_verifier_counts_the_first_candidates_score() -> None:
    """`0 <= index` -> `0 < index` (a mutation audit's): "Candidate 1" is index 0, and its score counts."""
    candidates = [Candidate("a", "1"), Candidate("b", "2")]
    assert pick_verified("Candidate 1: 9\nCandidate 2: 3", candidates) == "1"


def test_a_fenced_code_candidate_is_not_fenced_again() -> None:
    """(A mutation audit.) Mutant `if answer_format == "code" and "```" not in body:` -> `if answer_format ==
    "code":` survived test_roles.py and test_execute.py: a fuser or critic over code answers that came
    fenced (most models fence code) got every candidate wrapped twice, "```python ```python ...``` ```"."""
    fenced = "```python\ndef f(x):\n    return x + 1\n```"
    candidates = [Candidate("a", fenced), Candidate("b", "def f(x): return x")]
    user = builtin_roles()["fuser"].messages("Write f.", candidates, "code")[-1]["content"]
    assert "Candidate 1:\n" + fenced + "\n\nCandidate 2:\n```python\ndef f(x): return x\n```" in user


def test_a_verifier_scoring_a_candidate_that_does_not_exist_is_ignored() -> None:
    """R9: "Candidate 4" from a verifier of three candidates (small models miscount) must not index past
    the list (IndexError: the verifier node failed)."""
    candidates = [Candidate("a", "1"), Candidate("b", "2"), Candidate("c", "3")]
    assert pick_verified("Candidate 1: 2\nCandidate 2: 7\nCandidate 3: 5\nCandidate 4: 9", candidates) == "2"
    assert pick_verified("Candidate 0: 9\nCandidate 3: 1", candidates) == "3"


def test_a_verifiers_second_score_for_a_candidate_replaces_its_first() -> None:
    """R11: a verifier that revises a score ("Candidate 1: 9 ... on reflection Candidate 1: 2") meant
    the later one."""
    candidates = [Candidate("a", "1"), Candidate("b", "2")]
    assert pick_verified("Candidate 1: 9\nCandidate 2: 5\nOn reflection, Candidate 1: 2", candidates) == "2"


def test_critic_and_fuser_get_their_own_prompts_and_every_input_in_order(
    make_graph: Any, scripted: ScriptedServer
) -> None:
    """R3, R4, R5, R15, R16: what a critic and a fuser are sent, over the scripted server: the question,
    each predecessor's answer numbered in finishing order (none dropped), and their own role's text."""
    api = scripted.api_base
    scripted.add_rule(Rule(model="one", replies=["Final answer: 11"]))
    scripted.add_rule(Rule(model="two", replies=["Final answer: 22"]))
    scripted.add_rule(Rule(replies=["Final answer: 33"]))
    graph = make_graph(
        f'  one: {{model: hosted_vllm/one, api_base: "{api}"}}\n  two: {{model: hosted_vllm/two, api_base: "{api}"}}\n'
        "name: review\nanswer_format: number\nnodes:\n"
        "  - {id: a, role: assistant, model: one}\n  - {id: b, role: assistant, model: two}\n"
        "  - {id: c, role: critic, model: m}\n  - {id: f, role: fuser, model: m}\n"
        "edges: ['a, b -> c', 'a, b, c -> f']\n"
    )
    assert graph.run("How many legs have 5 ants and a spider?").answer == "33"
    sent = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in scripted.completion_requests}
    critic = next(user for system, user in sent.items() if "strict reviewer" in system)
    fuser = next(user for system, user in sent.items() if "merge several answers" in system)
    pair = [c for c in critic.split("Proposed answers:\n", 1)[1].split("\n\nReview", 1)[0].split("\n\n")]
    assert sorted(pair) == ["Candidate 1:\n11", "Candidate 2:\n22"] or sorted(pair) == [
        "Candidate 1:\n22",
        "Candidate 2:\n11",
    ]
    for user in (critic, fuser):
        assert "Question:\nHow many legs have 5 ants and a spider?" in user
        assert "\n\n".join(pair) in user  # the two answers, numbered in the same (finishing) order
    assert "Review each proposed answer" in critic and "Candidate 3" not in critic
    assert "Candidate answers:\n" + "\n\n".join(pair) + "\n\nCandidate 3:\n33" in fuser  # the critic finished last
    assert "Combine them into the single best answer" in fuser
