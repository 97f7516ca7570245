"""How should a candidate list be split into prompt windows? A study on training data.

    python scripts/window_study.py --model smollm2-135m-instruct            # run (resumable) + report
    python scripts/window_study.py --model smollm2-135m-instruct --report   # report only

Two sets that are not test sets: SciFact *train* (BM25 top-``depth`` over the SciFact corpus)
and NQ-open (the shared head-detection file: each question's gold passage among the pool of
all the file's passages, BM25 top-``depth`` over that pool). For every query the candidates are
scored, with the model's shipped CoRe and QR heads (one forward pass serves both), in:

- ``one-prompt``: every candidate in one prompt (the paper's setting);
- ``round-robin@W``: windows of at most ``W`` document tokens, dealt in first-stage order to the
  emptiest window (``core_rerank.windows.plan_windows``, what ``window_tokens=W`` runs);
- ``equal-count@W``: as many windows, candidate ``i`` to window ``i mod n`` (same document count);
- ``contiguous@W``: as many windows, first-stage ranks in consecutive blocks;
- ``sliding@W``: consecutive blocks of the same size overlapping by half (a candidate in two
  windows gets the mean of its two scores);
- ``shuffled-…``: the same on the candidates in a random order (per query, fixed seed), what a
  user with an unordered candidate list gets.

Each windowed layout is merged two ways: ``raw`` scores, or ``standardised`` per window (minus
the window's mean, over its standard deviation). A window is scored on its own with
``CoReReranker.score_head_subsets`` (that is what the windowed reranker does, see
tests/test_windows.py), and each distinct window is scored once per query; a layout's time is
the sum of its windows' times. Results go to ``results/window_study/<model>/<set>.json`` with
every window's scores, so the report is re-printed without recomputing.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core_rerank import CoReReranker, HeadConfig  # noqa: E402
from core_rerank.datasets import bm25_run, load_eval_data  # noqa: E402
from core_rerank.evaluation.metrics import evaluate, strict_scores  # noqa: E402
from core_rerank.head_config import resolve_heads  # noqa: E402
from core_rerank.prompt import truncate_words  # noqa: E402
from core_rerank.utils import join_title, open_text  # noqa: E402
from core_rerank.windows import MARKER_TOKENS, plan_windows  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
SETS = ("scifact-train", "nq")
TEST_DIRS = {"dl19": "trec-dl19", "scifact-test": "scifact"}  # test sets: reported only
MERGES = ("raw", "standardised")


# ---------------------------------------------------------------------- data
def load_any_set(name: str, limit: int, depth: int) -> tuple[dict, dict, dict, dict]:
    """``(queries, qrels, candidates, corpus)`` of the first ``limit`` (judged) queries of a
    training set (:func:`load_set`) or a test set (``TEST_DIRS``; reported, never used to choose)."""
    if name in SETS:
        return load_set(name, limit, depth)
    if name not in TEST_DIRS:
        raise SystemExit(f"unknown set {name!r}; use {', '.join((*SETS, *TEST_DIRS))}")
    data = load_eval_data(SHARED / TEST_DIRS[name])
    qids = list(data.queries)[:limit]
    return (
        {q: data.queries[q] for q in qids},
        {q: data.qrels[q] for q in qids},
        {q: data.candidates(q, depth) for q in qids},
        data.corpus,
    )


def load_set(name: str, limit: int, depth: int) -> tuple[dict, dict, dict, dict]:
    """``(queries, qrels, candidates, corpus)`` of the first ``limit`` queries of a set."""
    if name == "scifact-train":
        data = load_eval_data(SHARED / "scifact", split="train")
        qids = list(data.queries)[:limit]
        return (
            {q: data.queries[q] for q in qids},
            {q: data.qrels[q] for q in qids},
            {q: data.candidates(q, depth) for q in qids},
            data.corpus,
        )
    if name == "nq":
        corpus, queries, qrels = {}, {}, {}
        with open_text(SHARED / "head-detection" / "nq_open_oracle_bm25neg.jsonl.gz") as handle:
            for line in handle:
                record = json.loads(line)
                for paragraph in record["paragraphs"]:
                    corpus[paragraph["idx"]] = {"title": paragraph["title"], "text": paragraph["paragraph_text"]}
                    if paragraph["is_positive"] and len(queries) < limit:
                        qrels.setdefault(record["idx"], {})[paragraph["idx"]] = 1
                if record["idx"] in qrels:
                    queries[record["idx"]] = record["question"]
        run = bm25_run(corpus, queries, k=depth)
        return queries, qrels, {q: run.top(q, depth) for q in queries}, corpus
    raise ValueError(f"unknown set {name!r}; use {', '.join(SETS)}")


# ---------------------------------------------------------------------- layouts
def contiguous(costs: Sequence[int], count: int) -> list[list[int]]:
    """``count`` blocks of consecutive indices with about equal token cost."""
    total, blocks, load = sum(costs), [[]], 0
    for index, cost in enumerate(costs):
        if load >= total * len(blocks) / count and len(blocks) < count:
            blocks.append([])
        blocks[-1].append(index)
        load += cost
    return [b for b in blocks if b]


def sliding(size: int, n: int) -> list[list[int]]:
    """Blocks of ``size`` consecutive indices, a new one every ``size // 2`` (half overlap)."""
    if size >= n:
        return [list(range(n))]
    stride = math.ceil(size / 2)
    starts = list(range(0, n - size, stride)) + [n - size]
    return [list(range(s, s + size)) for s in sorted(set(starts))]


def layouts(counts: Sequence[int], sizes: Sequence[int], variants: Sequence[int]) -> dict[str, list[list[int]]]:
    """Window layouts by name (indices into the candidate list)."""
    n = len(counts)
    costs = [c + MARKER_TOKENS for c in counts]
    result = {"one-prompt": [list(range(n))]}
    for size in sizes:
        result[f"round-robin@{size}"] = plan_windows(counts, size)
    for size in variants:
        windows = len(result[f"round-robin@{size}"])
        result[f"equal-count@{size}"] = [list(range(w, n, windows)) for w in range(windows)]
        result[f"contiguous@{size}"] = contiguous(costs, windows)
        result[f"sliding@{size}"] = sliding(math.ceil(n / windows), n)
    return result


def merge(windows: list[list[int]], scores: list[list[float]], n: int, how: str) -> list[float]:
    """One score per candidate from its windows' scores (mean over the windows holding it)."""
    sums, seen = [0.0] * n, [0] * n
    for window, values in zip(windows, scores):
        if how == "standardised" and len(values) > 1:
            mean, spread = statistics.fmean(values), statistics.pstdev(values) or 1.0
            values = [(v - mean) / spread for v in values]
        elif how == "standardised":
            values = [0.0]
        for index, value in zip(window, values):
            sums[index] += value
            seen[index] += 1
    return [s / k if k else -math.inf for s, k in zip(sums, seen)]


# ---------------------------------------------------------------------- scoring
def union_reranker(model: str, max_doc_words: int) -> tuple[CoReReranker, dict[str, list[tuple[int, int]]]]:
    core = resolve_heads(None, "core", [model])
    qr = resolve_heads(None, "qr", [model])
    if core.scoring != qr.scoring:
        raise SystemExit("the CoRe and QR presets have different scoring settings; one pass cannot serve both")
    heads = sorted({tuple(h) for h in [*core.heads, *qr.heads]})
    union = HeadConfig(method="core", name="core+qr", heads=heads, scoring=core.scoring)
    # float32, as the shipped window sizes were chosen (dtype="auto" is bfloat16 on some CPUs now)
    reranker = CoReReranker.from_pretrained(model, heads=union, max_doc_words=max_doc_words, dtype="float32")
    return reranker, {"core": [tuple(h) for h in core.heads], "qr": [tuple(h) for h in qr.heads]}


def study_set(args: argparse.Namespace, name: str) -> Path:
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out_dir) / args.model / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    stored = json.loads(out.read_text()) if out.is_file() else {}
    settings = {k: getattr(args, k) for k in ("model", "depth", "max_doc_words", "sizes", "variants", "seed")}
    if stored and stored.get("settings") != settings:
        raise SystemExit(f"{out} holds another setting ({stored.get('settings')}); use another --out-dir")
    queries, qrels, candidates, corpus = load_set(name, args.queries, args.depth)
    record = stored or {"settings": settings, "queries": {}}
    record["qrels"] = qrels
    reranker, subsets = union_reranker(args.model, args.max_doc_words)
    last_save = time.monotonic()
    for number, qid in enumerate(queries, start=1):
        if qid in record["queries"] or not candidates[qid]:
            continue
        doc_ids = candidates[qid]
        texts = [
            truncate_words(join_title(corpus[d].get("title"), corpus[d]["text"]), args.max_doc_words) for d in doc_ids
        ]
        order = list(range(len(texts)))
        random.Random(f"{args.seed}:{qid}").shuffle(order)
        entry: dict[str, Any] = {"doc_ids": doc_ids, "shuffle": order, "windows": {}, "layouts": {}}
        counts = reranker.builder.count_tokens(texts)
        plans = layouts(counts, args.sizes, args.variants)
        if args.variants:  # the same on a shuffled list (what an unordered candidate list gets)
            shuffled_counts = [counts[i] for i in order]
            for label, windows in layouts(shuffled_counts, args.variants, []).items():
                plans[f"shuffled-{label}"] = [[order[i] for i in window] for window in windows]
        for label, windows in plans.items():
            entry["layouts"][label] = windows
            for window in windows:
                key = ",".join(map(str, window))
                if key in entry["windows"]:
                    continue
                start = time.perf_counter()
                scores = reranker.score_head_subsets(queries[qid], [texts[i] for i in window], subsets)
                entry["windows"][key] = {"time_s": round(time.perf_counter() - start, 4), **scores}
        record["queries"][qid] = entry
        print(f"{name} {number}/{len(queries)} {qid}: {len(entry['windows'])} windows", flush=True)
        if time.monotonic() - last_save > 30:
            out.write_text(json.dumps(record))
            last_save = time.monotonic()
    out.write_text(json.dumps(record))
    return out


# ---------------------------------------------------------------------- report
def summarise(record: dict, method: str) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(layout, merge): {"ndcg": {qid: value}, "time": {qid: seconds}}}``."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for qid, entry in record["queries"].items():
        n = len(entry["doc_ids"])
        first_stage = evaluate(
            {qid: record["qrels"][qid]}, {qid: strict_scores(entry["doc_ids"], [0.0] * n)}, recall_ks=()
        )
        row = rows.setdefault(("first stage (BM25)", "-"), {"ndcg": {}, "time": {}})
        row["ndcg"][qid], row["time"][qid] = first_stage.mean["ndcg@10"], 0.0
        for label, windows in entry["layouts"].items():
            cached = [entry["windows"][",".join(map(str, w))] for w in windows]
            for how in MERGES if len(windows) > 1 else ("raw",):
                scores = merge(windows, [c[method] for c in cached], n, how)
                run = {qid: strict_scores(entry["doc_ids"], scores)}
                value = evaluate({qid: record["qrels"][qid]}, run, recall_ks=()).mean["ndcg@10"]
                row = rows.setdefault((label, how), {"ndcg": {}, "time": {}})
                row["ndcg"][qid] = value
                row["time"][qid] = sum(c["time_s"] for c in cached)
    return rows


def report(args: argparse.Namespace) -> None:
    folder = Path(args.out_dir) / args.model
    records = {
        name: json.loads((folder / f"{name}.json").read_text()) for name in SETS if (folder / f"{name}.json").is_file()
    }
    if not records:
        raise SystemExit(f"no study results in {folder}")
    for method in ("core", "qr"):
        tables = {name: summarise(record, method) for name, record in records.items()}
        keys = list(next(iter(tables.values())))
        print(f"\n{args.model}, {'CoRe-R' if method == 'core' else 'QR-R'}: nDCG@10 x 100 (time per query)\n")
        sets = " | ".join(f"{n} ({len(r['queries'])} q)" for n, r in records.items())
        print(f"| layout | merge | {sets} | mean of the sets | vs one prompt (± s.e.) |")
        print("|---|---|" + "---|" * (len(records) + 2))
        best: tuple[float, str] = (-1.0, "")
        for key in keys:
            cells, means, differences = [], [], []
            for table in tables.values():
                row, base = table[key], table[("one-prompt", "raw")]
                mean = statistics.fmean(row["ndcg"].values())
                means.append(mean)
                time_cell = f" ({statistics.fmean(row['time'].values()):.2f} s)" if key[1] != "-" else ""
                cells.append(f"{100 * mean:.1f}{time_cell}")
                # per-query differences, weighted so that each set counts as in the mean of the sets
                weight = sum(len(t[key]["ndcg"]) for t in tables.values()) / (len(tables) * len(row["ndcg"]))
                differences += [weight * (row["ndcg"][q] - base["ndcg"][q]) for q in row["ndcg"]]
            average = statistics.fmean(means)
            error = statistics.stdev(differences) / math.sqrt(len(differences)) if len(differences) > 1 else 0.0
            change = f"{100 * statistics.fmean(differences):+.1f} ± {100 * error:.1f}"
            print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + f" | {100 * average:.1f} | {change} |")
            if key[0].startswith("round-robin") and key[1] == "raw" and average > best[0]:
                best = (average, key[0])
            if key[0] == "one-prompt" and average >= best[0]:
                best = (average, key[0])
        print(
            f"\nchoice for the {method} preset (round-robin, raw scores, or one prompt): {best[1]} ({100 * best[0]:.1f})"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: scifact-train, nq")
    parser.add_argument("--queries", type=int, default=50, help="first N queries of each set")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-doc-words", type=int, default=80)
    parser.add_argument("--sizes", default="300,600,1000,1600", help="round-robin window sizes (document tokens)")
    parser.add_argument("--variants", default="600", help="sizes at which the other layouts are scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per set (sets run in parallel)")
    parser.add_argument("--out-dir", default=str(ROOT / "results" / "window_study"))
    parser.add_argument("--report", action="store_true", help="only print the report of stored results")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    args.variants = [int(s) for s in args.variants.split(",") if s]
    if not args.report:
        names = [s for s in args.sets.split(",") if s]
        with multiprocessing.get_context("spawn").Pool(len(names)) as pool:
            pool.starmap(study_set, [(args, name) for name in names])
    report(args)


if __name__ == "__main__":
    main()
