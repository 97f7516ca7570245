"""Where a job's queries are scored, and the one function that scores each of them.

Jobs (``rerank-run``, ``eval --workers``, ``core_rerank.ray.rerank_dataset``) score *work
items* ``{"query_id", "query", "doc_ids", "documents"}`` (and, when the job passes them, the
run's ``"first_stage_scores"``, one per document): in this process, or on a Ray actor pool.
One rule decides which (:func:`uses_ray`), one formula sizes a local Ray cluster
(:func:`local_cluster_cpus`, also used by the server's Ray Serve replicas), and every path
scores an item with :func:`score_item`, so one worker and many give the same scores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

from .errors import InputError, MissingExtra

RAY_INSTALL_HINT = 'more than one worker needs Ray: pip install "core-rerank[ray]"'


def uses_ray(workers: int = 1, ray_address: str | None = None, gpus_per_worker: float = 0, force: bool = False) -> bool:
    """Whether a job runs on Ray: more than one worker, a cluster address, GPUs per worker, or asked to."""
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    return force or workers > 1 or ray_address is not None or bool(gpus_per_worker)


def require_ray(what: str) -> None:
    """Raise ``MissingExtra`` (naming ``what`` needs it) when Ray is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise MissingExtra(f"{what}: {RAY_INSTALL_HINT}") from None


def local_cluster_cpus(actors: int, cpus_each: float) -> int:
    """Logical CPUs for a local Ray cluster of ``actors`` actors taking ``cpus_each`` each.

    One more than the actors take (and at least the machine's count): with exactly as many as
    the actors hold, a task that Ray needs besides them (Ray Data's own, Serve's controller)
    never gets a CPU and the job hangs.
    """
    return max(os.cpu_count() or 1, int(actors * max(cpus_each, 1))) + 1


def score_item(reranker: Any, item: Mapping[str, Any], built: str | None = None) -> dict[str, Any]:
    """Score one work item: ``{"query_id", "doc_ids", "scores", "error", "seconds", "reranker"}``.

    ``doc_ids`` and ``scores`` are best first; ties keep the input (first-stage) order. An item's
    ``first_stage_scores`` (when present and not ``None``) order the prompts
    (``CoReReranker.score(..., first_stage_scores=...)``).
    ``reranker`` is ``built`` (the JSON of ``settings.built_settings``, so a job can record what
    ran on each worker). An exception becomes ``error`` ("Type: message", no scores), so one bad
    query never stops a job; the job reports it and exits non-zero.
    """
    qid = str(item["query_id"])
    doc_ids = [str(d) for d in item["doc_ids"]]
    start = time.perf_counter()
    result: dict[str, Any] = {"query_id": qid, "doc_ids": [], "scores": [], "error": None, "reranker": built}
    try:
        first = item.get("first_stage_scores")
        extra = {} if first is None else {"first_stage_scores": [float(s) for s in first]}
        scores = [float(s) for s in reranker.score(str(item["query"]), [str(d) for d in item["documents"]], **extra)]
        if len(scores) != len(doc_ids):
            raise InputError(f"{len(doc_ids)} doc ids but {len(scores)} documents")
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    else:
        order = sorted(range(len(doc_ids)), key=lambda i: (-scores[i], i))
        result["doc_ids"] = [doc_ids[i] for i in order]
        result["scores"] = [scores[i] for i in order]
    result["seconds"] = time.perf_counter() - start
    return result


def built_json(reranker: Any) -> str:
    """``settings.built_settings`` of ``reranker`` as one JSON string (a Ray column holds it)."""
    from .settings import built_settings

    return json.dumps(built_settings(reranker), sort_keys=True)
