"""Position calibration (core_rerank.position) on training data: nDCG@10 and order sensitivity.

    python scripts/position_study.py --sets dl19 scifact-train nq --queries 20   # run + report
    python scripts/position_study.py --report                                   # report only

For each query the BM25 top-``depth`` candidates (``max_doc_words`` words) are scored by the
preset's heads with its windows, from two input orders (BM25's and a seeded shuffle), ONCE per
order with the placeholder twins in the same pass. Every prompt's real document scores ``s``,
placeholder priors ``b`` and each document's tokens per distance bucket are stored, and the twins'
token scores per bucket (to fit a curve). Every setting is then evaluated offline:
``none``; ``placeholder@lambda`` (``s - lambda * b``); ``curve@lambda`` (the curve fitted on the
*other* sets' twins, so each set is checked on a curve it did not see). Order tau: Kendall tau
between the two input orders' scores of the same candidates. Results: results/position_study/.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import window_study  # noqa: E402

from core_rerank import CoReReranker  # noqa: E402
from core_rerank.evaluation.metrics import evaluate, kendall_tau, strict_scores  # noqa: E402
from core_rerank.head_config import resolve_heads  # noqa: E402
from core_rerank.position import CURVE_BUCKET, PositionPrior, distances  # noqa: E402
from core_rerank.prompt import truncate_words  # noqa: E402
from core_rerank.scoring import sum_heads  # noqa: E402
from core_rerank.utils import join_title  # noqa: E402

OUT = ROOT / "results" / "position_study"
LAMBDAS = (0.25, 0.5, 0.75, 1.0, 1.5)
BUCKETS = 4096 // CURVE_BUCKET


def buckets(prepared: Any, start: int, end: int) -> np.ndarray:
    return np.minimum(distances(prepared)[start:end] // CURVE_BUCKET, BUCKETS - 1)


class Recorder(PositionPrior):
    """A placeholder prior that records ``s``, ``b`` and the twins' token scores, and returns ``s``."""

    def __init__(self, scoring: Any, tokenizer: Any):
        super().__init__(scoring.model_copy(update={"position_calibration": "placeholder"}), tokenizer)
        self.prompts: list[dict[str, Any]] = []
        self.twin_total, self.twin_count = np.zeros(BUCKETS), np.zeros(BUCKETS)

    def adjust(self, scores, prepared, twin_rows, score_rows):
        tokens = sum_heads(twin_rows, None).numpy()
        counts = []
        for start, end in prepared.document_spans:
            b = buckets(prepared, start, end)
            np.add.at(self.twin_total, b, tokens[start:end])
            np.add.at(self.twin_count, b, 1)
            counts.append(np.bincount(b, minlength=BUCKETS).tolist())
        self.prompts.append({"s": scores[None], "b": score_rows(twin_rows)[None], "counts": counts})
        return scores


def run_order(reranker: CoReReranker, recorder: Recorder, query: str, texts: list[str]) -> list[dict[str, Any]]:
    """Each prompt's stored numbers and the input indices of its slots."""
    recorder.prompts = []
    slots_of: list[list[list[int]]] = []
    reranker._score(
        query, texts, {None: None}, lambda plan, slots, p, t: slots_of.append([plan.indices[s] for s in slots])
    )
    return [{**numbers, "indices": indices} for numbers, indices in zip(recorder.prompts, slots_of)]


def study_set(args: argparse.Namespace, name: str) -> None:
    out = OUT / f"{name}.json"
    record = json.loads(out.read_text()) if out.is_file() else {"queries": {}}
    queries, qrels, candidates, corpus = window_study.load_any_set(name, args.queries, args.depth)
    heads = resolve_heads(None, args.method, [args.model])
    reranker = CoReReranker.from_pretrained(args.model, heads=heads, device="cpu", max_doc_words=args.max_doc_words)
    recorder = Recorder(reranker.heads.scoring, reranker.tokenizer)
    reranker._prior = recorder
    record.update(settings=vars(args), qrels={**record.get("qrels", {}), **qrels})
    for number, qid in enumerate(queries, 1):
        doc_ids = candidates[qid]
        if not doc_ids or qid in record["queries"]:
            continue
        texts = [
            truncate_words(join_title(corpus[d].get("title"), corpus[d]["text"]), args.max_doc_words) for d in doc_ids
        ]
        shuffled = list(range(len(texts)))
        random.Random(f"{qid}-shuffle").shuffle(shuffled)
        entry = {"doc_ids": doc_ids, "shuffle": shuffled}
        entry["bm25"] = run_order(reranker, recorder, queries[qid], texts)
        entry["shuffled"] = run_order(reranker, recorder, queries[qid], [texts[i] for i in shuffled])
        record["queries"][qid] = entry
        print(f"{name} {number}/{len(queries)} {qid}", flush=True)
    old = record.get("twins", {"total": [0.0] * BUCKETS, "count": [0.0] * BUCKETS})
    record["twins"] = {
        "total": (np.asarray(old["total"]) + recorder.twin_total).tolist(),
        "count": (np.asarray(old["count"]) + recorder.twin_count).tolist(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))


# ---------------------------------------------------------------------- offline evaluation
def curve_from(records: list[dict]) -> np.ndarray:
    total = sum(np.asarray(r["twins"]["total"]) for r in records)
    count = sum(np.asarray(r["twins"]["count"]) for r in records)
    filled = np.flatnonzero(count)
    means = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    for k in range(BUCKETS):
        if count[k] == 0:
            means[k] = means[filled[np.argmin(np.abs(filled - k))]]
    return means


def order_scores(prompts: list[dict], n: int, setting: tuple[str, float], curve: np.ndarray) -> list[float]:
    kind, weight = setting
    scores = [float("-inf")] * n
    for prompt in prompts:
        for slot, indices in enumerate(prompt["indices"]):
            s = prompt["s"][slot]
            if kind == "placeholder":
                s -= weight * prompt["b"][slot]
            elif kind == "curve":
                s -= weight * float(np.dot(prompt["counts"][slot], curve))
            for index in indices:
                scores[index] = s
    return scores


def evaluate_set(record: dict, setting: tuple[str, float], curve: np.ndarray) -> tuple[float, float]:
    ndcgs, taus = [], []
    for qid, entry in record["queries"].items():
        n = len(entry["doc_ids"])
        first = order_scores(entry["bm25"], n, setting, curve)
        permuted = order_scores(entry["shuffled"], n, setting, curve)
        second = [0.0] * n
        for position, index in enumerate(entry["shuffle"]):
            second[index] = permuted[position]
        run = {qid: strict_scores(entry["doc_ids"], first)}
        ndcgs.append(evaluate({qid: record["qrels"][qid]}, run, recall_ks=()).mean["ndcg@10"])
        taus.append(kendall_tau(first, second))
    return 100 * statistics.fmean(ndcgs), statistics.fmean(taus)


def report(names: list[str]) -> dict[str, Any]:
    records = {n: json.loads((OUT / f"{n}.json").read_text()) for n in names if (OUT / f"{n}.json").is_file()}
    settings = [("none", 0.0)] + [(k, w) for k in ("placeholder", "curve") for w in LAMBDAS]
    table: dict[str, Any] = {}
    for kind, weight in settings:
        label = kind if kind == "none" else f"{kind}@{weight}"
        row = {}
        for name, record in records.items():
            others = [r for n, r in records.items() if n != name] or [record]
            ndcg, tau = evaluate_set(record, (kind, weight), curve_from(others))
            row[name] = {"ndcg@10": round(ndcg, 2), "order_tau": round(tau, 3), "queries": len(record["queries"])}
        row["mean"] = {m: round(statistics.fmean(v[m] for v in row.values()), 3) for m in ("ndcg@10", "order_tau")}
        table[label] = row
    bm25 = {}
    for name, record in records.items():
        run = {q: strict_scores(e["doc_ids"], [0.0] * len(e["doc_ids"])) for q, e in record["queries"].items()}
        bm25[name] = round(100 * evaluate({q: record["qrels"][q] for q in run}, run, recall_ks=()).mean["ndcg@10"], 2)
    print(f"{'setting':18s} " + " ".join(f"{n:>22s}" for n in [*records, "mean"]))
    for label, row in table.items():
        cells = [f"{v['ndcg@10']:6.2f} tau {v['order_tau']:+.3f}" for v in row.values()]
        print(f"{label:18s} " + " ".join(f"{c:>22s}" for c in cells))
    print("BM25 nDCG@10:", bm25)
    summary = {"table": table, "bm25": bm25, "curve_all_sets": curve_from(list(records.values())).tolist()}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["dl19", "scifact-train", "nq"])
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--max-doc-words", type=int, default=80)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--method", default="core")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    if not args.report:
        import torch

        torch.set_num_threads(args.threads)
        for name in args.sets:
            study_set(args, name)
    report(args.sets)


if __name__ == "__main__":
    main()
