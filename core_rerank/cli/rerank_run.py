"""``core-rerank rerank-run``: rerank a TREC run of a BEIR folder into a new TREC run (one process or Ray)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from .options import (
    add_model_arguments,
    add_reranker_arguments,
    add_worker_arguments,
    check_ray_installed,
    reranker_settings,
)


def register(commands) -> None:
    p = commands.add_parser(
        "rerank-run",
        help="rerank a first-stage TREC run of a BEIR folder (in process, or on Ray workers)",
        description="Rerank the top --depth candidates of every query of a TREC run and write a new TREC run "
        "(scores descending, run tag core-rerank.<model>.<method>). Results are saved as they "
        "come; run the same command again to finish an interrupted job. Exit codes: 0 every query "
        "scored; 2 bad input or options; 3 some queries could not be scored (the run holds the others, the "
        "summary names them, and running again retries only them).",
    )
    p.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl)")
    p.add_argument("--run", help="TREC run to rerank (default: <data>/run.bm25.top100.trec)")
    p.add_argument("--depth", type=int, default=20, help="candidates reranked per query (top of the run)")
    p.add_argument("--out", required=True, help="TREC run to write (resumed from <out>.parts/ when it exists)")
    p.add_argument(
        "--split",
        default="test",
        help="qrels split whose judged queries missing from the run are reported (default: test)",
    )
    p.add_argument(
        "--keep-identical-ids",
        action="store_true",
        help="keep a candidate whose id equals the query id (BEIR drops it; so does eval)",
    )
    p.add_argument(
        "--first-stage-scores",
        action="store_true",
        help="order the prompts by the run's own scores (higher is better) instead of its rank order "
        "(core_rerank.first_stage); recorded in the summary's settings",
    )
    add_model_arguments(p)
    add_reranker_arguments(p)
    add_worker_arguments(p)
    p.add_argument("--ray", action="store_true", help="use a Ray actor pool even with --workers 1")
    p.add_argument("--batch-size", type=int, default=1, help="queries per Ray batch (default: 1)")
    p.add_argument("--overwrite", action="store_true", help="start again instead of resuming --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..rerank_job import EXIT_QUERIES_FAILED, run_job

    use_ray = check_ray_installed(args)
    threads = args.threads_per_worker or args.threads
    settings = reranker_settings(args).replace(threads=max(1, int(threads)) if threads else None)
    pool = {}
    if use_ray:
        pool = {
            "threads_per_worker": threads or 1,
            "gpus_per_worker": args.gpus_per_worker,
            "ray_address": args.ray_address,
            "batch_size": args.batch_size,
        }
    summary = run_job(
        args.data,
        args.out,
        settings,
        run_file=args.run,
        depth=args.depth,
        split=args.split,
        keep_identical_ids=args.keep_identical_ids,
        first_stage_scores=args.first_stage_scores,
        workers=args.workers,
        use_ray=use_ray,
        overwrite=args.overwrite,
        progress=not args.quiet,
        **pool,
    )
    for line in format_summary(summary):
        print(line, file=sys.stderr if line.startswith(("warning", "error", "  ")) else sys.stdout)
    return EXIT_QUERIES_FAILED if summary["queries"]["failed"] else 0


def format_summary(summary: Mapping[str, Any]) -> list[str]:
    """The summary as short lines for the terminal (problems only when there are some)."""
    q = summary["queries"]
    lines = [
        f"wrote {summary['out']}: {q['written']} queries, {summary['lines']} lines "
        f"({q['scored_now']} scored now, {q['resumed']} resumed, {q['failed']} failed)"
    ]
    if summary.get("queries_per_second"):
        lines.append(
            f"{summary['queries_per_second']:.3f} queries/s over {summary['seconds']['scoring_wall']:.1f} s "
            f"with {summary['workers']} worker(s)"
        )
    report = summary["input"]
    for key, label in (
        ("unknown_query_ids", "query ids not in queries.jsonl (skipped)"),
        ("empty_query_text", "queries with empty text (skipped)"),
        ("no_candidates", "queries with no candidate left (skipped)"),
        ("judged_queries_not_in_run", "judged queries with no line in the run"),
    ):
        entry = report[key]
        if entry["count"]:
            lines.append(
                f"warning: {entry['count']} {label}: {', '.join(map(str, entry['ids']))}"
                + (" ..." if entry["count"] > len(entry["ids"]) else "")
            )
    failed = report["failed"]
    if failed["count"]:
        lines.append(
            f"error: {failed['count']} queries could not be scored (not in the run; run the same command "
            f"again to retry only them; exit code 3): {', '.join(map(str, failed['ids']))}"
            + (" ..." if failed["count"] > len(failed["ids"]) else "")
        )
        lines.extend(f"  {qid}: {why}" for qid, why in failed["errors"].items())
    for key, label in (
        ("missing_doc_ids", "candidate ids not in the corpus (left out)"),
        ("empty_documents", "candidates with no text (left out)"),
    ):
        entry = report[key]
        if entry["count"]:
            examples = "; ".join(f"{q}: {', '.join(d)}" for q, d in entry["examples"].items())
            lines.append(f"warning: {entry['count']} {label}, in {entry['queries']} queries: {examples}")
    malformed = report["malformed_lines"]
    if malformed["count"]:
        lines.append(f"warning: {malformed['count']} malformed run lines skipped:")
        lines.extend(f"  {line}" for line in malformed["lines"])
    if report["duplicate_lines"]:
        lines.append(f"warning: {report['duplicate_lines']} repeated (query, doc) lines in the run (first kept)")
    return lines
