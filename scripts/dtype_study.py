"""What does bfloat16 (or int8 dynamic quantization) do to the ranking on a CPU? A study.

    python scripts/dtype_study.py --model smollm2-135m-instruct --sets scifact-train,nq --queries 30
    python scripts/dtype_study.py --model smollm2-135m-instruct --sets dl19,scifact-test --queries 50
    python scripts/dtype_study.py --model smollm2-135m-instruct --report     # report only

Every query's BM25 top-``depth`` candidates (``--max-doc-words`` words each) are scored by the
same reranker loaded in each variant: ``float32``; ``bfloat16`` (weights and activations;
the captured heads' attention rows are computed in float32 from the bfloat16 queries and keys,
see ``core_rerank/capture.py``); and ``int8``: the float32 model with every ``nn.Linear``
replaced by ``torch.ao.quantization.quantize_dynamic`` (int8 weights, activations quantized on
the fly); ``int8-mlp``: the same for the MLPs' linear layers only (the attention projections,
whose queries and keys the heads read, stay float32). Each reranker uses its preset's default prompt windows (what ``score()`` runs).
All variants of a query run one after the other in one process (their order rotates from
query to query), so the seconds per query compare side by side under the same machine load.

Sets: the training sets of ``scripts/window_study.py`` (SciFact *train* and NQ-open; loaded by
its ``load_set``) for choosing, and TREC DL19 / SciFact test (the folders' BM25 run, judged
queries in qrels order) reported only. Results go to ``results/dtype_study/<model>/<set>.json``
(every score, time and the dtype each reranker reported), so the report is re-printed without
recomputing and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import window_study  # noqa: E402

from core_rerank import CoReReranker  # noqa: E402
from core_rerank.evaluation.metrics import evaluate, strict_scores  # noqa: E402
from core_rerank.evaluation.metrics import kendall_tau as metrics_kendall_tau  # noqa: E402
from core_rerank.utils import join_title  # noqa: E402

SHARED = window_study.SHARED
TRAINING = window_study.SETS  # ("scifact-train", "nq")
TEST_DIRS = window_study.TEST_DIRS
SETS = (*TRAINING, *TEST_DIRS)
VARIANTS = ("float32", "bfloat16", "int8", "int8-mlp")
METHOD_NAMES = {"core": "CoRe-R", "qr": "QR-R", "icr": "ICR"}


# ---------------------------------------------------------------------- data and models
def build(model: str, method: str, variant: str, max_doc_words: int) -> CoReReranker:
    """The model's shipped preset for ``method``, loaded in ``variant`` on the CPU."""
    import torch

    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; use {', '.join(VARIANTS)}")
    dtype = "float32" if variant.startswith("int8") else variant
    reranker = CoReReranker.from_pretrained(
        model, method=method, device="cpu", dtype=dtype, max_doc_words=max_doc_words
    )
    if variant.startswith("int8"):
        from torch.ao.quantization import quantize_dynamic

        # int8: every linear layer; int8-mlp: only the MLPs (attention projections stay float32)
        targets = [m for n, m in reranker.model.named_modules() if n.endswith(".mlp")] if variant == "int8-mlp" else []
        for module in targets or [reranker.model]:
            quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    return reranker


def environment(threads: int) -> dict[str, Any]:
    import torch

    from core_rerank import cpu_features

    return {
        "torch": torch.__version__,
        "threads": threads,
        "cpu": torch.cpu.get_capabilities().get("cpu_name") or platform.processor() or platform.machine(),
        "native_bf16": cpu_features.has_native_bf16(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


# ---------------------------------------------------------------------- the run
def study_set(args: argparse.Namespace, name: str) -> Path:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out_dir) / args.model / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"model": args.model, "depth": args.depth, "max_doc_words": args.max_doc_words}
    record = json.loads(out.read_text()) if out.is_file() else {"settings": settings, "queries": {}}
    if record["settings"] != settings:
        raise SystemExit(f"{out} holds another setting ({record['settings']}); use another --out-dir")
    queries, qrels, candidates, corpus = window_study.load_any_set(name, args.queries, args.depth)
    record["qrels"] = {**record.get("qrels", {}), **qrels}
    run: dict[str, Any] = {"command": " ".join(sys.argv), **environment(args.threads)}
    record.setdefault("runs", []).append(run)
    run_index = len(record["runs"]) - 1
    rerankers = {(m, v): build(args.model, m, v, args.max_doc_words) for m in args.methods for v in args.variants}
    run["rerankers"] = {f"{m}/{v}": r.settings()["dtype"] for (m, v), r in rerankers.items()}  # the dtype that ran
    last_save = time.monotonic()
    for number, qid in enumerate(queries):
        doc_ids = candidates[qid]
        if not doc_ids:
            continue
        texts = [join_title(corpus[d].get("title"), corpus[d]["text"]) for d in doc_ids]
        entry = record["queries"].setdefault(qid, {"doc_ids": doc_ids, "scores": {}, "time_s": {}, "run": {}})
        variants = list(args.variants)
        variants = variants[number % len(variants) :] + variants[: number % len(variants)]
        for method in args.methods:
            scores, times = entry["scores"].setdefault(method, {}), entry["time_s"].setdefault(method, {})
            for variant in variants:
                if variant in scores:
                    continue
                start = time.perf_counter()
                scores[variant] = rerankers[(method, variant)].score(queries[qid], texts)
                times[variant] = round(time.perf_counter() - start, 4)
                entry["run"].setdefault(method, {})[variant] = run_index  # times compare within one run
        line = " ".join(f"{m}/{v} {entry['time_s'][m][v]:.2f}s" for m in args.methods for v in args.variants)
        print(f"{name} {number + 1}/{len(queries)} {qid}: {line}", flush=True)
        if time.monotonic() - last_save > 30:
            out.write_text(json.dumps(record))
            last_save = time.monotonic()
    out.write_text(json.dumps(record))
    return out


# ---------------------------------------------------------------------- agreement
def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (``metrics.kendall_tau``); 1.0 where every pair is tied in both lists
    (the same order), where that function gives NaN."""
    tau = metrics_kendall_tau(a, b)
    return 1.0 if math.isnan(tau) else tau


def order(doc_ids: Sequence[str], scores: Sequence[float]) -> list[str]:
    """The ranking the reranker returns (score descending, ties in first-stage order)."""
    ranked = strict_scores(doc_ids, scores)
    return sorted(ranked, key=lambda d: -ranked[d])


def per_query(record: dict, method: str, variant: str) -> dict[str, dict[str, float]]:
    """``{qid: {ndcg, ndcg_f32, tau, top10, same_order, time, time_f32}}`` for queries with both."""
    rows = {}
    for qid, entry in record["queries"].items():
        scores = entry["scores"].get(method, {})
        if variant not in scores or "float32" not in scores:
            continue
        doc_ids, ours, base = entry["doc_ids"], scores[variant], scores["float32"]
        qrels = {qid: record["qrels"][qid]}
        ndcg = evaluate(qrels, {qid: strict_scores(doc_ids, ours)}, recall_ks=()).mean["ndcg@10"]
        ndcg_f32 = evaluate(qrels, {qid: strict_scores(doc_ids, base)}, recall_ks=()).mean["ndcg@10"]
        ranked, ranked_f32 = order(doc_ids, ours), order(doc_ids, base)
        k = min(10, len(doc_ids))
        rows[qid] = {
            "ndcg": ndcg,
            "ndcg_f32": ndcg_f32,
            "tau": kendall_tau(ours, base),
            "top10": len(set(ranked[:k]) & set(ranked_f32[:k])) / k,
            "same_order": float(ranked == ranked_f32),
            "time": entry["time_s"][method][variant],
            "time_f32": entry["time_s"][method]["float32"],
            "same_run": float(len({entry["run"][method][v] for v in (variant, "float32")}) == 1),
        }
    return rows


# ---------------------------------------------------------------------- report
def report_row(label: str, rows: dict[str, dict[str, float]], variant: str) -> str:
    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows.values())

    ndcg, seconds = f"{100 * mean('ndcg'):.2f}", f"{mean('time'):.2f} s"
    if variant == "float32":
        return f"| {label} | {len(rows)} | {variant} | {ndcg} | - | - | - | - | {seconds} | - |"
    differences = [r["ndcg"] - r["ndcg_f32"] for r in rows.values()]
    error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0
    taus = [r["tau"] for r in rows.values()]
    speed = f"{mean('time_f32') / mean('time'):.2f}x" if mean("same_run") == 1 else "- (another run)"
    return (
        f"| {label} | {len(rows)} | {variant} | {ndcg} | "
        f"{100 * statistics.fmean(differences):+.2f} ± {100 * error:.2f} | {mean('tau'):.3f} (min {min(taus):.2f}) | "
        f"{100 * mean('top10'):.1f}% | {100 * mean('same_order'):.0f}% | {seconds} | {speed} |"
    )


def report(args: argparse.Namespace) -> None:
    folder = Path(args.out_dir) / args.model
    records = {n: json.loads((folder / f"{n}.json").read_text()) for n in SETS if (folder / f"{n}.json").is_file()}
    if not records:
        raise SystemExit(f"no study results in {folder}")
    methods = [
        m for m in METHOD_NAMES if any(m in e["scores"] for r in records.values() for e in r["queries"].values())
    ]
    for method in methods:
        # groups of rows: each training set, both training sets together, then each test set
        groups: list[tuple[str, dict[str, dict[str, dict[str, float]]]]] = []
        for name, record in records.items():
            groups.append((name, {v: per_query(record, method, v) for v in VARIANTS}))
            if name == TRAINING[-1] and all(t in records for t in TRAINING):
                both = {v: {f"{n}:{q}": r for n, g in groups for q, r in g[v].items()} for v in VARIANTS}
                groups.append(("training sets together", both))
        print(f"\n{args.model}, {METHOD_NAMES[method]}: nDCG@10 x 100, each variant against float32 in the same run\n")
        print(
            "| set | queries | variant | nDCG@10 | vs float32 (± s.e.) | Kendall tau vs float32 (mean, min) | "
            "top-10 overlap | identical order | s / query | speed-up vs float32 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for label, by_variant in groups:
            for variant, rows in by_variant.items():
                if rows:
                    print(report_row(label, rows, variant))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sets", default=",".join(TRAINING), help=f"comma-separated: {', '.join(SETS)}")
    parser.add_argument("--methods", default="core,qr", help="comma-separated: core, qr, icr")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated: " + ", ".join(VARIANTS))
    parser.add_argument("--queries", type=int, default=30, help="first N (judged) queries of each set")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-doc-words", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the sets run one after the other)")
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "dtype_study"))
    parser.add_argument("--report", action="store_true", help="only print the report of stored results")
    args = parser.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    args.variants = [v for v in args.variants.split(",") if v]
    if "float32" not in args.variants:
        raise SystemExit("--variants must include float32 (every figure is against it)")
    if not args.report:
        for name in [s for s in args.sets.split(",") if s]:
            study_set(args, name)
    report(args)


if __name__ == "__main__":
    main()
