"""``core-rerank eval --workers N``: an entry's queries scored on the Ray Data actor pool that
``core-rerank rerank-run`` uses (``core_rerank.rerank_job.score_queries``), instead of in this
process. Each worker loads the entry's model once; the scores are those of the in-process loop
(the same ``CoReReranker.score`` on the same ``title + " " + text`` documents)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..datasets import EvalData
from ..utils import join_title, progress_bar
from .loop import candidate_documents
from .plan import EntrySpec
from .settings import EvalSettings


def uses_workers(settings: EvalSettings) -> bool:
    return settings.workers > 1 or settings.ray_address is not None or bool(settings.gpus_per_worker)


def layers_built(spec: EntrySpec, num_hidden_layers: int | None) -> int | None:
    """The layers an entry's reranker builds, told from its settings (the workers load it)."""
    keep = spec.num_layers_to_keep
    if isinstance(keep, int):
        return keep
    if keep is None and spec.heads is not None and spec.heads.heads:
        return spec.heads.num_layers_needed(num_hidden_layers or 10**6)
    return num_hidden_layers


def score_queries_on_workers(
    settings: EvalSettings, spec: EntrySpec, data: EvalData, qids: Sequence[str]
) -> Iterator[tuple[str, list[str], list[float], float]]:
    """``(qid, candidates in first-stage order, their scores, seconds)`` per query, as workers finish.

    Queries without candidates come first, with no scores (as the in-process loop gives them).
    A query a worker could not score raises, naming it: evaluation must not skip queries.
    """
    from ..rerank_job import ScorerSettings, score_queries

    items, candidates = [], {}
    for qid in qids:
        candidates[qid] = data.candidates(qid, settings.depth)
        if not candidates[qid]:
            yield qid, [], [], 0.0
            continue
        documents = [join_title(d["title"], d["text"]) for d in candidate_documents(data, candidates[qid])]
        items.append({"query_id": qid, "query": data.queries[qid], "doc_ids": candidates[qid], "documents": documents})
    scorer = ScorerSettings(reranker=settings.reranker_kwargs(spec), threads=settings.threads_per_worker)
    bar = progress_bar(len(items), f"{spec.label} ({settings.workers} workers)", unit="q", enabled=settings.progress)
    try:
        for result in score_queries(
            scorer,
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
            by_id: dict[str, Any] = dict(zip(result["doc_ids"], result["scores"]))
            bar.update(1)
            yield qid, candidates[qid], [float(by_id[d]) for d in candidates[qid]], float(result["seconds"])
    finally:
        bar.close()
