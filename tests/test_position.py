"""Position calibration (core_rerank.position): the placeholder twin, the curve, and the fast
path held to the naive eager reference, in windows and both orders, packed and sequential."""

import copy
import json

import naive_reference
import numpy as np
import pytest
from test_capture import DOCS, QUERY, _tiny
from transformers import AutoTokenizer

from core_rerank import CoReReranker, HeadConfig
from core_rerank.position import CURVE_BUCKET, curve_prior, filler_id, fit_curve, placeholder_twin

HEADS = [(1, 3), (2, 0), (3, 2)]
MORE_DOCS = DOCS + ["Gravity of the sun also moves the sea a little.", "Cats sleep most of the day."]


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def models(tokenizer):
    model = _tiny("llama", len(tokenizer)).float().eval()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    return model, eager


def _heads(**scoring):
    return HeadConfig(heads=HEADS, scoring=scoring)


def test_position_settings_round_trip_and_default_to_none():
    config = _heads(position_calibration="curve", position_weight=0.5, position_curve=[0.1, 0.2])
    again = HeadConfig.from_dict(json.loads(config.to_json()))
    assert again.scoring.position_calibration == "curve" and again.scoring.position_curve == [0.1, 0.2]
    assert again.scoring.position_weight == 0.5
    assert HeadConfig(heads=HEADS).scoring.position_calibration == "none"
    with pytest.raises(ValueError):
        HeadConfig(heads=HEADS, scoring={"position_calibration": "slots"})


def test_twin_fills_every_document_token_and_keeps_the_rest(models, tokenizer):
    reranker = CoReReranker(models[0], tokenizer, heads=_heads())
    prepared = reranker.prepare(QUERY, DOCS)
    token = filler_id(tokenizer)
    twin = placeholder_twin(prepared, token)
    assert len(twin.input_ids) == len(prepared.input_ids) and twin.document_spans == prepared.document_spans
    inside = {j for start, end in prepared.document_spans for j in range(start, end)}
    for ids, twin_ids in ((prepared.input_ids, twin.input_ids), (prepared.null_input_ids, twin.null_input_ids)):
        assert all(twin_ids[j] == token for j in inside)
        assert all(twin_ids[j] == ids[j] for j in range(len(ids)) if j not in inside)
    assert twin.input_ids[: twin.prefix_length] == twin.null_input_ids[: twin.prefix_length]


@pytest.mark.parametrize("forward", ["packed", "sequential"])
def test_placeholder_scores_equal_the_naive_reference(models, tokenizer, forward):
    model, eager = models
    plain = CoReReranker(model, tokenizer, heads=_heads(), forward=forward)
    calibrated = CoReReranker(
        model, tokenizer, heads=_heads(position_calibration="placeholder", position_weight=0.7), forward=forward
    )
    prepared = calibrated.prepare(QUERY, DOCS)
    expected = naive_reference.position_calibrated_scores(eager, prepared, HEADS, 0.7, filler_id(tokenizer))
    got = calibrated.score(QUERY, DOCS)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)
    assert got != pytest.approx(plain.score(QUERY, DOCS), rel=1e-3)  # the prior really moved them
    assert plain.score(QUERY, DOCS) == pytest.approx(naive_reference.document_scores(eager, prepared, HEADS), rel=1e-4)


@pytest.mark.parametrize("forward", ["packed", "sequential"])
def test_placeholder_in_windows_and_both_orders_equals_each_prompt_by_the_reference(models, tokenizer, forward):
    model, eager = models
    heads = _heads(position_calibration="placeholder", position_weight=1.0)
    reranker = CoReReranker(model, tokenizer, heads=heads, window_tokens=32, forward=forward)
    reranker.document_order = "both"
    windows = reranker.windows(QUERY, MORE_DOCS)
    assert len(windows) >= 2
    seen = []
    got = reranker._score(QUERY, MORE_DOCS, {None: None}, lambda plan, slots, p, t: seen.append(p))[None]
    assert len(seen) == sum(
        len({tuple(w), tuple(w[::-1])}) for w in windows
    )  # the token hook sees the real prompts only, not the twins
    token = filler_id(tokenizer)
    expected = [0.0] * len(MORE_DOCS)
    for window in windows:
        for order in (window, window[::-1]):
            prepared = reranker.prepare(QUERY, [MORE_DOCS[i] for i in order])
            for i, value in zip(order, naive_reference.position_calibrated_scores(eager, prepared, HEADS, 1.0, token)):
                expected[i] += value / 2
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)


def test_head_subsets_get_their_own_prior(models, tokenizer):
    model, _ = models
    heads = _heads(position_calibration="placeholder")
    reranker = CoReReranker(model, tokenizer, heads=heads)
    alone = CoReReranker(model, tokenizer, heads=HeadConfig(heads=HEADS[:1], scoring=heads.scoring))
    both = reranker.score_head_subsets(QUERY, DOCS, {"one": HEADS[:1], "all": None})
    assert both["one"] == pytest.approx(alone.score(QUERY, DOCS), rel=1e-4, abs=1e-7)
    assert both["all"] == pytest.approx(reranker.score(QUERY, DOCS), rel=1e-4, abs=1e-7)


def test_curve_prior_sums_the_curve_at_each_token_distance(models, tokenizer):
    model, _ = models
    curve = [3.0, 2.0, 1.0, 0.5]
    plain = CoReReranker(model, tokenizer, heads=_heads())
    curved = CoReReranker(model, tokenizer, heads=_heads(position_calibration="curve", position_curve=curve))
    prepared = plain.prepare(QUERY, MORE_DOCS)
    expected_prior = []
    for start, end in prepared.document_spans:
        far = [prepared.query_span[0] - j for j in range(start, end)]
        expected_prior.append(sum(curve[min(d // CURVE_BUCKET, len(curve) - 1)] for d in far))
    assert curve_prior(prepared, curve) == pytest.approx(expected_prior)
    got, base = curved.score(QUERY, MORE_DOCS), plain.score(QUERY, MORE_DOCS)
    assert got == pytest.approx([s - b for s, b in zip(base, expected_prior)], rel=1e-6)
    with pytest.raises(ValueError):
        CoReReranker(model, tokenizer, heads=_heads(position_calibration="curve"))


def test_fit_curve_recovers_a_known_per_distance_prior(models, tokenizer):
    reranker = CoReReranker(models[0], tokenizer, heads=_heads())
    prepared = reranker.prepare(QUERY, MORE_DOCS * 4)
    true = lambda d: 1.0 / (1 + d // CURVE_BUCKET)  # noqa: E731
    scores = np.array([true(prepared.query_span[0] - j) for j in range(prepared.prefix_length)])
    curve = fit_curve([(prepared, scores)])
    assert curve_prior(prepared, curve) == pytest.approx(
        [sum(scores[s:e]) for s, e in prepared.document_spans], rel=1e-9
    )
