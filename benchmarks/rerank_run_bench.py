"""Queries per second of ``rerank-run``: Ray actor pools of 2 and 1 workers vs one plain process.

Takes the first ``--queries`` judged queries of a BEIR folder (qrels order), writes their top
``--depth`` lines of the folder's run to a temporary run file, and reranks it with:

- ``inprocess``: ``rerank-run --workers 1`` (no Ray), ``--threads``;
- ``ray1``: a Ray Data pool of 1 actor (``--workers 1 --ray --threads-per-worker 1``);
- ``ray2``: a pool of 2 actors (``--workers 2 --threads-per-worker 1``);
- ``eval`` (with ``--eval``): plain ``core-rerank eval --methods core`` of the same queries.

Reports end-to-end queries/s (model loading and cluster start included) and steady-state
queries/s (after the first result), the load average around each run, and checks that every
rerank-run configuration wrote the same run (scores within 1e-6). Example (2-core machine)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rerank_run_bench.py --data ../shared/data/scifact \\
        --queries 40 --depth 20 --max-doc-words 80 --eval
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def subset_run(data: Path, run: Path, queries: int, depth: int, out: Path) -> list[str]:
    from core_rerank import run_files
    from core_rerank.datasets import load_qrels

    qids = [q for q in load_qrels(data) if q in run_files.read_run(run).order][:queries]
    wanted = set(qids)
    kept: dict[str, int] = {}
    with open(run, encoding="utf-8") as src, open(out, "w", encoding="utf-8") as dst:
        for line in src:
            parts = line.split()
            if parts and parts[0] in wanted and kept.get(parts[0], 0) < depth + 1:  # +1: BEIR's identical-id rule
                kept[parts[0]] = kept.get(parts[0], 0) + 1
                dst.write(line)
    return qids


def rerank(config: str, args: argparse.Namespace, run: Path, out: Path) -> dict:
    from core_rerank.rerank_job import run_job
    from core_rerank.settings import RerankerSettings

    scorer = RerankerSettings(
        model=args.model, device="cpu", dtype="float32", max_doc_words=args.max_doc_words, threads=args.threads
    )
    pool: dict = {}
    workers, use_ray = 1, False
    if config.startswith("ray"):
        workers, use_ray = int(config[3:]), True
        pool = {"threads_per_worker": 1}
    return run_job(
        args.data,
        out,
        scorer,
        run_file=run,
        depth=args.depth,
        workers=workers,
        use_ray=use_ray,
        overwrite=True,
        progress=not args.quiet,
        **pool,
    )


def plain_eval(args: argparse.Namespace, run: Path, out: Path) -> dict:
    command = [
        str(Path(sys.executable).with_name("core-rerank")), "eval", "--data", str(args.data), "--run", str(run),
        "--methods", "core", "--depth", str(args.depth), "--max-doc-words", str(args.max_doc_words),
        "--max-queries", str(args.queries), "--threads", str(args.threads), "--device", "cpu",
        "--dtype", "float32", "--model", args.model, "--out", str(out), "--no-resume", "--quiet",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return {"seconds": {"total": time.perf_counter() - start}, "command": " ".join(command)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--run", type=Path, help="default: <data>/run.bm25.top100.trec")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-doc-words", type=int, default=80)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the in-process runs")
    parser.add_argument("--configs", default="ray2,ray1,inprocess", help="comma list of ray2, ray1, inprocess")
    parser.add_argument("--eval", action="store_true", help="also time plain `core-rerank eval --methods core`")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from core_rerank import run_files

    tmp = Path(tempfile.mkdtemp(prefix="rerank_run_bench_"))
    run = tmp / "run.subset.trec"
    qids = subset_run(args.data, args.run or args.data / "run.bm25.top100.trec", args.queries, args.depth, run)
    print(f"{len(qids)} queries, depth {args.depth}, {args.max_doc_words}-word documents, {os.cpu_count()} CPUs")
    figures: dict = {"queries": len(qids), "depth": args.depth, "max_doc_words": args.max_doc_words, "runs": {}}
    outs = {}
    for config in [c.strip() for c in args.configs.split(",") if c.strip()] + (["eval"] if args.eval else []):
        load_before = os.getloadavg()[0]
        out = tmp / f"{config}.trec"
        summary = plain_eval(args, run, tmp / "eval.json") if config == "eval" else rerank(config, args, run, out)
        seconds = summary["seconds"]
        row = {"total_s": seconds["total"], "load_before": load_before, "load_after": os.getloadavg()[0]}
        row["qps_end_to_end"] = len(qids) / seconds["total"]
        if config != "eval":
            outs[config] = out
            first, wall = seconds["first_result"], seconds["scoring_wall"]
            row["first_result_s"] = first
            row["qps_steady"] = (len(qids) - 1) / (wall - first) if wall > first else None
        figures["runs"][config] = row
        steady = f", steady {row['qps_steady']:.3f} q/s" if row.get("qps_steady") else ""
        print(
            f"{config:>9}: {row['qps_end_to_end']:.3f} q/s end to end ({seconds['total']:.1f} s){steady}; "
            f"load average {load_before:.2f} -> {row['load_after']:.2f}",
            flush=True,
        )
    if len(outs) > 1:
        names = list(outs)
        base = run_files.read_results(outs[names[0]])
        for name in names[1:]:
            other = run_files.read_results(outs[name])
            same_order = all(base[q][0] == other[q][0] for q in base) and list(base) == list(other)
            diff = max(abs(a - b) for q in base for a, b in zip(base[q][1], other[q][1]))
            print(f"{name} vs {names[0]}: same order {same_order}, max score difference {diff:.2e}")
    runs = figures["runs"]
    for a, b in (("ray2", "ray1"), ("ray2", "inprocess"), ("ray1", "inprocess"), ("inprocess", "eval")):
        if a in runs and b in runs:
            ratio = runs[a]["qps_end_to_end"] / runs[b]["qps_end_to_end"]
            steady = ""
            if runs[a].get("qps_steady") and runs[b].get("qps_steady"):
                steady = f", steady {runs[a]['qps_steady'] / runs[b]['qps_steady']:.2f}x"
            print(f"{a} / {b}: {ratio:.2f}x end to end{steady}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
