"""Where should each document sit in the prompt? A study of ``document_order`` on training data.

    python scripts/order_study.py --model smollm2-135m-instruct --sets scifact-train,nq --queries 30
    python scripts/order_study.py --model smollm2-135m-instruct --sets dl19,scifact-test --queries 50 \\
        --sizes none,300,600
    python scripts/order_study.py --model smollm2-135m-instruct --report      # report only

Sets: the training sets of ``scripts/window_study.py`` (SciFact *train* and NQ-open, loaded by
its ``load_set``) to choose on, and TREC DL19 / SciFact test (each folder's BM25 run, judged
queries in qrels order) reported only. Every query's BM25 top-``depth`` candidates, cut to
``max_doc_words`` words, are dealt into round-robin windows of each size (``none``: one prompt;
``core_rerank.windows.plan_windows``, what ``window_tokens`` runs), and every window is scored
in each prompt order (``core_rerank.windows.window_orders``): ``first_stage`` (strongest first,
farthest from the query), ``reversed`` (strongest nearest the query) and ``ends`` (strongest
nearest the query, second first, weakest in the middle). ``both`` is not run separately: it is
the mean of the ``first_stage`` and ``reversed`` raw scores (what the reranker computes for
``document_order="both"``, tests/test_order.py), and its time is the sum of the two.

One forward pass per prompt serves the model's CoRe and QR presets (the union of their heads,
``score_head_subsets``); a layout's time is the sum of its prompts' times. Order sensitivity:
per query, Kendall's tau-b between the scores from the first-stage order and from its reverse
(1: the order does not matter). The default dtype is used (``dtype="auto"``: bfloat16 on CPUs
with native bfloat16, else float32; the JSON records which). Results go to
``results/order_study/<model>/<set>.json`` with every prompt's scores, so the report is
re-printed without recomputing and an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
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

from core_rerank import CoReReranker, HeadConfig  # noqa: E402
from core_rerank.evaluation.metrics import evaluate, kendall_tau, strict_scores  # noqa: E402
from core_rerank.head_config import resolve_heads  # noqa: E402
from core_rerank.prompt import truncate_words  # noqa: E402
from core_rerank.utils import join_title  # noqa: E402
from core_rerank.windows import plan_windows, window_orders  # noqa: E402

TRAINING = window_study.SETS  # ("scifact-train", "nq")
TEST_DIRS = window_study.TEST_DIRS
SETS = (*TRAINING, *TEST_DIRS)
SCORED_ORDERS = ("first_stage", "reversed", "ends")
POLICIES = ("first_stage", "reversed", "both", "ends")
METHOD_NAMES = {"core": "CoRe-R", "qr": "QR-R"}


# ---------------------------------------------------------------------- data and model
def union_reranker(model: str, max_doc_words: int) -> tuple[CoReReranker, dict[str, Any], dict[str, Any]]:
    """One reranker with the CoRe and QR presets' heads, scoring one prompt as given (no windows,
    first-stage order); the head subsets; and each preset's own ``window_tokens``."""
    core, qr = resolve_heads(None, "core", [model]), resolve_heads(None, "qr", [model])
    plain = {"window_tokens": None, "document_order": "first_stage"}
    if core.scoring.model_copy(update=plain) != qr.scoring.model_copy(update=plain):
        raise SystemExit("the CoRe and QR presets score differently; one pass cannot serve both")
    heads = sorted({tuple(h) for h in [*core.heads, *qr.heads]})
    union = HeadConfig(method="core", name="core+qr", heads=heads, scoring=core.scoring.model_copy(update=plain))
    reranker = CoReReranker.from_pretrained(
        model, heads=union, device="cpu", max_doc_words=max_doc_words, window_tokens=None
    )
    subsets = {"core": [tuple(h) for h in core.heads], "qr": [tuple(h) for h in qr.heads]}
    presets = {
        method: {"window_tokens": c.scoring.window_tokens, "document_order": c.scoring.document_order}
        for method, c in (("core", core), ("qr", qr))
    }
    return reranker, subsets, presets


def parse_size(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def size_label(size: int | None) -> str:
    return "none" if size is None else str(size)


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
    reranker, subsets, presets = union_reranker(args.model, args.max_doc_words)
    record.setdefault("presets", presets)  # the presets as they were when the study began
    record.setdefault("runs", []).append(
        {"command": " ".join(sys.argv), "dtype": reranker.settings()["dtype"], "threads": args.threads}
    )
    last_save = time.monotonic()
    for number, qid in enumerate(queries, start=1):
        doc_ids = candidates[qid]
        if not doc_ids:
            continue
        entry = record["queries"].setdefault(qid, {"doc_ids": doc_ids, "prompts": {}, "layouts": {}})
        texts = [
            truncate_words(join_title(corpus[d].get("title"), corpus[d]["text"]), args.max_doc_words) for d in doc_ids
        ]
        counts = reranker.builder.count_tokens(texts)
        new = 0
        for size in args.sizes:
            windows = [list(range(len(texts)))] if size is None else plan_windows(counts, size)
            for order in args.orders:
                prompts = [window_orders(window, order)[0] for window in windows]
                entry["layouts"][f"{size_label(size)}/{order}"] = prompts
                for prompt in prompts:
                    key = ",".join(map(str, prompt))
                    if key in entry["prompts"]:
                        continue
                    start = time.perf_counter()
                    scores = reranker.score_head_subsets(queries[qid], [texts[i] for i in prompt], subsets)
                    entry["prompts"][key] = {"time_s": round(time.perf_counter() - start, 4), **scores}
                    new += 1
        print(f"{name} {number}/{len(queries)} {qid}: {new} new prompts", flush=True)
        if new and time.monotonic() - last_save > 30:
            out.write_text(json.dumps(record))
            last_save = time.monotonic()
    out.write_text(json.dumps(record))
    return out


# ---------------------------------------------------------------------- report
def layout_scores(entry: dict, layout: str, method: str) -> tuple[list[float], float] | None:
    """One score per candidate (input order) and the seconds, for a stored layout."""
    if layout not in entry["layouts"]:
        return None
    scores = [-math.inf] * len(entry["doc_ids"])
    seconds = 0.0
    for prompt in entry["layouts"][layout]:
        cached = entry["prompts"][",".join(map(str, prompt))]
        seconds += cached["time_s"]
        for index, value in zip(prompt, cached[method]):
            scores[index] = value
    return scores, seconds


def policy_scores(entry: dict, size: str, policy: str, method: str) -> tuple[list[float], float] | None:
    if policy != "both":
        return layout_scores(entry, f"{size}/{policy}", method)
    first, second = (
        layout_scores(entry, f"{size}/first_stage", method),
        layout_scores(entry, f"{size}/reversed", method),
    )
    if first is None or second is None:
        return None
    return [(a + b) / 2 for a, b in zip(first[0], second[0])], first[1] + second[1]


def ndcg(record: dict, qid: str, scores: Sequence[float]) -> float:
    run = {qid: strict_scores(record["queries"][qid]["doc_ids"], scores)}
    return evaluate({qid: record["qrels"][qid]}, run, recall_ks=()).mean["ndcg@10"]


def summarise(record: dict, method: str) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    """``{(size, policy): {"ndcg": {qid: v}, "time": {qid: s}, "tau": {qid: tau}}}`` (and BM25)."""
    rows: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for qid, entry in record["queries"].items():
        bm25 = rows.setdefault(("first stage (BM25)", "-"), {"ndcg": {}, "time": {}, "tau": {}})
        bm25["ndcg"][qid] = ndcg(record, qid, [0.0] * len(entry["doc_ids"]))
        sizes = list(dict.fromkeys(layout.split("/")[0] for layout in entry["layouts"]))
        for size in sizes:
            first, second = (
                layout_scores(entry, f"{size}/first_stage", method),
                layout_scores(entry, f"{size}/reversed", method),
            )
            tau = kendall_tau(first[0], second[0]) if first and second else math.nan
            for policy in POLICIES:
                found = policy_scores(entry, size, policy, method)
                if found is None:
                    continue
                row = rows.setdefault((size, policy), {"ndcg": {}, "time": {}, "tau": {}})
                row["ndcg"][qid], row["time"][qid], row["tau"][qid] = ndcg(record, qid, found[0]), found[1], tau
    return rows


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def paired(tables: dict, key: tuple[str, str], base_key: tuple[str, str]) -> str:
    """Mean per-query difference of ``key`` against ``base_key`` (x 100) with its standard
    error, each set weighted as in the mean of the sets; "-" when either row is missing."""
    differences = []
    for table in tables.values():
        row, base = table.get(key), table.get(base_key)
        if row is None or base is None:
            return "-"
        weight = sum(len(t[key]["ndcg"]) for t in tables.values()) / (len(tables) * len(row["ndcg"]))
        differences += [weight * (row["ndcg"][q] - base["ndcg"][q]) for q in row["ndcg"]]
    if len(differences) < 2:
        return "-"
    error = statistics.stdev(differences) / math.sqrt(len(differences))
    return f"{100 * statistics.fmean(differences):+.1f} ± {100 * error:.1f}"


def report(args: argparse.Namespace) -> dict[str, Any]:
    """Print one table per method (every stored set); return the best (window, order) per method."""
    folder = Path(args.out_dir) / args.model
    names = [n for n in args.sets.split(",") if n] if args.sets else list(SETS)
    records = {n: json.loads((folder / f"{n}.json").read_text()) for n in names if (folder / f"{n}.json").is_file()}
    if not records:
        raise SystemExit(f"no study results in {folder}")
    dtypes = sorted({run["dtype"] for r in records.values() for run in r.get("runs", [])})
    choices = {}
    for method in ("core", "qr"):
        tables = {n: summarise(r, method) for n, r in records.items()}
        for name, table in tables.items():  # a layout scored for only some queries (an earlier --orders) is left out
            for key in [k for k, row in table.items() if len(row["ndcg"]) < len(records[name]["queries"])]:
                del table[key]
        preset = (size_label(next(iter(records.values()))["presets"][method]["window_tokens"]), "first_stage")
        print(
            f"\n{args.model}, {METHOD_NAMES[method]}, dtype {', '.join(dtypes)}: nDCG@10 x 100 (time per query); "
            f"the preset when studied: window {preset[0]}, first_stage order\n"
        )
        sets = " | ".join(f"{n} ({len(r['queries'])} q)" for n, r in records.items())
        print(
            f"| window | order | {sets} | mean of the sets | vs first_stage, same window (± s.e.) "
            f"| vs the preset (± s.e.) | tau, first_stage vs reversed |"
        )
        print("|---|---|" + "---|" * (len(records) + 4))
        for key in list(dict.fromkeys(k for t in tables.values() for k in t)):
            cells, means, taus = [], [], []
            for table in tables.values():
                row = table.get(key)
                if row is None:
                    cells.append("-")
                    continue
                means.append(statistics.fmean(row["ndcg"].values()))
                time_cell = f" ({statistics.fmean(row['time'].values()):.2f} s)" if key[1] != "-" else ""
                cells.append(f"{100 * means[-1]:.1f}{time_cell}")
                taus.append(_mean(list(row["tau"].values())))
            ordered = key[1] in POLICIES
            same_window = paired(tables, key, (key[0], "first_stage")) if ordered and key[1] != "first_stage" else "-"
            vs_preset = paired(tables, key, preset) if key != preset else "-"
            tau_cell = f"{_mean(taus):.2f}" if ordered and not math.isnan(_mean(taus)) else "-"
            average = statistics.fmean(means) if len(means) == len(tables) else math.nan
            print(
                f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {100 * average:.1f} | {same_window} "
                f"| {vs_preset} | {tau_cell} |"
            )
            if ordered and not math.isnan(average) and average > choices.get(method, (-1.0, ""))[0]:
                choices[method] = (average, f"{key[0]}/{key[1]}")
        if method in choices:
            print(f"\nbest window/order of the mean of the sets: {choices[method][1]} ({100 * choices[method][0]:.1f})")
    return choices


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sets", default=",".join(TRAINING), help=f"comma-separated: {', '.join(SETS)}")
    parser.add_argument("--queries", type=int, default=30, help="first N (judged) queries of each set")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-doc-words", type=int, default=80)
    parser.add_argument(
        "--sizes", default="none,300,600,1000", help="window sizes in document tokens; none = one prompt"
    )
    parser.add_argument("--orders", default=",".join(SCORED_ORDERS), help="prompt orders scored ('both' is derived)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per set")
    parser.add_argument("--parallel", type=int, default=2, help="sets scored at the same time (one process each)")
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "order_study"))
    parser.add_argument("--report", action="store_true", help="only print the report of stored results")
    args = parser.parse_args(argv)
    args.sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    args.orders = [o.strip() for o in args.orders.split(",") if o.strip()]
    if not args.report:
        names = [s for s in args.sets.split(",") if s]
        with multiprocessing.get_context("spawn").Pool(max(1, min(args.parallel, len(names)))) as pool:
            pool.starmap(study_set, [(args, name) for name in names])
    report(args)


if __name__ == "__main__":
    main()
