"""Which first-stage order should the prompts be built from? A study on training data only.

    python scripts/first_stage_study.py --sets dl19 scifact-train nq --queries 30   # run + report
    python scripts/first_stage_study.py --report                                   # report only

For each query the BM25 top-``depth`` candidates (``max_doc_words`` words) are scored by the
preset's heads with its windows, from two input orders (BM25's and a seeded shuffle), under each
``scoring.order_by`` (``core_rerank.first_stage``): ``input`` (today) and ``lexical`` (the
candidates sorted by an in-list BM25 first; scored shuffled for the first ``CHECKED`` queries of
a set only, as the prompts are the very same).
Reported per setting: nDCG@10 of the BM25-order input, and the order tau (Kendall tau between the
two input orders' scores of the same candidates). Offline, from the same scores: fusion of the
reranker's z-scored score with the z-scored in-list BM25 (``+lexical@w``) and with the first
stage's own BM25 scores (``+first-stage@w``, what ``first_stage_scores`` with
``scoring.first_stage_weight=w`` computes; given scores order the prompts, so the input order
cannot move them: tau 1). Results: results/first_stage_study/.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import window_study  # noqa: E402

from core_rerank import CoReReranker  # noqa: E402
from core_rerank.datasets import bm25_run, load_eval_data  # noqa: E402
from core_rerank.evaluation.metrics import evaluate, kendall_tau, strict_scores  # noqa: E402
from core_rerank.first_stage import fuse, lexical_scores  # noqa: E402
from core_rerank.head_config import resolve_heads  # noqa: E402
from core_rerank.prompt import truncate_words  # noqa: E402
from core_rerank.utils import join_title  # noqa: E402

OUT = ROOT / "results" / "first_stage_study"
RUNS = {"input": ("input", "auto"), "lexical": ("lexical", "auto")}
CHECKED = 5  # queries per set whose lexical run is also scored shuffled (the same prompts: tau 1)
FUSION_WEIGHTS = (0.25, 0.5, 1.0, 2.0)


def rerankers(args: argparse.Namespace) -> dict[str, CoReReranker]:
    heads = resolve_heads(None, args.method, [args.model])
    base = CoReReranker.from_pretrained(args.model, heads=heads, device="cpu", max_doc_words=args.max_doc_words)
    out = {}
    for name, (order_by, document_order) in RUNS.items():
        scoring = heads.scoring.model_copy(update={"order_by": order_by})
        out[name] = CoReReranker(
            base.model,
            base.tokenizer,
            heads=heads.model_copy(update={"scoring": scoring}),
            max_doc_words=args.max_doc_words,
            model_id=base.model_id,
            document_order=document_order,
        )
    return out


def study_set(args: argparse.Namespace, name: str, models: dict[str, CoReReranker]) -> None:
    out = OUT / f"{name}.json"
    record = json.loads(out.read_text()) if out.is_file() else {"queries": {}}
    queries, qrels, candidates, corpus = window_study.load_any_set(name, args.queries, args.depth)
    record.update(settings=vars(args), qrels={**record.get("qrels", {}), **qrels})
    add_first_stage_signals(name, record, queries, corpus, args.max_doc_words)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record))
    for number, qid in enumerate(queries, 1):
        doc_ids = candidates[qid]
        if not doc_ids or qid in record["queries"]:
            continue
        texts = [
            truncate_words(join_title(corpus[d].get("title"), corpus[d]["text"]), args.max_doc_words) for d in doc_ids
        ]
        shuffle = list(range(len(texts)))
        random.Random(f"{qid}-shuffle").shuffle(shuffle)
        entry: dict[str, Any] = {"doc_ids": doc_ids, "shuffle": shuffle}
        for run, reranker in models.items():
            entry[run] = reranker.score(queries[qid], texts)
            if run == "input" or len(record["queries"]) < CHECKED:
                permuted = reranker.score(queries[qid], [texts[i] for i in shuffle])
                entry[f"{run}/shuffled"] = [permuted[shuffle.index(i)] for i in range(len(texts))]
        record["queries"][qid] = entry
        add_first_stage_signals(name, record, queries, corpus, args.max_doc_words)
        print(f"{name} {number}/{len(queries)} {qid}", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record))


def bm25_scores(name: str, queries: dict[str, str], corpus: dict) -> dict[str, dict[str, float]]:
    """The first stage's own BM25 scores (the shared run file's, or BM25 built as the set's run)."""
    if name == "nq":
        return bm25_run(corpus, queries, k=100).scores
    folder = {"dl19": "trec-dl19", "scifact-train": "scifact"}[name]
    split = "train" if name == "scifact-train" else "test"
    return load_eval_data(window_study.SHARED / folder, split=split).run.scores


def add_first_stage_signals(name: str, record: dict, queries: dict, corpus: dict, max_doc_words: int) -> None:
    """Each stored query's in-list BM25 (``core_rerank.first_stage.lexical_scores``) and first-stage
    BM25 scores, where missing (no model needed)."""
    missing = {q: e for q, e in record["queries"].items() if "first_stage" not in e and q in queries}
    if not missing:
        return
    scores = bm25_scores(name, {q: queries[q] for q in missing}, corpus)
    for qid, entry in missing.items():
        texts = [join_title(corpus[d].get("title"), corpus[d]["text"]) for d in entry["doc_ids"]]
        entry["in_list_bm25"] = lexical_scores(queries[qid], [truncate_words(t, max_doc_words) for t in texts])
        entry["first_stage"] = [scores[qid][d] for d in entry["doc_ids"]]


# ---------------------------------------------------------------------- offline evaluation
def setting_scores(entry: dict, setting: str, shuffled: bool) -> list[float]:
    """A setting's scores (input indices) of one query: ``run``, ``run+lexical@w`` or ``run+rrf``."""
    run, _, fusion = setting.partition("+")
    own = entry[f"{run}/shuffled" if shuffled else run]
    if not fusion:
        return own
    signal, _, weight = fusion.partition("@")
    other = entry["in_list_bm25" if signal == "lexical" else "first_stage"]
    return fuse({None: own}, other, float(weight))[None]  # what first_stage_weight computes


def evaluate_set(record: dict, setting: str) -> tuple[float, float]:
    ndcgs, taus = [], []
    for qid, entry in record["queries"].items():
        first = setting_scores(entry, setting, False)
        run = {qid: strict_scores(entry["doc_ids"], first)}
        ndcgs.append(evaluate({qid: record["qrels"][qid]}, run, recall_ks=()).mean["ndcg@10"])
        if "first-stage" in setting:  # given scores order the prompts: the very same prompts, tau 1
            taus.append(1.0)
        elif f"{setting.partition('+')[0]}/shuffled" in entry:
            taus.append(kendall_tau(first, setting_scores(entry, setting, True)))
    return 100 * statistics.fmean(ndcgs), statistics.fmean(taus) if taus else float("nan")


def report(names: list[str]) -> dict[str, Any]:
    records = {n: json.loads((OUT / f"{n}.json").read_text()) for n in names if (OUT / f"{n}.json").is_file()}
    settings = [
        *RUNS,
        *(f"lexical+lexical@{w}" for w in FUSION_WEIGHTS),
        *(f"input+first-stage@{w}" for w in FUSION_WEIGHTS),
    ]
    table: dict[str, Any] = {}
    for setting in settings:
        row = {}
        for name, record in records.items():
            ndcg, tau = evaluate_set(record, setting)
            row[name] = {"ndcg@10": round(ndcg, 2), "order_tau": round(tau, 3), "queries": len(record["queries"])}
        row["mean"] = {m: round(statistics.fmean(v[m] for v in row.values()), 3) for m in ("ndcg@10", "order_tau")}
        table[setting] = row
    baselines: dict[str, dict[str, float]] = {"bm25": {}, "in-list lexical": {}}
    for name, record in records.items():
        for label, key in (("bm25", None), ("in-list lexical", "in_list_bm25")):
            run = {
                q: strict_scores(e["doc_ids"], e[key] if key else [0.0] * len(e["doc_ids"]))
                for q, e in record["queries"].items()
            }
            qrels = {q: record["qrels"][q] for q in run}
            baselines[label][name] = round(100 * evaluate(qrels, run, recall_ks=()).mean["ndcg@10"], 2)
    print(f"{'setting':24s} " + " ".join(f"{n:>22s}" for n in [*records, "mean"]))
    for label, row in table.items():
        cells = [f"{v['ndcg@10']:6.2f} tau {v['order_tau']:+.3f}" for v in row.values()]
        print(f"{label:24s} " + " ".join(f"{c:>22s}" for c in cells))
    print("baselines nDCG@10:", baselines)
    summary = {"table": table, "baselines": baselines}
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["dl19", "scifact-train", "nq"])
    parser.add_argument("--queries", type=int, default=30)
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
        models = rerankers(args)
        for name in args.sets:
            study_set(args, name, models)
    report(args.sets)


if __name__ == "__main__":
    main()
