"""The handbook in SQLite: dedup on insert with provenance, counters, prune, export/import round trip."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

import pytest

from agentscale import AgentScaleError, Store
from agentscale.memory import Handbook, HandbookNotFound, MiniLMEmbedder, Proposal, import_handbook, list_handbooks
from agentscale.memory.handbook import SAME_NAME_THRESHOLD
from tests.memory.conftest import seed_handbook

UNITS = "Convert all quantities to the same unit before comparing or adding them."
UNITS_PARAPHRASE = "Before adding or comparing quantities, convert them into one common unit."
CHECK_UNITS = "Check that the units of the final answer match what the question asks for."
PERCENT = "Percent change is the difference divided by the original value, times 100."


def test_same_name_merges_and_keeps_provenance(store: Store) -> None:
    book = Handbook(store, "math", embedder=None)
    first = book.add([Proposal("behavior_units", UNITS, run_id="r1", item_id="q1", topic="physics")])
    second = book.add([Proposal("behavior_units", UNITS_PARAPHRASE, "r2", "q7")])
    (merged,) = second.merged
    assert first.added == ["behavior_units"] and merged[:2] == ("behavior_units", "behavior_units")
    assert SAME_NAME_THRESHOLD <= merged[2] < 1  # the instructions' own similarity (it read 1.0 for any)
    [row] = book.behaviors()
    assert (row.instruction, row.source_run, row.source_item, row.merged) == (UNITS, "r1", "q1", 1)
    sources = book.sources(row)
    assert [(s.run_id, s.item_id, s.similarity) for s in sources] == [("r1", "q1", None), ("r2", "q7", merged[2])]
    assert sources[1].instruction == UNITS_PARAPHRASE


def test_an_unrelated_behavior_under_a_name_already_held_is_added_under_a_free_name(store: Store) -> None:
    """A real 0.5B curator gave 11 of 13 proposals the extract prompt's example name, and unrelated
    behaviors merged under it ("similarity 1.00"): the second instruction could never be retrieved."""
    book = Handbook(store, "math", embedder=None)
    example = "behavior_inclusion_exclusion_principle"
    eggs = "Identify the eggs that are hidden in the yard and those still hidden, then take the difference."
    quiz = "Multiply each subject's question count by the share answered right, then add the subjects."
    book.add([Proposal(example, eggs, "r1", "q1")])
    report = book.add([Proposal(example, quiz, "r1", "q2"), Proposal(example, quiz + " Check the sum.", "r1", "q3")])
    assert report.added == [f"{example}_2"] and [m[:2] for m in report.merged] == [(example, f"{example}_2")]
    kept = book.get(f"{example}_2")
    assert kept is not None and kept.instruction == quiz
    assert [s.proposed_name for s in book.sources(kept)] == [example, example]  # as proposed
    assert book.get(example).instruction == eggs  # type: ignore[union-attr]
    # a real pair of one build, unrelated but for common words (cosine 0.205): kept apart too
    cookies = (
        "William can place 234 cookies on the table, and he has 241 cookies. The solution could have been "
        "shorter by reducing the number of cookies placed on each table."
    )
    letters = (
        "David sends 4 letters a week that are 5 pages long and writes a page every 11 minutes. The solution "
        "could have been shorter by reducing the number of letters and pages written in a week."
    )
    other = Handbook(store, "other", embedder=None)
    other.add([Proposal(example, cookies)])
    assert other.add([Proposal(example, letters)]).added == [f"{example}_2"]


def test_lexical_near_duplicates_merge_without_embeddings(store: Store) -> None:
    book = Handbook(store, "math", embedder=None)
    book.add([Proposal("behavior_convert_units", UNITS)])
    report = book.add(
        [
            Proposal("behavior_unit_conversion", UNITS_PARAPHRASE, "r2", "q2"),
            Proposal("behavior_check_units", CHECK_UNITS, "r2", "q2"),
        ]
    )
    assert [m[:2] for m in report.merged] == [("behavior_unit_conversion", "behavior_convert_units")]
    assert report.added == ["behavior_check_units"]
    assert sorted(r.name for r in book.behaviors()) == ["behavior_check_units", "behavior_convert_units"]


def test_embedding_near_duplicates_merge(store: Store, minilm: MiniLMEmbedder) -> None:
    book = Handbook(store, "math", embedder=minilm)
    book.add([Proposal("behavior_convert_units", UNITS), Proposal("behavior_percent_change", PERCENT)])
    report = book.add(
        [
            Proposal("behavior_units_first", "Convert every quantity to the same unit before you compare or add them."),
            Proposal("behavior_check_units", CHECK_UNITS),
        ]
    )
    [(proposed, kept, similarity)] = report.merged
    assert (proposed, kept) == ("behavior_units_first", "behavior_convert_units") and similarity >= 0.85
    assert report.added == ["behavior_check_units"]
    rows = {r.name: r for r in book.behaviors()}
    assert all(r.embedding_model == "all-MiniLM-L6-v2" and r.embedding is not None for r in rows.values())
    assert len(rows["behavior_check_units"].embedding or b"") == 384 * 4


def test_reads_of_a_missing_handbook_fail_clearly(store: Store) -> None:
    book = Handbook(store, "nope", embedder=None)
    assert not book.exists()
    with pytest.raises(HandbookNotFound, match="agentscale handbook build --handbook nope"):
        book.behaviors()
    with pytest.raises(AgentScaleError, match="bad handbook name"):
        Handbook(store, "two words")


def test_counters_and_prune(store: Store) -> None:
    book = Handbook(store, "math", embedder=None)
    book.add(
        [
            Proposal("behavior_good", UNITS),
            Proposal("behavior_bad", PERCENT),
            Proposal("behavior_ignored", "Draw a diagram of the situation before writing equations."),
            Proposal("behavior_new", "Estimate the magnitude of the answer first to catch slips."),
        ]
    )
    for _ in range(3):
        book.record_use(["behavior_good", "behavior_bad", "behavior_ignored"], ["behavior_good", "behavior_bad"])
        book.record_outcome(["behavior_good"], True)
        book.record_outcome(["behavior_bad"], False)
    book.record_outcome(["behavior_bad"], True)
    book.record_use(["behavior_unknown"], ["behavior_unknown"])  # not in the handbook: ignored
    rows = {r.name: r for r in book.behaviors()}
    assert (rows["behavior_good"].times_retrieved, rows["behavior_good"].times_cited) == (3, 3)
    assert (rows["behavior_bad"].times_cited_correct, rows["behavior_bad"].times_cited_wrong) == (1, 3)
    assert rows["behavior_ignored"].times_cited == 0 and rows["behavior_new"].times_retrieved == 0

    assert [r.name for r in book.prune(min_uses=5, unhelpful=True)] == []  # not enough evidence yet
    assert [r.name for r in book.prune(min_uses=3, unhelpful=True, dry_run=True)] == ["behavior_bad"]
    assert len(book.behaviors()) == 4  # dry run
    assert [r.name for r in book.prune(min_uses=3)] == ["behavior_ignored"]  # retrieved 3x, never cited
    assert [r.name for r in book.prune(min_uses=3, unhelpful=True)] == ["behavior_bad"]
    assert sorted(r.name for r in book.behaviors()) == ["behavior_good", "behavior_new"]
    with pytest.raises(AgentScaleError, match="say what to prune"):
        book.prune()


def test_export_import_round_trip(store: Store, tmp_path: Path) -> None:
    book = Handbook(store, "math", embedder=None)
    book.add(
        [
            Proposal("behavior_convert_units", UNITS, "r1", "q1", topic="physics"),
            Proposal("behavior_percent_change", PERCENT, "r1", "q2", topic="finance"),
            # coexisting lexically similar behaviors must stay apart on import
            Proposal("behavior_check_units", CHECK_UNITS, "r1", "q3"),
        ]
    )
    book.add([Proposal("behavior_convert_units", UNITS_PARAPHRASE, "r2", "q9")])
    book.record_use(["behavior_convert_units"], ["behavior_convert_units"])
    book.record_outcome(["behavior_convert_units"], True)
    exported = book.export()

    other = Store(tmp_path / "other.db")
    report = import_handbook(other, json.loads(json.dumps(exported)), "copy", embedder=None)
    assert sorted(report.added) == sorted(b["name"] for b in exported["behaviors"]) and report.merged == []
    again = Handbook(other, "copy", embedder=None).export()
    assert again["handbook"] == "copy"
    assert again["behaviors"] == exported["behaviors"]

    # importing into a handbook that has some of them merges, adding counters and provenance
    mine = Handbook(store, "mine", embedder=None)
    mine.add([Proposal("behavior_convert_units", UNITS, "r7", "q7")])
    mine.record_use(["behavior_convert_units"], ["behavior_convert_units"])
    report = import_handbook(store, exported, "mine", embedder=None)
    assert len(report.added) == 2 and [m[0] for m in report.merged] == ["behavior_convert_units"]
    units = mine.get("behavior_convert_units")
    assert (units.times_cited, units.times_cited_correct) == (2, 1)
    assert len(mine.sources(units)) == 3  # its own, and the export's two
    # ... but not into one that holds the whole export already (its own handbook): counters twice
    with pytest.raises(AgentScaleError, match="already holds every behavior source of this export"):
        import_handbook(store, exported, "math", embedder=None)
    assert book.get("behavior_convert_units").times_cited == 1
    assert [b["handbook"] for b in list_handbooks(store)] == ["math", "mine"]
    assert {b["handbook"]: b["behaviors"] for b in list_handbooks(other)} == {"copy": 3}


def test_a_behavior_merged_from_another_topic_serves_both(store: Store) -> None:
    """Deduplication ignores topics: a build of topic B whose behaviors all merged into topic A's filed
    nothing under B, so `memory: {topic: B}` and `--topic B` found none of them."""
    book = Handbook(store, "math", embedder=None)
    book.add([Proposal("behavior_convert_units", UNITS, "r1", "q1", topic="physics")])
    report = book.add([Proposal("behavior_unit_conversion", UNITS_PARAPHRASE, "r2", "q2", topic="Chemistry")])
    assert [m[:2] for m in report.merged] == [("behavior_unit_conversion", "behavior_convert_units")]
    [row] = book.behaviors("chemistry")
    assert row.name == "behavior_convert_units" and book.behaviors("physics") == [row]
    assert book.topics() == {row.id: ["physics", "Chemistry"]}
    assert [s.topic for s in book.sources(row)] == ["physics", "Chemistry"]
    book.check_topic("CHEMISTRY", "memory.topic")
    book.add([Proposal("behavior_umlaut", "Read Ä as A-umlaut.", topic="Ärger")])
    assert [r.name for r in book.behaviors("ärger")] == ["behavior_umlaut"]  # SQLite's lower() is ASCII only
    with pytest.raises(AgentScaleError, match=r"--topic 'biology': .* \(its topics: 'Chemistry', 'physics', 'Ärger'\)"):
        book.check_topic("biology", "--topic")


def test_an_import_merging_into_a_behavior_brings_every_exported_source(store: Store, tmp_path: Path) -> None:
    """An import that merged into an existing behavior added one provenance row, not the exported ones
    (nor their topics)."""
    exporting = Handbook(Store(tmp_path / "theirs.db"), "theirs", embedder=None)
    exporting.add([Proposal("behavior_units", UNITS, "r1", "q1", topic="physics")])
    exporting.add([Proposal("behavior_units", UNITS_PARAPHRASE, "r2", "q2", topic="chemistry")])
    exported = exporting.export()
    assert exported["behaviors"][0]["topics"] == ["physics", "chemistry"]
    book = Handbook(store, "ours", embedder=None)
    book.add([Proposal("behavior_units", UNITS, "r0", "q0", topic="math")])
    assert import_handbook(store, exported, "ours", embedder=None).merged == [("behavior_units", "behavior_units", 1.0)]
    [row] = book.behaviors()
    sources = [(s.run_id, s.topic, s.similarity) for s in book.sources(row)]
    paraphrase = exported["behaviors"][0]["sources"][1]["similarity"]  # as it merged there
    assert sources == [("r0", "math", None), ("r1", "physics", 1.0), ("r2", "chemistry", paraphrase)]
    assert book.topics()[row.id or 0] == ["math", "physics", "chemistry"] and row.merged == 2

    # an export written before sources carried a topic: its sources take the behavior's
    for source in exported["behaviors"][0]["sources"]:
        del source["topic"]
    import_handbook(store, exported, "older", embedder=None)
    older = Handbook(store, "older", embedder=None)
    assert [s.topic for s in older.sources(older.get("behavior_units"))] == ["physics", "physics"]


def test_an_import_adds_counters_only_for_evidence_new_to_the_behavior(store: Store, tmp_path: Path) -> None:
    """The handbook audit: a newer export of a handbook imported over an older one doubled every
    counter of the behaviors both held (21 citations read 42), a backup restoring one pruned behavior
    doubled all the others, and a hand-written export (no sources) imported twice doubled everything."""
    theirs = Handbook(Store(tmp_path / "theirs.db"), "theirs", embedder=None)
    theirs.add([Proposal("behavior_units", UNITS, "r1", "q1")])
    theirs.add([Proposal("behavior_units", UNITS_PARAPHRASE, "r2", "q2")])
    older = theirs.export()
    older["behaviors"][0].update(times_retrieved=21, times_cited=10, times_cited_correct=6, times_cited_wrong=4)
    import_handbook(store, older, "team", embedder=None)
    theirs.add([Proposal("behavior_carry", "Carry the tens digit into the next column when adding.", "r3", "q3")])
    newer = theirs.export()
    newer["behaviors"][0].update(times_retrieved=21, times_cited=10, times_cited_correct=6, times_cited_wrong=4)
    import_handbook(store, newer, "team", embedder=None)
    team = Handbook(store, "team", embedder=None)
    units = team.get("behavior_units")
    counts = (units.times_retrieved, units.times_cited, units.times_cited_correct, units.times_cited_wrong)
    assert counts == (21, 10, 6, 4) and units.merged == 1 and len(team.sources(units)) == 2
    assert team.get("behavior_carry").merged == 0

    # a source of its own beside the held ones: the larger counts, every source once
    newer["behaviors"][0]["sources"].append({"run_id": "r9", "item_id": "q9", "proposed_name": "behavior_units"})
    newer["behaviors"][0].update(times_retrieved=30, times_cited=12)
    import_handbook(store, {**newer, "behaviors": newer["behaviors"][:1]}, "team", embedder=None)
    units = team.get("behavior_units")
    assert (units.times_retrieved, units.times_cited, units.times_cited_correct) == (30, 12, 6)
    assert len(team.sources(units)) == 3 and units.merged == 2

    # written by hand, no sources: imported twice, counted once
    curated = {
        "format": "agentscale-handbook",
        "version": 1,
        "handbook": "curated",
        "behaviors": [{"name": "behavior_b", "instruction": UNITS, "times_retrieved": 10, "times_cited": 5}],
    }
    for _ in range(2):
        import_handbook(store, curated, embedder=None)
    b = Handbook(store, "curated", embedder=None).get("behavior_b")
    assert (b.times_retrieved, b.times_cited, b.merged) == (10, 5, 0)

    # evidence new to the behavior still adds up: another handbook's own sources
    other = Handbook(Store(tmp_path / "other.db"), "other", embedder=None)
    other.add([Proposal("behavior_units", UNITS, "r5", "q5")])
    exported = other.export()
    exported["behaviors"][0].update(times_retrieved=4, times_cited=1)
    import_handbook(store, exported, "team", embedder=None)
    units = team.get("behavior_units")
    assert (units.times_retrieved, units.times_cited) == (34, 13) and units.merged == 3


def test_a_handbook_written_before_sources_had_topics_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Handbook(Store(path), "math", embedder=None).add([Proposal("behavior_units", UNITS, topic="physics")])
    with sqlite3.connect(path) as old:
        old.execute("ALTER TABLE behaviorsource DROP COLUMN topic")
    book = Handbook(Store(path), "math", embedder=None)
    assert [r.name for r in book.behaviors("physics")] == ["behavior_units"]
    book.add([Proposal("behavior_units", UNITS_PARAPHRASE, topic="chemistry")])
    assert [r.name for r in book.behaviors("chemistry")] == ["behavior_units"]


def test_an_exported_time_written_without_a_zone_is_read_as_utc(store: Store) -> None:
    """`"created": "2026-12-05T23:00:00"` (by hand, no zone) was a SQLAlchemy traceback, in a behavior
    or in one of its sources; agentscale stores every time in UTC, so such a time is read as UTC."""
    entry = {
        "name": "behavior_first",
        "instruction": "Write the first step down before the second one.",
        "created": "2026-12-05T23:00:00",
        "sources": [{"run_id": "r", "created": "2026-12-04T10:00:00"}],
    }
    document = {"format": "agentscale-handbook", "version": 1, "handbook": "x", "behaviors": [entry]}
    import_handbook(store, document, embedder=None)
    book = Handbook(store, "x", embedder=None)
    behavior = book.get("behavior_first")
    assert behavior.created.replace(tzinfo=None) == datetime(2026, 12, 5, 23, 0)
    assert [s.created.replace(tzinfo=None) for s in book.sources(behavior)] == [datetime(2026, 12, 4, 10, 0)]


def test_import_rejects_foreign_documents(store: Store) -> None:
    with pytest.raises(AgentScaleError, match="not an agentscale handbook export"):
        import_handbook(store, {"behaviors": []})
    with pytest.raises(AgentScaleError, match=r"behaviors\[0\]: needs a string 'instruction'"):
        import_handbook(
            store, {"format": "agentscale-handbook", "version": 1, "handbook": "x", "behaviors": [{"name": "b"}]}
        )


def test_an_export_of_version_true_is_refused(store: Store) -> None:
    """`"version": true` passed (True == 1)."""
    with pytest.raises(AgentScaleError, match="unsupported handbook export version True"):
        import_handbook(store, {"format": "agentscale-handbook", "version": True, "behaviors": []}, embedder=None)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ({"times_retrieved": "many"}, r"behaviors\[1\]\.times_retrieved: must be a whole number, got 'many'"),
        ({"times_cited": -5}, r"behaviors\[1\]\.times_cited: a count cannot be negative, got -5"),
        ({"created": "garbage"}, r"behaviors\[1\]\.created: must be an ISO time, got 'garbage'"),
        ({"topic": 3}, r"behaviors\[1\]\.topic: must be a string, got 3"),
        ({"instruction": " "}, r"behaviors\[1\]: needs a string 'instruction', not empty"),  # stored as a blank
        ({"sources": [{"similarity": "high"}]}, r"behaviors\[1\]\.sources\[0\]\.similarity: must be a number"),
        ({"sources": [{"created": 5}]}, r"behaviors\[1\]\.sources\[0\]\.created: must be an ISO time, got 5"),
        # a fuzzer's: an OverflowError traceback from SQLite
        ({"times_retrieved": 10**30}, r"behaviors\[1\]\.times_retrieved: a count above 9,223,372,036,854,775,807"),
        # the handbook audit: counts no eval could give, and similarities JSON has no number for
        ({"times_cited": 2, "times_retrieved": 1}, r"behaviors\[1\]: times_cited \(2\) above times_retrieved"),
        (
            {"times_retrieved": 9, "times_cited": 1, "times_cited_correct": 5, "times_cited_wrong": 7},
            r"behaviors\[1\]: times_cited_correct \+ times_cited_wrong \(12\) above times_cited",
        ),
        ({"sources": [{"similarity": float("inf")}]}, r"sources\[0\]\.similarity: must be a finite number, got inf"),
        ({"sources": [{"similarity": float("nan")}]}, r"sources\[0\]\.similarity: must be a finite number, got nan"),
        # a build keeps 20-600 characters: an import stored 5, and 115,999 that went into every prompt
        ({"instruction": "Be ok"}, r"behaviors\[1\]: an instruction of 5 characters; a build keeps 20-600"),
        ({"instruction": "Check. " * 100}, r"behaviors\[1\]: an instruction of 699 characters; a build keeps 20-600"),
    ],
)
def test_import_checks_every_field_before_it_writes(store: Store, field: dict[str, object], message: str) -> None:
    """A count of "many" or a similarity of "high" was a traceback, and a bad source left the import
    half done (the behaviors were written, then their sources failed); -5 and "garbage" were taken."""
    good = {"name": "behavior_first", "instruction": "Write the first step down before the second one."}
    bad = {"name": "behavior_second", "instruction": "Check the units of every quantity you use.", **field}
    document = {"format": "agentscale-handbook", "version": 1, "handbook": "x", "behaviors": [good, bad]}
    with pytest.raises(AgentScaleError, match=message):
        import_handbook(store, document, embedder=None)
    assert list_handbooks(store) == []  # nothing written


def test_a_behavior_right_exactly_at_min_accuracy_is_kept(store: Store) -> None:
    """(A mutation audit.) Mutant `< min_accuracy` -> `<= min_accuracy` survived tests/memory/test_retrieve.py,
    test_inject.py, test_handbook.py and test_cli.py: a behavior whose citing answers were right exactly
    half the time would be removed by `handbook prune --unhelpful` at the default 0.5, against what the
    option says."""
    book = seed_handbook(store, "math", [("behavior_half_right", "Try it."), ("behavior_mostly_wrong", "Guess.")])
    book.record_use(["behavior_half_right", "behavior_mostly_wrong"], ["behavior_half_right", "behavior_mostly_wrong"])
    book.record_outcome(["behavior_half_right"], True)
    book.record_outcome(["behavior_half_right", "behavior_mostly_wrong"], False)
    book.record_outcome(["behavior_mostly_wrong"], False)
    doomed = book.prune(unhelpful=True, min_accuracy=0.5, dry_run=True)
    assert [b.name for b in doomed] == ["behavior_mostly_wrong"]
