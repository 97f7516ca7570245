"""The per-query scoring loop: one reranker over the candidates of each query.

:func:`score_queries` is the one place queries are scored for an entry (and
:func:`score_queries_by_subsets` for a shared ``--one-pass`` reranker): it takes a reranker,
the data and the query ids and yields one result per query as it is done, so a pool of
workers can replace it without touching the runner. :func:`evaluate_heads` is the stable
entry point for choosing heads on held-out data.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..datasets import EvalData, load_eval_data
from ..utils import progress_iter
from .metrics import evaluate, strict_scores


def candidate_documents(data: EvalData, doc_ids: Sequence[str]) -> list[dict[str, str]]:
    """The candidates' ``{"title", "text"}`` records (empty for an id the corpus lacks)."""
    empty = {"title": "", "text": ""}
    return [data.corpus.get(d, empty) for d in doc_ids]


def first_stage_of(data: EvalData, qid: str, doc_ids: Sequence[str]) -> list[float]:
    """The run's (first stage's) scores of ``doc_ids`` for ``qid``."""
    return [data.run.scores[qid][d] for d in doc_ids]


def score_query(
    reranker: Any, data: EvalData, qid: str, depth: int | None, first_stage_scores: bool = False
) -> tuple[list[str], list[float], float]:
    """Candidates (first-stage order), their reranker scores and the seconds ``score`` took
    (``first_stage_scores``: the run's scores order the prompts)."""
    doc_ids = data.candidates(qid, depth)
    if not doc_ids:
        return [], [], 0.0
    documents = candidate_documents(data, doc_ids)
    extra = {"first_stage_scores": first_stage_of(data, qid, doc_ids)} if first_stage_scores else {}
    start = time.perf_counter()
    scores = reranker.score(data.queries[qid], documents, **extra)
    return doc_ids, [float(s) for s in scores], time.perf_counter() - start


def score_queries(
    reranker: Any,
    data: EvalData,
    qids: Iterable[str],
    depth: int | None,
    desc: str = "queries",
    progress: bool = False,
    first_stage_scores: bool = False,
) -> Iterator[tuple[str, list[str], list[float], float]]:
    """``(qid, candidates, scores, seconds)`` for each query, in ``qids`` order, as each is done."""
    for qid in progress_iter(qids, desc, unit="q", enabled=progress):
        extra = {"first_stage_scores": True} if first_stage_scores else {}  # off: the call of before
        doc_ids, scores, seconds = score_query(reranker, data, qid, depth, **extra)
        yield qid, doc_ids, scores, seconds


def score_queries_by_subsets(
    reranker: Any,
    data: EvalData,
    qids: Iterable[str],
    depth: int | None,
    subsets_by_window: Mapping[tuple[int | None, str], Mapping[str, Any]],
    desc: str = "one pass",
    progress: bool = False,
) -> Iterator[tuple[str, dict[str, list[float]], dict[str, float]]]:
    """``(qid, {label: scores}, {label: seconds})`` per query: for each (window size, document
    order), one forward pass (per prompt), each label scored by its own head subset
    (``CoReReranker.score_head_subsets``); a label's seconds are its size and order's pass.
    Sets ``reranker.window_tokens`` and ``reranker.document_order`` to each in turn. Queries
    must have candidates."""
    for qid in progress_iter(qids, desc, unit="q", enabled=progress):
        documents = candidate_documents(data, data.candidates(qid, depth))
        scores, seconds = {}, {}
        for (window_tokens, document_order), subsets in subsets_by_window.items():
            reranker.window_tokens = window_tokens
            reranker.document_order = document_order
            start = time.perf_counter()
            scores.update(reranker.score_head_subsets(data.queries[qid], documents, subsets))
            seconds.update(dict.fromkeys(subsets, time.perf_counter() - start))
        yield qid, scores, seconds


@functools.lru_cache(maxsize=8)
def _cached_data(data_dir: str, split: str, run_file: str | None) -> EvalData:
    return load_eval_data(data_dir, split=split, run_file=run_file)


def evaluate_heads(
    reranker: Any, data_dir: str | Path, split: str = "test", depth: int = 20, max_queries: int | None = None
) -> float:
    """Mean nDCG@10 of ``reranker`` over the judged queries of a BEIR folder.

    Reranks the top-``depth`` of ``<data_dir>/run.bm25.top100.trec`` when the folder has it,
    else of a BM25 run built with bm25s. ``max_queries``: only the first N judged queries (qrels
    file order). Judged queries without candidates count as 0. The folder is loaded once per
    process (cached).
    """
    data = _cached_data(str(Path(data_dir).resolve()), split, None)
    qids = list(data.queries)[:max_queries] if max_queries is not None else list(data.queries)
    run = {}
    for qid, doc_ids, scores, _ in score_queries(reranker, data, qids, depth):
        if doc_ids:
            run[qid] = strict_scores(doc_ids, scores)
    return evaluate(data.qrels, run, recall_ks=(), queries=qids).mean["ndcg@10"]
