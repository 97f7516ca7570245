"""Metrics against pytrec-eval-terrier on real runs (ties, graded labels) and coverage checks."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from core_rerank.datasets import load_qrels, load_trec_run
from core_rerank.evaluation.metrics import (
    CoverageError,
    check_coverage,
    evaluate,
    ndcg_at_k,
    strict_scores,
    trec_order,
)

RUNS = Path(__file__).parent / "data" / "trec_runs"


def _run_scores(path, transform=lambda s: s):
    run = load_trec_run(path)
    return {q: {d: transform(s) for d, s in docs.items()} for q, docs in run.scores.items()}


def _pytrec(qrels, run, measures, relevance_level=1):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=relevance_level)
    return evaluator.evaluate(run)


CASES = {
    # graded labels 0-3, original scores (no ties)
    "dl19": ("dl19.bm25.top100.trec", "dl19.qrels.tsv", lambda s: s),
    # graded labels with many ties: the real DL19 scores rounded to whole numbers
    "dl19-rounded": ("dl19.bm25.top100.trec", "dl19.qrels.tsv", lambda s: float(round(s))),
    # real ties from the SciFact BM25 run
    "scifact-ties": ("scifact_ties.run.trec", "scifact_ties.qrels.tsv", lambda s: s),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("relevance_level", [1, 2])
def test_metrics_equal_pytrec_eval_on_real_runs(case, relevance_level):
    run_file, qrels_file, transform = CASES[case]
    qrels = load_qrels(RUNS / qrels_file)
    run = _run_scores(RUNS / run_file, transform)
    if case == "dl19-rounded":
        assert sum(len(d) - len(set(d.values())) for d in run.values()) > 1000  # really tied
    reference = _pytrec(qrels, run, {"ndcg_cut.10", "recall.10", "recall.100"}, relevance_level)
    # pytrec_eval's recip_rank has no cutoff: give it the top 10 (in trec_eval order) for MRR@10.
    top10 = {q: {d: docs[d] for d in trec_order(docs)[:10]} for q, docs in run.items()}
    rr = _pytrec(qrels, top10, {"recip_rank"}, relevance_level)
    ours = evaluate(qrels, run, recall_ks=(10, 100), relevance_level=relevance_level, queries=list(reference))
    assert set(reference) == set(run) & set(qrels)
    for qid, values in reference.items():
        mine = ours.per_query[qid]
        assert mine["ndcg@10"] == pytest.approx(values["ndcg_cut_10"], abs=1e-12), qid
        assert mine["recall@10"] == pytest.approx(values["recall_10"], abs=1e-12), qid
        assert mine["recall@100"] == pytest.approx(values["recall_100"], abs=1e-12), qid
        assert mine["mrr@10"] == pytest.approx(rr[qid]["recip_rank"], abs=1e-12), qid
    mean = sum(v["ndcg_cut_10"] for v in reference.values()) / len(reference)
    assert ours.mean["ndcg@10"] == pytest.approx(mean, abs=1e-12)


def test_published_bm25_numbers():
    qrels = load_qrels(RUNS / "dl19.qrels.tsv")
    run = _run_scores(RUNS / "dl19.bm25.top100.trec")
    assert round(evaluate(qrels, run).mean["ndcg@10"], 4) == 0.5058  # data/README.md and pyserini


def test_ties_break_by_doc_id_descending_and_gains_are_linear():
    judged = {"a": 2, "b": 0, "c": 1}
    scores = {"a": 1.0, "b": 1.0, "c": 1.0}
    assert trec_order(scores) == ["c", "b", "a"]
    dcg = 1 / math.log2(2) + 0 + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at_k(judged, scores) == pytest.approx(dcg / idcg)
    # a zero-grade judgement is not relevant and a query with none relevant scores 0
    assert ndcg_at_k({"x": 0}, {"x": 3.0}) == 0.0


def test_strict_scores_keep_first_stage_order_among_ties():
    ids = ["d9", "d1", "d5", "d3"]
    strict = strict_scores(ids, [0.5, 0.7, 0.5, float("-inf")])
    assert trec_order(strict) == ["d1", "d9", "d5", "d3"]
    assert len(set(strict.values())) == len(ids)
    with pytest.raises(ValueError):
        strict_scores(ids, [1.0])


def test_coverage_check_fires_on_a_run_that_misses_queries():
    qrels = load_qrels(RUNS / "dl19.qrels.tsv")
    run = _run_scores(RUNS / "dl19.bm25.top100.trec")
    dropped = list(qrels)[:3]
    partial = {q: docs for q, docs in run.items() if q not in dropped}
    assert check_coverage(qrels, run) == []
    assert check_coverage(qrels, partial) == dropped
    with pytest.raises(CoverageError, match="3 of 43"):
        check_coverage(qrels, partial, raise_error=True)
    ours = evaluate(qrels, partial)
    assert ours.missing == dropped and ours.num_queries == 43
    assert all(ours.per_query[q]["ndcg@10"] == 0.0 for q in dropped)
    # pytrec_eval silently averages over 40 queries; we average over all 43 judged ones.
    reference = _pytrec(qrels, partial, {"ndcg_cut.10"})
    assert len(reference) == 40
    pytrec_mean = sum(v["ndcg_cut_10"] for v in reference.values()) / 40
    assert ours.mean["ndcg@10"] == pytest.approx(pytrec_mean * 40 / 43, abs=1e-12)
