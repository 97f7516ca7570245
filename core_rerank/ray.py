"""Rerank on Ray Data: an actor pool where each actor loads the model once.

Needs the ``ray`` extra (``pip install "core-rerank[ray]"``); ``import core_rerank`` never
imports Ray, only this module does (absolute ``import ray``: this module's own name does
not shadow the real package)::

    import ray
    from core_rerank.ray import rerank_dataset

    ds = ray.data.from_items([{"query_id": "q1", "query": "...", "doc_ids": ["a", "b"],
                               "documents": ["text of a", "text of b"]}])
    reranked = rerank_dataset(ds, model="smollm2-135m-instruct", workers=2)
    # rows: query_id, doc_ids and scores (best first), error (None or why it failed), seconds

Each actor sets its torch threads, builds ``CoReReranker.from_pretrained`` (only the layers
the heads need) and scores every row with ``rerank_job.score_item``, the function the
in-process path uses, so the scores are the same. Ray restarts an actor that dies and retries
its batch (Ray Data's actor pools default to ``max_restarts=-1`` and ``max_task_retries=-1``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ray
import ray.data

from .rerank_job import ScorerSettings, score_item
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
        ]
    )


class RerankActor:
    """One pool member: loads the reranker once, then scores batches of work items.

    :func:`actor_class` binds the settings as a class attribute of a subclass, which Ray
    pickles by value, so a restarted actor rebuilds the same reranker.
    """

    scorer: ScorerSettings = ScorerSettings()

    def __init__(self) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.reranker = self.scorer.load()

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        rows = batch.to_pylist() if hasattr(batch, "to_pylist") else _rows(batch)
        results = [score_item(self.reranker, row) for row in rows]
        return pa.Table.from_pylist(results, schema=_schema())


def actor_class(scorer: ScorerSettings) -> type[RerankActor]:
    """A :class:`RerankActor` subclass that builds its reranker from ``scorer``."""
    return type("RerankActor", (RerankActor,), {"scorer": scorer, "__module__": __name__})


def _rows(batch: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    keys = list(batch)
    return [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]


def ray_version() -> tuple[int, ...]:
    return tuple(int(p) for p in ray.__version__.split(".")[:2] if p.isdigit())


def init_ray(
    address: str | None = None, workers: int = 1, threads_per_worker: float = 1, gpus_per_worker: float = 0
) -> None:
    """Connect to ``address`` (``"auto"``: a running cluster), or start a local cluster.

    A local cluster gets one logical CPU more than the actors take, so Ray Data's own tasks
    always find a CPU (with exactly as many as the actors hold, the job can hang).
    """
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return
    cpus = max(os.cpu_count() or 1, int(workers * max(threads_per_worker, 1))) + 1
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
    num_layers_to_keep: int | str | None = None,
    scorer: ScorerSettings | None = None,
) -> Any:
    """A lazy Ray Dataset of ``{query_id, doc_ids, scores, error, seconds}`` (best first) for ``ds``.

    ``ds`` rows: ``query_id``, ``query``, ``doc_ids`` and ``documents`` (strings, same length).
    ``workers`` actors, each with ``threads_per_worker`` torch threads (also its CPU
    reservation) and ``gpus_per_worker`` GPUs, score ``batch_size`` queries per call. A query
    that cannot be scored gets ``error`` and no scores; it does not stop the job. ``scorer``
    overrides the model options (what ``rerank-run`` passes).
    """
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if scorer is None:
        scorer = ScorerSettings(
            reranker=dict(
                model_name_or_path=model,
                heads=heads,
                method=method,
                device=device,
                dtype=dtype,
                max_doc_words=max_doc_words,
                max_length=max_length,
                window_tokens=window_tokens,
                num_layers_to_keep=num_layers_to_keep,
            )
        )
    if scorer.threads is None:
        scorer = ScorerSettings(reranker=dict(scorer.reranker), threads=max(1, int(threads_per_worker)))
    if gpus_per_worker and not scorer.reranker.get("device"):
        scorer = ScorerSettings(reranker={**scorer.reranker, "device": "cuda"}, threads=scorer.threads)
    pool: dict[str, Any]
    if ray_version() >= (2, 51):
        pool = {"compute": ray.data.ActorPoolStrategy(size=workers)}
    else:
        pool = {"concurrency": workers}
    # Fault tolerance is Ray Data's default for actor pools: max_restarts=-1 (a dead actor is
    # replaced) and max_task_retries=-1 (its batch is retried); passing them here is deprecated.
    return ds.map_batches(
        actor_class(scorer),
        batch_size=batch_size,
        batch_format="pyarrow",
        num_cpus=threads_per_worker,
        num_gpus=gpus_per_worker or None,
        **pool,
    )


def score_queries(
    scorer: ScorerSettings,
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
    threads = threads_per_worker or scorer.threads or 1
    init_ray(ray_address, workers, threads, gpus_per_worker)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # rerank-run shows its own bar (queries, rate, ETA)
    context.execution_options.preserve_order = False
    ds = ray.data.from_items([dict(item) for item in items], override_num_blocks=min(len(items), MAX_BLOCKS))
    scorer = ScorerSettings(reranker=dict(scorer.reranker), threads=max(1, int(threads)))
    reranked = rerank_dataset(
        ds,
        workers=workers,
        threads_per_worker=threads,
        gpus_per_worker=gpus_per_worker,
        batch_size=batch_size,
        scorer=scorer,
    )
    for row in reranked.iter_rows():
        yield {
            "query_id": str(row["query_id"]),
            "doc_ids": [str(d) for d in row["doc_ids"]],
            "scores": [float(s) for s in row["scores"]],
            "error": row["error"],
            "seconds": float(row["seconds"] or 0.0),
        }
