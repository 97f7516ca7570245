"""Rerank a whole TREC run: plan the queries, score them (in process or on a Ray actor pool), write the run.

``run_job`` is what ``core-rerank rerank-run`` calls. The steps:

1. :func:`plan_job` reads the BEIR folder and the run and turns every query into one work item
   ``{"query_id", "query", "doc_ids", "documents"}`` (top ``depth`` candidates, documents as
   ``title + " " + text``). Bad input never stops the job: malformed run lines, query ids
   missing from ``queries.jsonl``, empty query texts, document ids missing from the corpus (or
   with no text), and queries left with no candidates are counted and listed in the summary.
2. Queries already in ``<out>.parts/`` (or in a finished ``<out>`` made with the same
   settings) are skipped; the rest go to :func:`score_queries`, in this process
   (``workers=1``) or through ``core_rerank.ray`` (a Ray Data actor pool).
3. Each result is appended to a part file as it arrives; at the end the run is written
   atomically, with ``<out>.summary.json`` next to it, and the parts are removed.

Every path scores a query with :func:`score_item`, so one worker and many give the same scores.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import run_files
from .utils import DEFAULT_MODEL, join_title, progress_bar

RAY_INSTALL_HINT = 'more than one worker needs Ray: pip install "core-rerank[ray]"'
DEFAULT_RUN_NAME = "run.bm25.top100.trec"
LIST_LIMIT = 20  # ids listed per problem in the summary (the counts are always complete)


# ---------------------------------------------------------------------- scoring
@dataclass
class ScorerSettings:
    """How each worker builds its reranker: ``CoReReranker.from_pretrained`` keyword arguments
    (``model_name_or_path`` first) and the torch CPU threads it may use (``None``: torch's default)."""

    reranker: dict[str, Any] = field(default_factory=lambda: {"model_name_or_path": DEFAULT_MODEL})
    threads: int | None = None

    @property
    def model(self) -> str:
        return str(self.reranker.get("model_name_or_path", DEFAULT_MODEL))

    def method(self) -> str:
        """The scoring method without loading the model: ``method``, else the heads file's, else core."""
        if self.reranker.get("method"):
            return str(self.reranker["method"])
        heads = self.reranker.get("heads")
        if heads is not None:
            from .head_config import HeadConfig

            return str(HeadConfig.load(heads).method)
        return "core"

    def fingerprint(self) -> dict[str, Any]:
        """What decides the scores (not device or threads, so a restart may change those)."""
        skip = {"device", "device_map"}
        return {
            key: value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
            for key, value in sorted(self.reranker.items())
            if key not in skip
        }

    def load(self) -> Any:
        """Set torch's threads, then build the reranker (pruned to the layers its heads need)."""
        import torch

        from .reranker import CoReReranker

        if self.threads:
            torch.set_num_threads(int(self.threads))
        kwargs = {k: v for k, v in self.reranker.items() if v is not None}
        return CoReReranker.from_pretrained(**kwargs)


def score_item(reranker: Any, item: Mapping[str, Any]) -> dict[str, Any]:
    """Score one work item: ``{"query_id", "doc_ids", "scores", "error", "seconds"}``, best first.

    Ties keep the input (first-stage) order. An exception becomes ``error`` (and no scores),
    so one bad query never stops a job.
    """
    qid = str(item["query_id"])
    doc_ids = [str(d) for d in item["doc_ids"]]
    start = time.perf_counter()
    try:
        scores = [float(s) for s in reranker.score(str(item["query"]), [str(d) for d in item["documents"]])]
        if len(scores) != len(doc_ids):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(scores)} documents")
    except Exception as exc:
        return {
            "query_id": qid,
            "doc_ids": [],
            "scores": [],
            "error": f"{type(exc).__name__}: {exc}",
            "seconds": time.perf_counter() - start,
        }
    order = sorted(range(len(doc_ids)), key=lambda i: (-scores[i], i))
    return {
        "query_id": qid,
        "doc_ids": [doc_ids[i] for i in order],
        "scores": [scores[i] for i in order],
        "error": None,
        "seconds": time.perf_counter() - start,
    }


def score_queries(
    scorer: ScorerSettings,
    items: Iterable[Mapping[str, Any]],
    workers: int = 1,
    use_ray: bool | None = None,
    **pool: Any,
) -> Iterator[dict[str, Any]]:
    """Results of :func:`score_item` for ``items`` as they finish (any order with Ray).

    ``workers=1`` (and ``use_ray`` not True) scores in this process; otherwise the items go
    through ``core_rerank.ray.score_queries`` with ``pool`` options (``threads_per_worker``,
    ``gpus_per_worker``, ``ray_address``, ``batch_size``). This is the function ``core-rerank
    eval --workers`` is meant to call.
    """
    if use_ray is None:
        use_ray = workers > 1 or pool.get("ray_address") is not None
    if not use_ray:
        if workers > 1:
            raise ValueError("workers > 1 needs Ray (use_ray=True)")
        reranker = scorer.load()
        for item in items:
            yield score_item(reranker, item)
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ImportError(RAY_INSTALL_HINT) from None
    from .ray import score_queries as ray_score_queries

    yield from ray_score_queries(scorer, list(items), workers=workers, **pool)


# ---------------------------------------------------------------------- planning
@dataclass
class Plan:
    items: list[dict[str, Any]]  # work items, in the run's query order
    run_path: str
    report: dict[str, Any]  # problems of the input, with counts and ids


def _listed(ids: list[Any]) -> dict[str, Any]:
    return {"count": len(ids), "ids": ids[:LIST_LIMIT]}


def plan_job(
    data_dir: str | Path,
    run_file: str | Path | None = None,
    depth: int = 20,
    split: str = "test",
    keep_identical_ids: bool = False,
) -> Plan:
    """Work items for every query of the run, and a report of what was wrong with the input."""
    from .datasets import find_corpus_file, load_corpus, load_qrels, load_queries

    if depth < 1:
        raise ValueError("--depth must be >= 1")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data folder {data_dir}")
    run_path = Path(run_file) if run_file is not None else data_dir / DEFAULT_RUN_NAME
    if run_file is None and not run_path.is_file():
        raise FileNotFoundError(f"{data_dir} has no {DEFAULT_RUN_NAME}; give the run to rerank with --run")
    run = run_files.read_run(run_path)
    if not run.order:
        why = (
            f"none of its {run.lines} lines could be read; first: {run.problems[0]}"
            if run.problems
            else "it holds no run lines"
        )
        raise ValueError(f"nothing to rerank in {run_path}: {why}")
    queries = load_queries(data_dir)
    candidates: dict[str, list[str]] = {}
    identical = 0
    for qid, docs in run.order.items():
        if not keep_identical_ids and qid in docs:  # BEIR's rule, as `core-rerank eval` applies it
            identical += 1
            docs = [d for d in docs if d != qid]
        candidates[qid] = docs[:depth]
    corpus = load_corpus(find_corpus_file(data_dir), doc_ids={d for docs in candidates.values() for d in docs})

    unknown, empty_query, no_candidates = [], [], []
    missing: dict[str, list[str]] = {}
    empty_docs: dict[str, list[str]] = {}
    items = []
    for qid, docs in candidates.items():
        if qid not in queries:
            unknown.append(qid)
            continue
        if not queries[qid].strip():
            empty_query.append(qid)
            continue
        kept, texts = [], []
        for doc_id in docs:
            record = corpus.get(doc_id)
            if record is None:
                missing.setdefault(qid, []).append(doc_id)
                continue
            text = join_title(record.get("title"), record.get("text") or "")
            if not text:
                empty_docs.setdefault(qid, []).append(doc_id)
                continue
            kept.append(doc_id)
            texts.append(text)
        if not kept:
            no_candidates.append(qid)
            continue
        items.append({"query_id": qid, "query": queries[qid], "doc_ids": kept, "documents": texts})
    qrels_path = data_dir / "qrels" / f"{split}.tsv"
    judged_absent = [q for q in load_qrels(qrels_path)] if qrels_path.is_file() else []
    judged_absent = [q for q in judged_absent if q not in run.order]

    report = {
        "run_lines": run.lines,
        "run_queries": len(run.order),
        "malformed_lines": {"count": len(run.problems), "lines": [str(p) for p in run.problems[:LIST_LIMIT]]},
        "duplicate_lines": run.duplicates,
        "identical_ids_removed": identical,
        "unknown_query_ids": _listed(unknown),
        "empty_query_text": _listed(empty_query),
        "missing_doc_ids": {
            "count": sum(map(len, missing.values())),
            "queries": len(missing),
            "examples": {q: d[:5] for q, d in list(missing.items())[:LIST_LIMIT]},
        },
        "empty_documents": {
            "count": sum(map(len, empty_docs.values())),
            "queries": len(empty_docs),
            "examples": {q: d[:5] for q, d in list(empty_docs.items())[:LIST_LIMIT]},
        },
        "no_candidates": _listed(no_candidates),
        "judged_queries_not_in_run": _listed(judged_absent),
    }
    return Plan(items=items, run_path=str(run_path), report=report)


# ---------------------------------------------------------------------- the job
def run_job(
    data_dir: str | Path,
    out: str | Path,
    scorer: ScorerSettings | None = None,
    *,
    run_file: str | Path | None = None,
    depth: int = 20,
    split: str = "test",
    keep_identical_ids: bool = False,
    workers: int = 1,
    use_ray: bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
    **pool: Any,
) -> dict[str, Any]:
    """Rerank the run of a BEIR folder into ``out``; returns the summary (also in ``<out>.summary.json``).

    Resumes from ``<out>.parts/`` (or a finished ``out``) made with the same settings;
    ``overwrite`` starts again. ``on_result`` sees every new result (tests use it to interrupt).
    """
    scorer = scorer or ScorerSettings()
    out = Path(out)
    started = time.perf_counter()
    plan = plan_job(data_dir, run_file, depth, split, keep_identical_ids)
    method = scorer.method()
    tag = run_files.run_tag(scorer.model, method)
    settings = {
        "data_dir": str(Path(data_dir).resolve()),
        "run": str(Path(plan.run_path).resolve()),
        "run_sha256": _sha256(plan.run_path),
        "depth": depth,
        "split": split,
        "keep_identical_ids": keep_identical_ids,
        **scorer.fingerprint(),
        "method": method,
        "tag": tag,
    }

    summary_path = out.with_name(out.name + ".summary.json")
    store = run_files.PartStore(out)
    done: dict[str, tuple[list[str], list[float]]] = {}
    if not overwrite and not store.exists() and out.exists():
        if not summary_path.is_file():
            raise ValueError(f"{out} exists and was not written by rerank-run; use another --out or --overwrite")
        old = json.loads(summary_path.read_text(encoding="utf-8")).get("settings", {})
        run_files.check_same_settings(old, settings, str(out))
        done = run_files.read_results(out)
    store.open(settings, overwrite=overwrite)
    done.update({q: r for q, r in store.done().items() if q not in done})
    wanted = {item["query_id"] for item in plan.items}
    resumed = len(wanted & set(done))
    todo = [item for item in plan.items if item["query_id"] not in done]
    log(
        f"rerank-run: {len(plan.items)} queries to rerank from {plan.run_path}"
        + (f" ({resumed} already done in {out}, {len(todo)} to go)" if resumed else "")
    )

    failed: dict[str, str] = {}
    seconds = 0.0
    first_result: float | None = None
    score_start = time.perf_counter()
    bar = progress_bar(len(todo), "rerank-run", unit="query", enabled=progress)
    try:
        if todo:
            for result in score_queries(scorer, todo, workers=workers, use_ray=use_ray, **pool):
                qid = result["query_id"]
                if first_result is None:
                    first_result = time.perf_counter() - score_start
                seconds += float(result.get("seconds") or 0.0)
                if result.get("error"):
                    failed[qid] = str(result["error"])
                elif qid not in done:
                    store.append(qid, result["doc_ids"], result["scores"])
                    done[qid] = (list(result["doc_ids"]), list(result["scores"]))
                bar.update(1)
                if on_result is not None:
                    on_result(result)
    finally:
        bar.close()
        store.close()
    wall = time.perf_counter() - score_start

    final = [(item["query_id"], *done[item["query_id"]]) for item in plan.items if item["query_id"] in done]
    lines = run_files.write_run(out, final, tag)
    report = dict(plan.report)
    report["failed"] = {
        "count": len(failed),
        "ids": list(failed)[:LIST_LIMIT],
        "errors": dict(list(failed.items())[:LIST_LIMIT]),
    }
    summary = {
        "out": str(out),
        "settings": settings,
        "queries": {
            "planned": len(plan.items),
            "written": len(final),
            "resumed": resumed,
            "scored_now": len(todo) - len(failed),
            "failed": len(failed),
        },
        "lines": lines,
        "workers": workers,
        "pool": {k: v for k, v in pool.items() if v is not None},
        "seconds": {
            "total": time.perf_counter() - started,
            "scoring_wall": wall,
            "first_result": first_result,
            "scoring_sum": seconds,
        },
        "queries_per_second": (len(todo) / wall) if todo and wall > 0 else None,
        "input": report,
    }
    run_files.atomic_write(summary_path, [json.dumps(summary, indent=2) + "\n"])
    store.remove()
    return summary


def _sha256(path: str | Path) -> str:
    from .utils import file_sha256

    return file_sha256(path)
