"""The lexical side of handbook similarity (tokens, BM25, bag-of-words cosine) and the embedder switch."""

from __future__ import annotations

import math

import pytest

from agentscale.errors import AgentScaleError
from agentscale.memory import BM25, MiniLMEmbedder, default_embedder, embed_extra_installed
from agentscale.memory.embed import behavior_text, lexical_cosine, tokens


def test_tokens_fold_plurals_but_keep_double_s_words() -> None:
    """`units` and `unit` must match (a query in the singular missed a behavior written in the
    plural), but `class` is no plural: stripped to `clas`, it no longer matched `class`."""
    assert tokens("Units, cities and the Class of glass_pieces") == ["unit", "city", "class", "glass", "piece"]
    assert tokens("gas bus") == ["gas", "bus"]  # three letters: too short to be a plural


def test_a_repeated_query_word_counts_once() -> None:
    """A question repeating a word ("speed ... speed") must not weigh that word twice: it drowned
    the other words of the question and ranked the wrong behavior first."""
    bm25 = BM25([["speed", "unit"], ["overlap", "set"]])
    assert list(bm25.scores(["speed", "speed"])) == list(bm25.scores(["speed"]))


def test_a_rare_word_weighs_more_than_a_common_one() -> None:
    """BM25's idf: a word in every behavior says little, one in a single behavior a lot; inverted,
    retrieval followed filler words like "number" instead of the distinctive one."""
    bm25 = BM25([["number", "hypotenuse"], ["number", "remainder"], ["number", "average"]])
    common, rare = bm25.scores(["number"])[0], bm25.scores(["hypotenuse"])[0]
    assert rare > common > 0
    n, df = 3, 1
    assert bm25.idf["hypotenuse"] == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)))


def test_a_match_in_a_short_behavior_scores_above_the_same_match_in_a_long_one() -> None:
    """Length normalisation (b = 0.75): a long, rambling behavior mentioning a word once must not
    tie with a short one about exactly that."""
    bm25 = BM25([["pythagoras", "triangle"], ["pythagoras", "a", "b", "c", "d", "e", "f", "g"]])
    short, long = bm25.scores(["pythagoras"])
    assert short > long > 0


def test_lexical_cosine_is_a_true_cosine() -> None:
    """The near-duplicate test without embeddings compares it to a threshold: half the words in
    common must read 0.5, identical texts 1.0 (a wrong norm merged distinct behaviors or none)."""
    assert lexical_cosine("pivot remainder", "pivot triangle") == pytest.approx(0.5)
    assert lexical_cosine("Check the units", "check units") == pytest.approx(1.0)
    assert lexical_cosine("the and", "pivot") == 0.0  # stopwords only: no vector


def test_behavior_text_reads_the_name_as_words() -> None:
    assert behavior_text("behavior_unit_conversion", "Convert first.") == "unit conversion: Convert first."


@pytest.mark.parametrize("value", ["off", "bm25", "none", "NO", " 0 "])
def test_embeddings_can_be_switched_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """`AGENTSCALE_EMBEDDINGS=bm25` (or off) must force the lexical path even with the extra installed:
    otherwise a user asking for BM25 got MiniLM (slower, and other rankings)."""
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", value)
    assert default_embedder() is None


def test_an_unknown_embeddings_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", "minlm")
    with pytest.raises(AgentScaleError, match="AGENTSCALE_EMBEDDINGS='minlm'"):
        default_embedder()


@pytest.mark.parametrize("value", ["auto", "minilm", ""])
def test_embeddings_on_give_the_one_minilm_of_the_process(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    if not embed_extra_installed():
        pytest.skip("the embed extra is not installed")
    monkeypatch.setenv("AGENTSCALE_EMBEDDINGS", value)
    embedder = default_embedder()
    assert isinstance(embedder, MiniLMEmbedder) and embedder is default_embedder()
