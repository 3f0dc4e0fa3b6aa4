"""Retrieval: the relevant behavior comes first on a small labelled set (BM25 and MiniLM); topics; freshness."""

from __future__ import annotations

import pytest

from agentscale import AgentScaleError, Store
from agentscale.memory import BM25, Handbook, MiniLMEmbedder, Proposal, Retriever

BEHAVIORS = {
    "behavior_unit_conversion": "Convert all speeds, distances and times to the same units before combining them.",
    "behavior_inclusion_exclusion": "Count a union of overlapping sets by adding the set sizes and subtracting the overlaps.",
    "behavior_percent_change": "Percent change equals the difference divided by the original value, times one hundred.",
    "behavior_work_rates": "When several workers share a job, add their rates (jobs per hour) and invert the sum.",
    "behavior_pythagoras": "In a right triangle the squared hypotenuse equals the sum of the squared legs.",
    "behavior_modular_cycles": "For remainders of large powers, find the cycle of the last digits and reduce the exponent.",
    "behavior_average_total": "An average times the number of items gives the total; use totals to add or remove items.",
    "behavior_probability_complement": "For 'at least one', compute one minus the probability that none happens.",
}

# (query, relevant behavior): lexical queries share words with the behavior; semantic ones paraphrase it
LEXICAL = [
    (
        "A car drives 90 km in 45 minutes. What is its speed in metres per second? Mind the units.",
        "behavior_unit_conversion",
    ),
    (
        "Of 40 students, 25 play chess and 18 play go; 7 play both. How many play at least one? Count the overlap once.",
        "behavior_inclusion_exclusion",
    ),
    ("A price rose from 80 to 100. What is the percent change?", "behavior_percent_change"),
    (
        "Anna paints a fence in 3 hours and Ben in 6 hours. Working together at their combined rate, how long?",
        "behavior_work_rates",
    ),
    ("A right triangle has legs 6 and 8. How long is the hypotenuse?", "behavior_pythagoras"),
    ("What is the last digit of 7 to the power 222? Look at the remainders.", "behavior_modular_cycles"),
    (
        "The average of 5 numbers is 12. One number is removed and the average of the rest is 10. Which number?",
        "behavior_average_total",
    ),
    ("Three dice are rolled. What is the probability of at least one six?", "behavior_probability_complement"),
]
SEMANTIC = [
    ("A cyclist rides 12 kilometres in 30 minutes; how fast is that in m/s?", "behavior_unit_conversion"),
    (
        "In a class, 25 like tea, 18 like coffee and 7 like both drinks. How many like tea or coffee?",
        "behavior_inclusion_exclusion",
    ),
    ("A shirt went from $80 to $100. By what percentage did it increase?", "behavior_percent_change"),
    ("One pipe fills a tank in 3 hours, another in 6. Both together?", "behavior_work_rates"),
    (
        "A ladder leans against a wall, its foot 6 m away and its top 8 m high. How long is the ladder?",
        "behavior_pythagoras",
    ),
    ("What is the units digit of 7^222?", "behavior_modular_cycles"),
    (
        "Five numbers have a mean of 12; after dropping one, the mean of the other four is 10. What was dropped?",
        "behavior_average_total",
    ),
    ("Three dice are thrown. How likely is it that a six shows on some die?", "behavior_probability_complement"),
]


def _book(store: Store, embedder: MiniLMEmbedder | None) -> Handbook:
    book = Handbook(store, "math", embedder=embedder)
    topics = {"behavior_pythagoras": "geometry", "behavior_unit_conversion": "physics"}
    book.add([Proposal(n, i, topic=topics.get(n, "arithmetic")) for n, i in BEHAVIORS.items()], dedup_batch=False)
    return book


def test_bm25_ranks_the_relevant_behavior_first(store: Store) -> None:
    retriever = Retriever(_book(store, None))
    assert retriever.method == "bm25"
    for query, relevant in LEXICAL:
        found = retriever.search(query, 3)
        assert found and found[0].name == relevant, (query, [f.name for f in found])
        assert found[0].method == "bm25"
    assert retriever.search("zebra xylophone", 3) == []  # no shared word: nothing


def test_embeddings_rank_the_relevant_behavior_first(store: Store, minilm: MiniLMEmbedder) -> None:
    retriever = Retriever(_book(store, minilm))
    assert retriever.method == "embedding"
    for query, relevant in SEMANTIC + LEXICAL:
        found = retriever.search(query, 3)
        assert [f.method for f in found] == ["embedding"] * 3
        assert found[0].name == relevant, (query, [(f.name, round(f.score, 2)) for f in found])


def test_topic_filter_and_k(store: Store) -> None:
    retriever = Retriever(_book(store, None))
    query = "A right triangle with legs 6 and 8 and a speed of 90 km per hour in consistent units"
    assert [f.name for f in retriever.search(query, 5, topic="geometry")] == ["behavior_pythagoras"]
    assert [f.name for f in retriever.search(query, 5, topic="PHYSICS")] == ["behavior_unit_conversion"]
    assert len(retriever.search(query, 1)) == 1


def test_a_topic_filter_finds_behaviors_merged_from_that_topic(store: Store) -> None:
    book = _book(store, None)
    retriever = Retriever(book)
    query = "Convert the speeds and distances to the same units"
    assert retriever.search(query, 5, topic="kinematics") == []
    book.add([Proposal("behavior_same_units", BEHAVIORS["behavior_unit_conversion"], topic="Kinematics")])
    [found] = retriever.search(query, 5, topic="kinematics")
    assert (found.name, found.topic) == ("behavior_unit_conversion", "Kinematics")
    assert retriever.search(query, 1)[0].topic == "physics"  # unfiltered: the topic it was first filed under


def test_index_follows_inserts_and_embeds_behaviors_stored_without_one(store: Store, minilm: MiniLMEmbedder) -> None:
    _book(store, None)  # built without embeddings
    retriever = Retriever(Handbook(store, "math", embedder=minilm))
    assert retriever.search("units digit of 3^100", 1)[0].name == "behavior_modular_cycles"
    assert all(r.embedding_model == "all-MiniLM-L6-v2" for r in Handbook(store, "math", embedder=None).behaviors())
    Handbook(store, "math", embedder=minilm).add(
        [Proposal("behavior_gcd_euclid", "Find a greatest common divisor with Euclid's repeated remainders.")]
    )
    assert retriever.search("greatest common divisor of 84 and 36", 1)[0].name == "behavior_gcd_euclid"


def test_a_handbook_deleted_and_made_again_is_read_again(store: Store) -> None:
    """A server's retriever kept the deleted handbook's behaviors: the one made again under its name
    started over and one import brought its revision back to the number the old index was kept for."""
    book = Handbook(store, "math", embedder=None)
    book.add([Proposal("behavior_carry_digits", "Add digits column by column from the right, carrying tens.")])
    retriever = Retriever(Handbook(store, "math", embedder=None))
    assert [r.name for r in retriever.search("add the digits", 3)] == ["behavior_carry_digits"]
    revision = book.revision()
    book.delete()
    book.add([Proposal("behavior_add_digits_twice", "Add the digits twice, once from each end, and compare.")])
    assert book.revision() != revision and book.revision() is not None
    assert [r.name for r in retriever.search("add the digits", 3)] == ["behavior_add_digits_twice"]


def test_bm25_scores() -> None:
    bm25 = BM25([["unit", "speed"], ["set", "union", "overlap"], []])
    scores = bm25.scores(["speed", "speed", "missing"])
    assert scores[0] > 0 and scores[1] == 0 and scores[2] == 0
    assert BM25([]).scores(["a"]).shape == (0,)


@pytest.mark.parametrize("k", [0, -1])
def test_non_positive_k_returns_nothing(store: Store, k: int) -> None:
    assert Retriever(_book(store, None)).search("speed", k) == []


def test_what_is_no_count_or_no_name_is_said(store: Store) -> None:
    """From Python, `k="3"` failed comparing it to 0 and a name of None on `.strip` (an API walk);
    `min_uses=0` named the CLI's flag alone."""
    book = _book(store, None)
    with pytest.raises(TypeError, match="k takes a whole number, not str"):
        Retriever(book).search("speed", "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a handbook's name is a string, not NoneType"):
        Handbook(store, None, embedder=None)  # type: ignore[arg-type]
    with pytest.raises(AgentScaleError, match=r"min_uses \(--min-uses\) must be at least 1"):
        book.prune(min_uses=0)


def test_equal_scores_keep_handbook_order(store: Store) -> None:
    """Behaviors tied on score come oldest first, the same on every run: an unstable sort shuffled
    ties, so which behaviors a top-k cut kept (and so the prompts, and the response cache hits)
    changed between identical runs."""
    words = ["apple", "brick", "cloud", "delta", "ember", "frost", "grape", "harbor", "island", "jungle", "kettle"]
    book = Handbook(store, "ties", embedder=None)
    proposals = []
    for i in range(8):  # even: short (higher BM25), odd: longer, each naming "pivot" once
        text = (
            f"Pivot {words[i]}."
            if i % 2 == 0
            else f"Pivot {words[i]} {words[(i + 4) % 11]} {words[(i + 7) % 11]} again."
        )
        proposals.append(Proposal(f"behavior_{words[i]}", text))
    book.add(proposals, dedup_batch=False)
    found = Retriever(book).search("pivot", 8)
    short, long = [f"behavior_{words[i]}" for i in range(0, 8, 2)], [f"behavior_{words[i]}" for i in range(1, 8, 2)]
    assert [f.name for f in found] == short + long
    assert len({f.score for f in found}) == 2  # two tie groups


def test_the_json_form_keeps_four_decimals_of_the_score(store: Store) -> None:
    """`handbook search --json` shows scores to 4 decimals: close candidates must stay distinguishable."""
    [found] = Retriever(_book(store, None)).search("hypotenuse of a right triangle", 1)
    shown = found.to_dict()
    assert shown["score"] == round(found.score, 4) and shown["score"] != round(found.score, 1)
    assert (shown["name"], shown["topic"], shown["method"]) == ("behavior_pythagoras", "geometry", "bm25")
