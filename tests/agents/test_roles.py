"""Role prompts come from package data; the verifier and the vote pick as documented."""

from __future__ import annotations

from agentscale.agents.roles import Candidate, builtin_roles, majority_vote, pick_verified, resolve_roles
from agentscale.graphs.spec import RoleSpec


def test_builtin_roles_load_from_package_data() -> None:
    roles = builtin_roles()
    assert set(roles) == {"assistant", "critic", "fuser", "verifier", "vote"}
    assert not roles["vote"].calls_model


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
