"""Rerank a whole TREC run: plan the queries, score them (in process or on a Ray actor pool), write the run.

``run_job`` is what ``core-rerank rerank-run`` calls. The steps:

1. :func:`plan_job` reads the BEIR folder and the run and turns every query into one work item
   ``{"query_id", "query", "doc_ids", "documents"}`` (top ``depth`` candidates, documents as
   ``title + " " + text``; with ``first_stage_scores``, also the run's score of each, which then
   orders the prompts). Bad input never stops the job: malformed run lines, query ids
   missing from ``queries.jsonl``, empty query texts, document ids missing from the corpus (or
   with no text), and queries left with no candidates are counted and listed in the summary.
2. Queries already in ``<out>.parts/`` (or in a finished ``<out>`` made with the same
   settings) are skipped; the rest go to :func:`score_items`, in this process
   (``workers=1``) or through ``core_rerank.ray`` (a Ray Data actor pool).
3. Each result is appended to a part file as it arrives; at the end the run is written
   atomically, with ``<out>.summary.json`` next to it, and the parts are removed. Queries whose
   scoring failed are named in the summary and ``rerank-run`` exits ``EXIT_QUERIES_FAILED``.

Every path scores a query with ``core_rerank.pool.score_item`` on a reranker built from one
``RerankerSettings``, so one worker and many give the same scores, and the summary records the
reranker that was actually built (``summary["reranker"]``).
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
from .errors import InputError
from .pool import built_json, require_ray, score_item, uses_ray
from .settings import RerankerSettings
from .utils import file_sha256, join_title, progress_bar

DEFAULT_RUN_NAME = "run.bm25.top100.trec"
LIST_LIMIT = 20  # ids listed per problem in the summary (the counts are always complete)


# ---------------------------------------------------------------------- scoring
def score_items(
    settings: RerankerSettings,
    items: Iterable[Mapping[str, Any]],
    workers: int = 1,
    use_ray: bool | None = None,
    **pool: Any,
) -> Iterator[dict[str, Any]]:
    """Results of :func:`core_rerank.pool.score_item` for ``items`` as they finish (any order with Ray).

    Without Ray (``workers=1``, ``use_ray`` not True) the items are scored in this process;
    otherwise on ``core_rerank.ray.score_on_pool`` with the ``pool`` options
    (``threads_per_worker``, ``gpus_per_worker``, ``ray_address``, ``batch_size``).
    ``rerank-run`` and ``eval --workers`` both score through here.
    """
    if use_ray is None:
        use_ray = uses_ray(workers, pool.get("ray_address"), pool.get("gpus_per_worker") or 0)
    if not use_ray:
        if workers > 1:
            raise InputError("workers > 1 needs Ray (use_ray=True)")
        reranker = settings.load()
        built = built_json(reranker)
        for item in items:
            yield score_item(reranker, item, built)
        return
    require_ray(f"{workers} workers")
    from .ray import score_on_pool

    yield from score_on_pool(settings, list(items), workers=workers, **pool)


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
    first_stage_scores: bool = False,
) -> Plan:
    """Work items for every query of the run, and a report of what was wrong with the input
    (``first_stage_scores``: each item carries the run's scores of its documents)."""
    from .datasets import find_corpus_file, load_corpus, load_qrels, load_queries

    if depth < 1:
        raise InputError("--depth must be >= 1")
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
        raise InputError(f"nothing to rerank in {run_path}: {why}")
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
        item: dict[str, Any] = {"query_id": qid, "query": queries[qid], "doc_ids": kept, "documents": texts}
        if first_stage_scores:
            item["first_stage_scores"] = [run.scores[qid][doc_id] for doc_id in kept]
        items.append(item)
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
EXIT_QUERIES_FAILED = 3
"""``rerank-run``'s exit code when some queries could not be scored (the run holds the others)."""


def job_settings(plan: Plan, settings: RerankerSettings, **job: Any) -> dict[str, Any]:
    """What decides a job's output (checked when it resumes): data, run, job options, scorer."""
    method = settings.method_name()
    return {
        "data_dir": str(Path(job.pop("data_dir")).resolve()),
        "run": str(Path(plan.run_path).resolve()),
        "run_sha256": file_sha256(plan.run_path),
        **job,
        **settings.fingerprint(),
        "method": method,
        "tag": run_files.run_tag(settings.model, method),
    }


def resume_results(out: Path, settings: dict[str, Any], store: run_files.PartStore, overwrite: bool) -> dict:
    """Results already written for ``out`` with the same settings: a finished run, then part files."""
    summary_path = summary_path_of(out)
    done: dict[str, tuple[list[str], list[float]]] = {}
    if not overwrite and not store.exists() and out.exists():
        if not summary_path.is_file():
            raise InputError(f"{out} exists and was not written by rerank-run; use another --out or --overwrite")
        old = json.loads(summary_path.read_text(encoding="utf-8")).get("settings", {})
        run_files.check_same_settings(old, settings, str(out))
        done = run_files.read_results(out)
    store.open(settings, overwrite=overwrite)
    done.update({q: r for q, r in store.done().items() if q not in done})
    return done


def summary_path_of(out: Path) -> Path:
    return out.with_name(out.name + ".summary.json")


@dataclass
class Scoring:
    """What the scoring loop saw: failures, the reranker each worker built, timings."""

    failed: dict[str, str] = field(default_factory=dict)
    built: dict[str, None] = field(default_factory=dict)  # distinct built-settings JSON, in arrival order
    seconds: float = 0.0
    first_result: float | None = None
    wall: float = 0.0

    def reranker(self) -> Any:
        """The built settings: one dict when every worker built the same reranker, else a list."""
        values = [json.loads(b) for b in self.built]
        return values[0] if len(values) == 1 else values or None


def score_todo(
    todo: list[dict[str, Any]],
    settings: RerankerSettings,
    store: run_files.PartStore,
    done: dict,
    *,
    workers: int,
    use_ray: bool | None,
    progress: bool,
    on_result: Callable[[dict[str, Any]], None] | None,
    pool: dict[str, Any],
) -> Scoring:
    """Score the queries not done yet, appending each result to the part files as it arrives."""
    seen = Scoring()
    start = time.perf_counter()
    bar = progress_bar(len(todo), "rerank-run", unit="query", enabled=progress)
    try:
        if todo:
            for result in score_items(settings, todo, workers=workers, use_ray=use_ray, **pool):
                qid = result["query_id"]
                if seen.first_result is None:
                    seen.first_result = time.perf_counter() - start
                seen.seconds += float(result.get("seconds") or 0.0)
                if result.get("reranker"):
                    seen.built[result["reranker"]] = None
                if result.get("error"):
                    seen.failed[qid] = str(result["error"])
                elif qid not in done:
                    store.append(qid, result["doc_ids"], result["scores"])
                    done[qid] = (list(result["doc_ids"]), list(result["scores"]))
                bar.update(1)
                if on_result is not None:
                    on_result(result)
    finally:
        bar.close()
        store.close()
    seen.wall = time.perf_counter() - start
    return seen


def run_job(
    data_dir: str | Path,
    out: str | Path,
    settings: RerankerSettings | None = None,
    *,
    run_file: str | Path | None = None,
    depth: int = 20,
    split: str = "test",
    keep_identical_ids: bool = False,
    first_stage_scores: bool = False,
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
    ``overwrite`` starts again. Queries that fail to score are left out of ``out`` and named in
    the summary (``queries.failed``); running again retries only them. ``on_result`` sees every
    new result (tests use it to interrupt). ``first_stage_scores``: the run's scores order the
    prompts (``core_rerank.first_stage``); the summary's settings then say so.
    """
    settings = settings or RerankerSettings()
    out = Path(out)
    started = time.perf_counter()
    plan = plan_job(data_dir, run_file, depth, split, keep_identical_ids, first_stage_scores)
    job: dict[str, Any] = {"depth": depth, "split": split, "keep_identical_ids": keep_identical_ids}
    if first_stage_scores:  # recorded only when on: the settings of jobs without it are as before
        job["first_stage_scores"] = True
    fingerprint = job_settings(plan, settings, data_dir=data_dir, **job)
    store = run_files.PartStore(out)
    done = resume_results(out, fingerprint, store, overwrite)
    resumed = len({item["query_id"] for item in plan.items} & set(done))
    todo = [item for item in plan.items if item["query_id"] not in done]
    log(
        f"rerank-run: {len(plan.items)} queries to rerank from {plan.run_path}"
        + (f" ({resumed} already done in {out}, {len(todo)} to go)" if resumed else "")
    )
    seen = score_todo(
        todo, settings, store, done, workers=workers, use_ray=use_ray, progress=progress, on_result=on_result, pool=pool
    )
    final = [(item["query_id"], *done[item["query_id"]]) for item in plan.items if item["query_id"] in done]
    lines = run_files.write_run(out, final, str(fingerprint["tag"]))
    report = dict(plan.report)
    report["failed"] = {
        "count": len(seen.failed),
        "ids": list(seen.failed)[:LIST_LIMIT],
        "errors": dict(list(seen.failed.items())[:LIST_LIMIT]),
    }
    summary = {
        "out": str(out),
        "settings": fingerprint,
        "reranker": seen.reranker(),
        "queries": {
            "planned": len(plan.items),
            "written": len(final),
            "resumed": resumed,
            "scored_now": len(todo) - len(seen.failed),
            "failed": len(seen.failed),
        },
        "lines": lines,
        "workers": workers,
        "pool": {k: v for k, v in pool.items() if v is not None},
        "seconds": {
            "total": time.perf_counter() - started,
            "scoring_wall": seen.wall,
            "first_result": seen.first_result,
            "scoring_sum": seen.seconds,
        },
        "queries_per_second": (len(todo) / seen.wall) if todo and seen.wall > 0 else None,
        "input": report,
    }
    run_files.atomic_write(summary_path_of(out), [json.dumps(summary, indent=2) + "\n"])
    store.remove()
    return summary
