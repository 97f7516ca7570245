"""``core-rerank eval --workers N``: an entry's queries scored on the Ray Data actor pool that
``core-rerank rerank-run`` uses (``core_rerank.rerank_job.score_items``), instead of in this
process. Each worker loads the entry's model once; the scores are those of the in-process loop
(the same ``CoReReranker.score`` on the same ``title + " " + text`` documents)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..datasets import EvalData
from ..pool import uses_ray
from ..rerank_job import score_items
from ..utils import join_title, progress_bar
from .loop import candidate_documents, first_stage_of
from .plan import EntrySpec
from .settings import EvalSettings


def uses_workers(settings: EvalSettings) -> bool:
    return uses_ray(settings.workers, settings.ray_address, settings.gpus_per_worker)


def score_queries_on_workers(
    settings: EvalSettings, spec: EntrySpec, data: EvalData, qids: Sequence[str], built: dict[str, Any]
) -> Iterator[tuple[str, list[str], list[float], float]]:
    """``(qid, candidates in first-stage order, their scores, seconds)`` per query, as workers finish.

    Queries without candidates come first, with no scores (as the in-process loop gives them).
    A query a worker could not score raises, naming it: evaluation must not skip queries.
    ``built`` receives the settings of the reranker the workers built (``settings.built_settings``).
    """
    items, candidates = [], {}
    for qid in qids:
        candidates[qid] = data.candidates(qid, settings.depth)
        if not candidates[qid]:
            yield qid, [], [], 0.0
            continue
        documents = [join_title(d["title"], d["text"]) for d in candidate_documents(data, candidates[qid])]
        item: dict[str, Any] = {
            "query_id": qid,
            "query": data.queries[qid],
            "doc_ids": candidates[qid],
            "documents": documents,
        }
        if settings.first_stage_scores:
            item["first_stage_scores"] = first_stage_of(data, qid, candidates[qid])
        items.append(item)
    bar = progress_bar(len(items), f"{spec.label} ({settings.workers} workers)", unit="q", enabled=settings.progress)
    try:
        for result in score_items(
            settings.reranker_settings(spec),
            items,
            workers=settings.workers,
            use_ray=True,
            threads_per_worker=settings.threads_per_worker,
            ray_address=settings.ray_address,
            gpus_per_worker=settings.gpus_per_worker,
        ):
            qid = result["query_id"]
            if result["error"]:
                raise RuntimeError(f"query {qid} could not be scored on a worker: {result['error']}")
            if result.get("reranker"):
                built.update(json.loads(result["reranker"]))
            by_id: dict[str, Any] = dict(zip(result["doc_ids"], result["scores"]))
            bar.update(1)
            yield qid, candidates[qid], [float(by_id[d]) for d in candidates[qid]], float(result["seconds"])
    finally:
        bar.close()
