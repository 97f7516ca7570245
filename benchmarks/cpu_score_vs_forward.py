"""CPU benchmark: ``score()`` against one bare sdpa forward of the kept layers over the same ids.

    python benchmarks/cpu_score_vs_forward.py [--queries 10] [--docs 20] [--words 80] [--out FILE]

SmolLM2-135M-Instruct (fp32), SciFact test queries with their BM25 top-``docs`` documents cut
to ``words`` words. For each query: the wall time of ``reranker.score(query, docs)`` (prompt
building, tokenization, the prefix pass, the query and N/A passes with KV reuse, scoring) and
of a bare forward over the same prompt ids through every kept layer with plain sdpa (the floor).
Prints medians, the ratio (target <= 1.2), documents per second and peak RSS.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"


def load_scifact(folder: Path, queries: int, depth: int):
    """The first ``queries`` test queries that have qrels, with their BM25 top-``depth`` texts."""
    judged = {line.split("\t")[0] for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    texts = {}
    with gzip.open(folder / "corpus.jsonl.gz", "rt") as handle:
        for line in handle:
            doc = json.loads(line)
            texts[doc["_id"]] = f"{doc['title']} {doc['text']}".strip()
    run: dict[str, list[str]] = {}
    for line in (folder / "run.bm25.top100.trec").read_text().splitlines():
        qid, _, doc_id, *_ = line.split()
        run.setdefault(qid, []).append(doc_id)
    out = []
    for line in (folder / "queries.jsonl").read_text().splitlines():
        query = json.loads(line)
        if query["_id"] in judged and query["_id"] in run:
            out.append((query["text"], [texts[d] for d in run[query["_id"]][:depth]]))
        if len(out) == queries:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--words", type=int, default=80)
    parser.add_argument("--method", help="core, qr or icr (default: the method of --heads, else core)")
    parser.add_argument("--heads")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    import torch

    from core_rerank import CoReReranker

    if args.threads:
        torch.set_num_threads(args.threads)
    reranker = CoReReranker.from_pretrained(
        "smollm2-135m-instruct",
        method=args.method,
        heads=args.heads,
        device="cpu",
        dtype="float32",
        max_doc_words=args.words,
    )
    model = reranker.model
    data = load_scifact(args.data, args.queries, args.docs)

    def bare_forward(ids):
        model.set_attn_implementation("sdpa")  # the plain kernel, no capture wrapper at all
        try:
            with torch.inference_mode():
                model.base_model(input_ids=torch.tensor([ids]), use_cache=False)
        finally:
            from core_rerank import capture

            capture.install(model)

    reranker.score(*data[0])  # warm-up
    bare_forward(reranker.prepare(*data[0]).input_ids)
    score_times, bare_times, lengths = [], [], []
    for query, docs in data:
        ids = reranker.prepare(query, docs).input_ids
        lengths.append(len(ids))
        start = time.perf_counter()
        reranker.score(query, docs)
        score_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_forward(ids)
        bare_times.append(time.perf_counter() - start)

    score_median, bare_median = statistics.median(score_times), statistics.median(bare_times)
    figures = {
        "model": "smollm2-135m-instruct (fp32, CPU)",
        "method": reranker.method,
        "heads": [list(h) for h in reranker.heads.heads],
        "layers_run": model.config.num_hidden_layers,
        "queries": len(data),
        "docs_per_query": args.docs,
        "words_per_doc": args.words,
        "prompt_tokens_median": statistics.median(lengths),
        "score_s_median": round(score_median, 4),
        "bare_forward_s_median": round(bare_median, 4),
        "ratio_score_over_bare": round(score_median / bare_median, 3),
        "docs_per_s": round(args.docs / score_median, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    for key, value in figures.items():
        print(f"{key:>22}: {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
