"""A PyTerrier experiment on SciFact: BM25 reranked by CoRe-R, QR-R and ICR, tested against BM25.

No Java and no index: the BM25 candidates are the data folder's run file replayed with
``pt.Transformer.from_df``, the passages come from its corpus through ``pt.text.get_text``,
and every reranker is ``pyterrier_core_rerank.CoReReRanker`` over ONE loaded model (the three
methods only differ in their heads). ``pt.Experiment`` prints nDCG@10, MRR@10 and R@10 with a
paired t-test of each system against BM25 (``baseline=0``). Needs ``pip install "core-rerank[pyterrier]"``.

    python examples/pyterrier_experiment.py                          # first 20 judged test queries
    python examples/pyterrier_experiment.py --queries 30 --depth 20 --max-doc-words 80
    python examples/pyterrier_experiment.py --queries all            # all 300 (CPU: well over an hour)

The queries are the first N judged ones in qrels order, as ``core-rerank eval --max-queries N``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyterrier as pt

from core_rerank import CoReReranker
from core_rerank.datasets import EvalData, load_eval_data
from core_rerank.utils import DEFAULT_MODEL
from pyterrier_core_rerank import CoReReRanker

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
NAMES = {"core": "CoRe-R", "qr": "QR-R", "icr": "ICR"}


class CorpusText:
    """A ``pt.text.get_text`` source (it has ``text_loader``): adds ``title`` and ``text``
    columns from the data folder's corpus, looked up by ``docno``."""

    def __init__(self, corpus: dict[str, dict[str, str]]):
        self.corpus = corpus

    def text_loader(self, fields: Any = "*", *, verbose: bool = False, **kwargs: Any) -> pt.Transformer:
        def add_text(frame: pd.DataFrame) -> pd.DataFrame:
            records = [self.corpus.get(docno, {"title": "", "text": ""}) for docno in frame["docno"]]
            return frame.assign(title=[r["title"] for r in records], text=[r["text"] for r in records])

        return pt.apply.generic(add_text)


def frames(data: EvalData, qids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """PyTerrier's topics, qrels and the BM25 run (0-based ranks, the run file's scores)."""
    topics = pd.DataFrame({"qid": qids, "query": [data.queries[q] for q in qids]})
    qrels = pd.DataFrame(
        [(q, d, label) for q in qids for d, label in data.qrels[q].items()], columns=["qid", "docno", "label"]
    )
    run = pd.DataFrame(
        [
            (q, d, float(data.run.scores.get(q, {}).get(d, -rank)), rank)
            for q in qids
            for rank, d in enumerate(data.candidates(q, None))
        ],
        columns=["qid", "docno", "score", "rank"],
    )
    return topics, qrels, run


def load_model(model: str, device: str | None, dtype: str) -> Any:
    """The one model every method shares, built in full (ICR reads every layer)."""
    return CoReReranker.from_pretrained(model, method="icr", num_layers_to_keep="all", device=device, dtype=dtype)


def rerankers(base: Any, methods: list[str], max_doc_words: int | None) -> dict[str, CoReReRanker]:
    """A ``CoReReRanker`` per method around ``base``'s weights, each with the model's shipped heads."""
    built = {}
    for method in methods:
        core = CoReReranker(
            model=base.model,
            tokenizer=base.tokenizer,
            method=method,
            max_doc_words=max_doc_words,
            model_id=base.model_id,
        )
        built[NAMES[method]] = CoReReRanker.from_reranker(core, title_field="title")
    return built


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SCIFACT), help="BEIR folder with run.bm25.top100.trec (default: SciFact)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--queries", default="20", help="first N judged queries, or 'all' (default 20)")
    parser.add_argument("--depth", type=int, default=20, help="BM25 candidates reranked per query")
    parser.add_argument("--max-doc-words", type=int, default=80, help="each abstract is cut to this many words")
    parser.add_argument("--methods", default="core,qr,icr", help="comma-separated: core, qr, icr")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv=None) -> pd.DataFrame:
    args = parse_arguments(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in NAMES]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; use core, qr, icr")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    data = load_eval_data(args.data, split=args.split)
    qids = list(data.queries) if args.queries == "all" else list(data.queries)[: int(args.queries)]
    topics, qrels, run = frames(data, qids)

    started = time.perf_counter()
    base = load_model(args.model, args.device, args.dtype)
    print(
        f"Loaded {base.model_id} once for {', '.join(NAMES[m] for m in methods)} in {time.perf_counter() - started:.1f} s"
    )
    bm25 = pt.Transformer.from_df(run) % args.depth
    text = pt.text.get_text(CorpusText(data.corpus), ["title", "text"])
    systems = {
        "BM25": bm25,
        **{name: bm25 >> text >> r for name, r in rerankers(base, methods, args.max_doc_words).items()},
    }

    started = time.perf_counter()
    table = pt.Experiment(
        list(systems.values()),
        topics,
        qrels,
        [pt.measures.nDCG @ 10, pt.measures.RR @ 10, pt.measures.R @ 10],
        names=list(systems),
        baseline=0,
        test="t",
        round=4,
        verbose=False,
        plan="tree",  # BM25 and the passage lookup run once, shared by the three rerankers
    )
    seconds = time.perf_counter() - started
    print(
        f"\n{len(qids)} {Path(args.data).name} {args.split} queries, BM25 top {args.depth}, {args.max_doc_words}-word documents"
    )
    print(markdown(table))
    print(
        f"\n{seconds:.0f} s for the experiment ({seconds / max(len(qids), 1) / max(len(methods), 1):.1f} s per query and method)"
    )
    return table


def markdown(table: pd.DataFrame) -> str:
    """The experiment table as Markdown (no extra dependency)."""
    measures = [c for c in table.columns if c != "name" and not c.endswith(("+", "-", "p-value"))]
    order = ["name", *sorted(measures, key=lambda m: ["nDCG@10", "RR@10"].index(m) if m in ("nDCG@10", "RR@10") else 2)]
    order += [c for c in table.columns if c not in order]
    table = table[order]
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.itertuples(index=False):
        cells = ["" if pd.isna(v) else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
