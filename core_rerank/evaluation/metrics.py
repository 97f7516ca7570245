"""Dependency-free IR metrics with trec_eval's conventions.

- A query's ranking is its run entries sorted by score descending, then doc id descending
  (trec_eval ignores the rank column and input order; so does pytrec_eval).
- nDCG@k (trec_eval ``ndcg_cut.k``): linear gains (gain = grade, grades <= 0 give nothing),
  discount log2(rank + 1); the ideal DCG uses every judged grade > 0 of the query, cut at k.
- MRR@k: 1 / rank of the first document with grade >= ``relevance_level`` within the top k
  (0 if none). Recall@k (trec_eval ``recall.k``): relevant retrieved in the top k over all
  relevant judged documents (grade >= ``relevance_level``); 0 for a query with none.
- Coverage: trec_eval/pytrec_eval silently skip judged queries that are missing from the run.
  :func:`evaluate` does not: a judged query without candidates scores 0 and is listed in
  :attr:`Evaluation.missing`; :func:`check_coverage` raises on request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import InputError

Qrels = Mapping[str, Mapping[str, int]]
RunScores = Mapping[str, Mapping[str, float]]


class CoverageError(InputError):
    """Judged queries are missing from a run."""


def trec_order(doc_scores: Mapping[str, float]) -> list[str]:
    """Doc ids as trec_eval ranks them: score descending, ties by doc id descending."""
    return [d for d, _ in sorted(doc_scores.items(), key=lambda item: (item[1], item[0]), reverse=True)]


def ndcg_at_k(judged: Mapping[str, int], doc_scores: Mapping[str, float], k: int = 10) -> float:
    ranking = trec_order(doc_scores)[:k]
    dcg = sum(max(judged.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(ranking))
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(
    judged: Mapping[str, int], doc_scores: Mapping[str, float], k: int = 10, relevance_level: int = 1
) -> float:
    for i, d in enumerate(trec_order(doc_scores)[:k]):
        if judged.get(d, 0) >= relevance_level:
            return 1.0 / (i + 1)
    return 0.0


def recall_at_k(judged: Mapping[str, int], doc_scores: Mapping[str, float], k: int, relevance_level: int = 1) -> float:
    relevant = {d for d, g in judged.items() if g >= relevance_level}
    if not relevant:
        return 0.0
    return len(relevant.intersection(trec_order(doc_scores)[:k])) / len(relevant)


def metric_names(recall_ks: Sequence[int] = (10, 100), ndcg_k: int = 10, mrr_k: int = 10) -> list[str]:
    return [f"ndcg@{ndcg_k}", f"mrr@{mrr_k}"] + [f"recall@{k}" for k in recall_ks]


def query_metrics(
    judged: Mapping[str, int],
    doc_scores: Mapping[str, float],
    recall_ks: Sequence[int] = (10, 100),
    relevance_level: int = 1,
    ndcg_k: int = 10,
    mrr_k: int = 10,
) -> dict[str, float]:
    values = {
        f"ndcg@{ndcg_k}": ndcg_at_k(judged, doc_scores, ndcg_k),
        f"mrr@{mrr_k}": mrr_at_k(judged, doc_scores, mrr_k, relevance_level),
    }
    for k in recall_ks:
        values[f"recall@{k}"] = recall_at_k(judged, doc_scores, k, relevance_level)
    return values


def check_coverage(qrels: Qrels, run: RunScores, raise_error: bool = False) -> list[str]:
    """Judged queries with no document in ``run`` (in qrels order); raises if asked and any."""
    missing = [q for q in qrels if not run.get(q)]
    if missing and raise_error:
        raise CoverageError(
            f"{len(missing)} of {len(qrels)} judged queries have no candidates in the run "
            f"(e.g. {', '.join(missing[:5])}); they would be silently dropped by trec_eval"
        )
    return missing


@dataclass
class Evaluation:
    """Per-query and mean metrics over every judged query (missing ones count as 0)."""

    per_query: dict[str, dict[str, float]]
    mean: dict[str, float]
    missing: list[str] = field(default_factory=list)
    num_queries: int = 0


def evaluate(
    qrels: Qrels,
    run: RunScores,
    recall_ks: Sequence[int] = (10, 100),
    relevance_level: int = 1,
    queries: Iterable[str] | None = None,
    ndcg_k: int = 10,
    mrr_k: int = 10,
) -> Evaluation:
    """Metrics of ``run`` ``{qid: {doc_id: score}}`` against ``qrels`` ``{qid: {doc_id: grade}}``.

    ``queries``: the judged queries to average over (default: every query in ``qrels``).
    A judged query absent from the run gets 0 on every metric and is listed in ``missing``.
    """
    qids = list(queries) if queries is not None else list(qrels)
    names = metric_names(recall_ks, ndcg_k, mrr_k)
    per_query, missing = {}, []
    for qid in qids:
        docs = run.get(qid) or {}
        if not docs:
            missing.append(qid)
            per_query[qid] = dict.fromkeys(names, 0.0)
            continue
        per_query[qid] = query_metrics(qrels.get(qid, {}), docs, recall_ks, relevance_level, ndcg_k, mrr_k)
    mean = {n: (sum(v[n] for v in per_query.values()) / len(per_query) if per_query else 0.0) for n in names}
    return Evaluation(per_query=per_query, mean=mean, missing=missing, num_queries=len(qids))


def strict_scores(doc_ids: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """Scores made strictly ordered so trec_eval keeps ``score desc, then input order``.

    ``doc_ids`` are in first-stage order; among equal scores the earlier (better first-stage
    rank) document must stay ahead, which trec_eval's doc-id tie-break would not guarantee.
    Returns ``{doc_id: value}`` with values ``len - position`` in that order (plain ranks as
    scores, so no float precision issue); ``-inf`` scores rank last, still by input order.
    """
    if len(doc_ids) != len(scores):
        raise InputError("doc_ids and scores differ in length")
    order = sorted(range(len(doc_ids)), key=lambda i: (-_finite(scores[i]), i))
    n = len(order)
    return {doc_ids[i]: float(n - position) for position, i in enumerate(order)}


def _finite(value: float) -> float:
    if value is None or math.isnan(value):
        return -math.inf
    return value


def kendall_tau(first: Sequence[float], second: Sequence[float]) -> float:
    """Kendall's tau-b between two score lists of the same documents (1: same ranking, -1:
    reversed). Used as the order sensitivity: the tau between the scores a reranker gives a
    list in first-stage order and in reversed order. ``nan`` when either list is all ties."""
    if len(first) != len(second):
        raise InputError("the two score lists differ in length")
    a = [_finite(v) for v in first]
    b = [_finite(v) for v in second]
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = (a[i] > a[j]) - (a[i] < a[j]), (b[i] > b[j]) - (b[i] < b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_a) * (concordant + discordant + ties_b))
    return (concordant - discordant) / denominator if denominator else math.nan
