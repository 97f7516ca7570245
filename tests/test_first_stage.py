"""The first-stage order (core_rerank.first_stage): the in-list BM25, first_stage_scores, and the
ranking's independence from the input order, held to the naive eager reference."""

import naive_reference
import numpy as np
import pytest
from test_capture import DOCS, QUERY, _tiny
from transformers import AutoTokenizer

from core_rerank import CoReReranker, HeadConfig, InputError
from core_rerank.first_stage import check_first_stage_scores, first_stage_permutation, fuse, lexical_scores

HEADS = [(1, 3), (2, 0), (3, 2)]
MORE_DOCS = DOCS + ["Gravity of the sun also moves the sea a little.", "Cats sleep most of the day."]
SHUFFLE = [4, 0, 3, 1, 2]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def model(tokenizer):
    return _tiny("llama", len(tokenizer)).float().eval()


def _reranker(model, tokenizer, order_by, **kwargs):
    return CoReReranker(model, tokenizer, heads=HeadConfig(heads=HEADS, scoring={"order_by": order_by}), **kwargs)


def test_lexical_scores_reward_query_words_and_discount_words_every_document_has():
    texts = ["the moon pulls the tides", "the sun is a star", "tides tides moon", "nothing here"]
    scores = lexical_scores("moon tides", texts)
    assert scores[3] == 0.0 and scores[1] == 0.0
    assert scores[2] > scores[0] > 0.0  # more matches in a shorter text
    common = lexical_scores("the moon", ["the moon", "the sun", "the sea"])
    assert common[1] == common[2] and 0 < common[1] < common[0] / 5  # "the" is in every text: nearly no weight
    assert lexical_scores("", texts) == [0.0] * 4


def test_permutation_sorts_by_score_with_ties_by_text_not_by_position():
    texts = ["b", "a", "c"]
    assert first_stage_permutation("q", texts, "input") is None
    assert first_stage_permutation("q", texts, "input", [1.0, 1.0, 2.0]) == [2, 1, 0]
    assert first_stage_permutation("q", texts, "lexical") == [1, 0, 2]  # all 0: by text
    with pytest.raises(InputError, match="order_by"):
        first_stage_permutation("q", texts, "random")


@pytest.mark.parametrize("bad", [[1.0], "12", [1.0, float("nan")], [True, 1.0], [1.0, "2"], {"a": 1, "b": 2}, 3.0])
def test_bad_first_stage_scores_are_input_errors(bad):
    with pytest.raises(InputError, match="first_stage_scores"):
        check_first_stage_scores(bad, 2)
    assert check_first_stage_scores(None, 2) is None
    assert check_first_stage_scores([1, 2.5], 2) == [1.0, 2.5]


@pytest.mark.parametrize("forward", ["packed", "sequential"])
def test_lexical_order_makes_scores_independent_of_the_input_order(model, tokenizer, forward):
    lexical = _reranker(model, tokenizer, "lexical", window_tokens=32, forward=forward)
    plain = _reranker(model, tokenizer, "input", window_tokens=32, forward=forward)
    shuffled = [MORE_DOCS[i] for i in SHUFFLE]
    got, again = lexical.score(QUERY, MORE_DOCS), lexical.score(QUERY, shuffled)
    assert again == [got[i] for i in SHUFFLE]  # the very same prompts: equal, not just close
    before, after = plain.score(QUERY, MORE_DOCS), plain.score(QUERY, shuffled)
    assert after != pytest.approx([before[i] for i in SHUFFLE], rel=1e-3)  # the input order mattered


def test_first_stage_scores_order_the_prompt_and_equal_the_reference_there(model, tokenizer):
    reranker = _reranker(model, tokenizer, "input")
    eager = _tiny("llama", len(tokenizer)).float().eval()
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    first_stage = np.array([0.1, 3.0, 2.0, -1.0], dtype=np.float32)  # numpy is fine too
    got = reranker.score(QUERY, DOCS, first_stage_scores=first_stage)
    order = [1, 2, 0, 3]  # strongest first, the documents' first-stage order
    expected = naive_reference.document_scores(eager, reranker.prepare(QUERY, [DOCS[i] for i in order]), HEADS)
    assert [got[i] for i in order] == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert reranker.score(QUERY, [DOCS[i] for i in order]) == pytest.approx(expected, rel=1e-4, abs=1e-7)
    ranked = reranker.rerank(QUERY, DOCS, first_stage_scores=first_stage)
    assert sorted(r.index for r in ranked) == [0, 1, 2, 3] and [r.score for r in ranked] == sorted(got, reverse=True)
    with pytest.raises(InputError, match="first_stage_scores"):
        reranker.rerank(QUERY, DOCS, first_stage_scores=[1.0, 2.0])


def test_fuse_adds_weighted_z_scores_and_keeps_empty_documents_last():
    scores = {None: [1.0, 3.0, float("-inf"), 2.0]}
    assert fuse(scores, [5.0, 1.0, 9.0, 3.0], 0.0) is scores  # weight 0: unchanged
    assert fuse(scores, None, 1.0) is scores
    fused = fuse(scores, [5.0, 1.0, 9.0, 3.0], 1.0)[None]
    # own z over the 3 finite ones: -1.22, 1.22, 0; first stage z over the same: 1.22, -1.22, 0
    assert fused[0] == pytest.approx(0.0, abs=1e-9) and fused[1] == pytest.approx(0.0, abs=1e-9)
    assert fused[2] == float("-inf") and fused[3] == pytest.approx(0.0, abs=1e-9)
    heavy = fuse(scores, [5.0, 1.0, 9.0, 3.0], 3.0)[None]
    assert heavy[0] > heavy[3] > heavy[1]  # the first stage now decides


def test_first_stage_weight_in_the_heads_fuses_the_reranker_scores(model, tokenizer):
    plain = _reranker(model, tokenizer, "input")
    heads = HeadConfig(heads=HEADS, scoring={"first_stage_weight": 0.5})
    fusing = CoReReranker(model, tokenizer, heads=heads)
    first_stage = [0.1, 3.0, 2.0, -1.0]
    raw = plain.score(QUERY, DOCS, first_stage_scores=first_stage)
    assert fusing.score(QUERY, DOCS) == pytest.approx(plain.score(QUERY, DOCS))  # no scores: nothing to fuse
    assert fusing.score(QUERY, DOCS, first_stage_scores=first_stage) == pytest.approx(
        fuse({None: raw}, first_stage, 0.5)[None]
    )
    with pytest.raises(InputError, match=r"first_stage_weight|greater"):
        HeadConfig(heads=HEADS, scoring={"first_stage_weight": -1})
