"""Rerank on Ray Data: an actor pool where each actor loads the model once.

Needs the ``ray`` extra (``pip install "core-rerank[ray]"``); ``import core_rerank`` never
imports Ray, only this module does (absolute ``import ray``: this module's own name does
not shadow the real package)::

    import ray
    from core_rerank.ray import rerank_dataset

    ds = ray.data.from_items([{"query_id": "q1", "query": "...", "doc_ids": ["a", "b"],
                               "documents": ["text of a", "text of b"]}])
    reranked = rerank_dataset(ds, model="smollm2-135m-instruct", workers=2)
    # rows: query_id, doc_ids and scores (best first), error (None or why it failed), seconds,
    # reranker (JSON of the settings the actor built)

An input row may also carry ``first_stage_scores`` (one number per document, higher is better):
they then order that query's prompts (``CoReReranker.score(..., first_stage_scores=...)``).

Each actor builds its reranker from one ``RerankerSettings`` (torch threads first, then only
the layers the heads need; every setting as given, ``None`` included) and scores every row with
``core_rerank.pool.score_item``, the function the in-process path uses, so the scores are the
same. Each row also carries the settings of the reranker the actor actually built (column
``reranker``, JSON). Ray restarts an actor that dies and retries
its batch (Ray Data's actor pools default to ``max_restarts=-1`` and ``max_task_retries=-1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ray
import ray.data

from .errors import InputError
from .pool import built_json, local_cluster_cpus, score_item
from .settings import RerankerSettings
from .utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL

MAX_BLOCKS = 4096  # input blocks (small blocks: results stream back as they finish)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("query_id", pa.string()),
            ("doc_ids", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("error", pa.string()),
            ("seconds", pa.float64()),
            ("reranker", pa.string()),
        ]
    )


class RerankActor:
    """One pool member: loads the reranker once, then scores batches of work items.

    :func:`actor_class` binds the settings as a class attribute of a subclass, which Ray
    pickles by value, so a restarted actor rebuilds the same reranker.
    """

    settings: RerankerSettings = RerankerSettings()

    def __init__(self) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.reranker = self.settings.load()
        self.built = built_json(self.reranker)

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist() if hasattr(batch, "to_pylist") else _rows(batch)
        results = [score_item(self.reranker, row, self.built) for row in rows]
        return pa.Table.from_pylist(results, schema=_schema())


def actor_class(settings: RerankerSettings) -> type[RerankActor]:
    """A :class:`RerankActor` subclass that builds its reranker from ``settings``."""
    return type("RerankActor", (RerankActor,), {"settings": settings, "__module__": __name__})


def _rows(batch: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]


def ray_version() -> tuple[int, ...]:
    return tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())


def init_ray(
    address: str | None = None, workers: int = 1, threads_per_worker: float = 1, gpus_per_worker: float = 0
) -> None:
    """Connect to ``address`` (``"auto"``: a running cluster), or start a local cluster sized
    by ``pool.local_cluster_cpus`` (one logical CPU more than the actors take)."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    cpus = local_cluster_cpus(workers, threads_per_worker)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)


def rerank_dataset(
    ds: Any,
    model: str = DEFAULT_MODEL,
    workers: int = 2,
    *,
    threads_per_worker: float = 1,
    gpus_per_worker: float = 0,
    batch_size: int = 1,
    heads: Any = None,
    method: str | None = None,
    device: str | None = None,
    dtype: str = "auto",
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
    max_length: int | None = None,
    window_tokens: int | str | None = "auto",
    document_order: str = "auto",
    num_layers_to_keep: int | str | None = None,
    settings: RerankerSettings | None = None,
) -> Any:
    """A lazy Ray Dataset of ``{query_id, doc_ids, scores, error, seconds, reranker}`` (best first) for ``ds``.

    ``ds`` rows: ``query_id``, ``query``, ``doc_ids`` and ``documents`` (strings, same length),
    optionally ``first_stage_scores`` (numbers, same length; they order the prompts).
    ``workers`` actors, each with ``threads_per_worker`` torch threads (also its CPU
    reservation) and ``gpus_per_worker`` GPUs, score ``batch_size`` queries per call. A query
    that cannot be scored gets ``error`` and no scores; it does not stop the job. The model
    options reach ``CoReReranker.from_pretrained`` as given (``None`` included); ``settings``
    replaces them all (what ``rerank-run`` passes). ``reranker`` is the JSON of the settings
    the actor actually built.
    """
    if workers < 1:
        raise InputError("workers must be >= 1")
    if settings is None:
        settings = RerankerSettings(
            model=model,
            heads=heads,
            method=method,
            device=device,
            dtype=dtype,
            max_doc_words=max_doc_words,
            max_length=max_length,
            window_tokens=window_tokens,
            document_order=document_order,
            num_layers_to_keep=num_layers_to_keep,
        )
    if settings.threads is None:
        settings = settings.replace(threads=max(1, int(threads_per_worker)))
    if gpus_per_worker and not settings.device:
        settings = settings.replace(device="cuda")
    pool: dict[str, Any]
    if ray_version() >= (2, 51):
        pool = {"compute": ray.data.ActorPoolStrategy(size=workers)}
    else:
        pool = {"concurrency": workers}
    # Fault tolerance is Ray Data's default for actor pools: max_restarts=-1 (a dead actor is
    # replaced) and max_task_retries=-1 (its batch is retried); passing them here is deprecated.
    return ds.map_batches(
        actor_class(settings),
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=threads_per_worker,
        num_gpus=gpus_per_worker or None,
        **pool,
    )


def score_on_pool(
    settings: RerankerSettings,
    items: Sequence[Mapping[str, Any]],
    workers: int = 2,
    *,
    threads_per_worker: float | None = None,
    gpus_per_worker: float = 0,
    ray_address: str | None = None,
    batch_size: int = 1,
) -> Iterator[dict[str, Any]]:
    """Score work items on an actor pool; yield each result as soon as it reaches this process."""
    if not items:
        return
    threads = threads_per_worker or settings.threads or 1
    init_ray(ray_address, workers, threads, gpus_per_worker)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # rerank-run shows its own bar (queries, rate, ETA)
    context.execution_options.preserve_order = False
    ds = ray.data.from_items([dict(item) for item in items], override_num_blocks=min(len(items), MAX_BLOCKS))
    reranked = rerank_dataset(
        ds,
        workers=workers,
        threads_per_worker=threads,
        gpus_per_worker=gpus_per_worker,
        batch_size=batch_size,
        settings=settings.replace(threads=max(1, int(threads))),
    )
    for row in reranked.iter_rows():
        yield {
            "query_id": str(row["query_id"]),
            "doc_ids": [str(d) for d in row["doc_ids"]],
            "scores": [float(s) for s in row["scores"]],
            "error": row["error"],
            "seconds": float(row["seconds"] or 0.0),
            "reranker": row["reranker"],
        }
