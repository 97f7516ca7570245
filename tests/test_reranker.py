"""CoReReranker on the real SmolLM2-135M-Instruct weights (fp32, CPU)."""

import asyncio
import math
import threading

import naive_reference
import pytest
import torch
from transformers import AutoModelForCausalLM

from core_rerank import CoReReranker, HeadConfig, HeadConfigError, RerankResult

QUERY = "How do statins lower cholesterol?"
DOCS = [
    "Statins inhibit HMG-CoA reductase, the rate-limiting enzyme of cholesterol synthesis in the liver, "
    "which lowers LDL cholesterol in the blood.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Regular aerobic exercise improves cardiovascular fitness and can modestly raise HDL cholesterol.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Clinical trials show that statin therapy reduces major vascular events by about a fifth per mmol/L LDL reduction.",
]


@pytest.fixture(scope="module")
def eager_model(smollm2_dir):
    return AutoModelForCausalLM.from_pretrained(smollm2_dir, attn_implementation="eager", dtype=torch.float32).eval()


@pytest.mark.parametrize("method", ["core", "qr", "icr"])
def test_fast_path_equals_naive_eager_recomputation(make_reranker, eager_model, method):
    reranker = make_reranker(method=method)
    prepared = reranker.prepare(QUERY, DOCS)
    heads = naive_reference.all_heads(eager_model.config) if method == "icr" else reranker.heads.heads
    expected = naive_reference.document_scores(eager_model, prepared, heads)
    got = reranker.score(QUERY, DOCS)
    scale = max(abs(v) for v in expected)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-4 * scale)
    assert all(type(v) is float for v in got)


def test_pruned_model_scores_like_the_unpruned_model(make_reranker):
    pruned = make_reranker(method="core")
    full = make_reranker(method="core", num_layers_to_keep="all")
    deepest = pruned.heads.deepest_layer
    assert pruned.model.config.num_hidden_layers == deepest + 1 < 30
    assert len(pruned.model.base_model.layers) == deepest + 1  # the dropped layers were never built
    assert not hasattr(pruned.model, "lm_head") and hasattr(full.model, "lm_head")  # only "all" can generate
    assert full.model.config.num_hidden_layers == 30
    assert pruned.score(QUERY, DOCS) == pytest.approx(full.score(QUERY, DOCS), rel=1e-5, abs=1e-9)


def test_head_subsets_of_one_pass_equal_separate_rerankers(make_reranker):
    icr, core, qr = make_reranker(method="icr"), make_reranker(method="core"), make_reranker(method="qr")
    docs = DOCS + ["", DOCS[0]]  # an empty document and a duplicate go through the same path
    subsets = {"icr": None, "core": core.heads.heads, "qr": qr.heads.heads, "one": [core.heads.heads[0]]}
    got = icr.score_head_subsets(QUERY, docs, subsets)
    one_head = CoReReranker(core.model, core.tokenizer, heads=core.heads.with_heads([core.heads.heads[0]]))
    for name, reranker in (("icr", icr), ("core", core), ("qr", qr), ("one", one_head)):
        expected = reranker.score(QUERY, docs)
        assert got[name][-2] == -math.inf and got[name][-1] == got[name][0]
        finite = [v for v in expected if v != -math.inf]
        scale = max(abs(v) for v in finite)
        assert got[name] == pytest.approx(expected, rel=1e-6, abs=1e-6 * scale), name
    assert got["core"] != pytest.approx(got["qr"], rel=1e-3)  # the subsets really differ
    with pytest.raises(ValueError, match="not among"):
        core.score_head_subsets(QUERY, DOCS, {"bad": [(29, 0)]})
    with pytest.raises(ValueError, match="no heads"):
        icr.score_head_subsets(QUERY, DOCS, {"empty": []})


def test_rerank_orders_results_and_keeps_ids(make_reranker):
    reranker = make_reranker(method="core")
    scores = reranker.score(QUERY, DOCS)
    results = reranker.rerank(QUERY, DOCS, top_k=3, doc_ids=["a", "b", "c", "d", "e"])
    assert [r.score for r in results] == sorted(scores, reverse=True)[:3]
    for r in results:
        assert isinstance(r, RerankResult) and r.text == DOCS[r.index] and r.doc_id == "abcde"[r.index]
        low, high = min(scores), max(scores)
        assert r.to_dict() == {
            "index": r.index,
            "raw_score": r.score,
            "text": r.text,
            "doc_id": r.doc_id,
            "relevance_score": pytest.approx((r.score - low) / (high - low)),
        }
        assert r.raw_score == r.score
    assert len(reranker.rerank(QUERY, DOCS)) == len(DOCS)
    assert reranker.rerank(QUERY, DOCS, top_k=0) == []


def test_score_threshold_drops_low_scores_before_the_top_k_cut(make_reranker):
    reranker = make_reranker(method="core")
    ordered = sorted(reranker.score(QUERY, DOCS), reverse=True)
    kept = reranker.rerank(QUERY, DOCS, score_threshold=ordered[2])
    assert [r.score for r in kept] == ordered[:3]  # a score equal to the threshold stays
    assert [r.score for r in reranker.rerank(QUERY, DOCS, top_k=2, score_threshold=ordered[2])] == ordered[:2]
    assert reranker.rerank(QUERY, DOCS, score_threshold=ordered[0] + 1.0) == []
    assert [r.index for r in reranker.rerank(QUERY, DOCS + [""], score_threshold=-1e30)] == [
        r.index for r in reranker.rerank(QUERY, DOCS)
    ]  # an empty document (-inf) falls below any threshold
    batch = reranker.rerank_batch([QUERY], [DOCS], score_threshold=ordered[2])
    assert [r.score for r in batch[0]] == ordered[:3]


def test_rank_matches_sentence_transformers_cross_encoder_rank(make_reranker):
    reranker = make_reranker(method="core")
    results = reranker.rerank(QUERY, DOCS)
    ranked = reranker.rank(QUERY, DOCS)
    assert ranked == [{"corpus_id": r.index, "score": r.score} for r in results]
    top = reranker.rank(QUERY, DOCS, top_k=2, return_documents=True)
    assert top == [{"corpus_id": r.index, "score": r.score, "text": DOCS[r.index]} for r in results[:2]]
    titled = reranker.rank(QUERY, [{"title": "Statins", "text": DOCS[0]}], return_documents=True)
    assert titled[0]["text"] == f"Statins {DOCS[0]}"


def test_method_must_agree_with_the_heads(make_reranker):
    full = make_reranker(method="icr")  # every layer built
    core_heads = HeadConfig.load("smollm2-135m-instruct")
    qr_heads = HeadConfig.load("smollm2-135m-instruct-qr")
    with pytest.raises(ValueError, match="method='core' contradicts"):
        CoReReranker(full.model, full.tokenizer, heads=qr_heads, method="core")
    with pytest.raises(ValueError, match="method='icr' uses every head"):
        CoReReranker(full.model, full.tokenizer, heads=core_heads, method="icr")
    with pytest.raises(ValueError, match="contradicts"):
        CoReReranker.from_pretrained("smollm2-135m-instruct", heads="smollm2-135m-instruct-qr", method="core")
    assert CoReReranker(full.model, full.tokenizer, heads=qr_heads).method == "qr"  # None: the heads' method
    assert CoReReranker(full.model, full.tokenizer, heads=qr_heads, method="qr").heads == qr_heads
    assert CoReReranker(full.model, full.tokenizer, model_id="smollm2-135m-instruct").heads == core_heads


def test_bad_input_is_clear_and_loses_nothing(make_reranker):
    reranker = make_reranker(method="core")
    assert reranker.rerank(QUERY, []) == [] and reranker.score(QUERY, []) == []
    one = reranker.rerank(QUERY, ["a single document about statins"])
    assert len(one) == 1 and math.isfinite(one[0].score)
    for bad in ["", "   \n\t"]:
        with pytest.raises(ValueError, match="query is empty"):
            reranker.rerank(bad, DOCS)
    with pytest.raises(TypeError, match="query must be a string"):
        reranker.rerank(None, DOCS)
    with pytest.raises(TypeError, match="document 1 is a int"):
        reranker.rerank(QUERY, ["fine", 42])
    with pytest.raises(TypeError, match="list of strings"):
        reranker.rerank(QUERY, "a bare string is not a list")
    with pytest.raises(ValueError, match="doc_ids"):
        reranker.rerank(QUERY, DOCS, doc_ids=["only one"])


def test_empty_duplicate_and_unusual_documents(make_reranker):
    reranker = make_reranker(method="core")
    docs = [
        DOCS[0],
        "",
        DOCS[1],
        DOCS[0],
        "  \n ",
        "naïve café — 東京 🚀\x07\x00 control\tchars",
        {"title": "T", "text": DOCS[2]},
    ]
    scores = reranker.score(QUERY, docs)
    assert scores[0] == scores[3]  # identical text, identical score
    assert scores[1] == scores[4] == float("-inf")  # nothing to read: ranked last
    assert all(math.isfinite(s) for i, s in enumerate(scores) if i not in (1, 4))
    ranked = reranker.rerank(QUERY, docs)
    assert {r.index for r in ranked[-2:]} == {1, 4}
    assert ranked[-1].text in ("", "  \n ")


def test_long_lists_and_huge_documents_are_windowed(smollm2_dir):
    reranker = CoReReranker.from_pretrained(
        "smollm2-135m-instruct", device="cpu", dtype="float32", max_length=1024, max_doc_words=None
    )
    huge = "statins " * 5000  # far over the budget on its own: cut to fit, still scored
    docs = [f"short note number {i} on topic {i % 13}" for i in range(500)] + [huge]
    scores = reranker.score(QUERY, docs)
    assert len(scores) == 501 and all(math.isfinite(s) for s in scores)
    with pytest.raises(ValueError, match="over max_length"):
        reranker.prepare(QUERY, docs)


def test_heads_that_do_not_fit_and_models_without_heads(make_reranker):
    with pytest.raises(HeadConfigError, match=r"head \[30, 0\].*layer 30 does not exist"):
        CoReReranker.from_pretrained("smollm2-135m-instruct", heads=HeadConfig(heads=[(3, 1), (30, 0)]))
    with pytest.raises(HeadConfigError, match=r"head \[3, 9\].*head 9 does not exist"):
        CoReReranker.from_pretrained("smollm2-135m-instruct", heads=HeadConfig(heads=[(3, 9)]))
    loaded = make_reranker(method="icr")
    with pytest.raises(HeadConfigError, match=r"core-rerank detect.*method='icr'"):
        CoReReranker(loaded.model, loaded.tokenizer, model_id="someone/unknown-model")
    with pytest.raises(ValueError, match="unknown method"):
        CoReReranker(loaded.model, loaded.tokenizer, method="bm25")


def test_threads_and_async_match_serial_calls(make_reranker):
    reranker = make_reranker(method="core")
    queries = [QUERY, "Where is the Eiffel Tower?", "What does exercise do to HDL?", "How do plants make glucose?"]
    serial = [reranker.score(q, DOCS) for q in queries]
    results = [None] * len(queries)

    def work(i):
        results[i] = reranker.score(queries[i], DOCS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(queries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial

    async def gather():
        return await asyncio.gather(*(reranker.arerank(q, DOCS) for q in queries))

    for ranked, scores in zip(asyncio.run(gather()), serial):
        assert [r.score for r in ranked] == sorted(scores, reverse=True)
    batch = reranker.rerank_batch(queries, [DOCS] * len(queries), top_k=2)
    assert [[r.score for r in b] for b in batch] == [sorted(s, reverse=True)[:2] for s in serial]
