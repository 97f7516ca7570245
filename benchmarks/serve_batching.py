"""Would request batching help ``core-rerank serve`` on CPU? A prototype measurement.

When several requests wait, a server could run their prompts as one padded batch instead of one
after another. CoRe is listwise: each request is already one long prompt (query + all its
documents), so the forward pass is a few large matrix products, not many small ones. This
script times the decoder layers the reranker runs (the part batching would change), for 4
SciFact requests of 5 documents (80 words each), as 4 single forwards and as one right-padded
batch of 4, in wall-clock and process CPU time (the steadier figure on a shared machine), and
checks that the batch gives the same hidden states on the real tokens.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/serve_batching.py --threads 1 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_bench import MODEL, WORDS, scifact_requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    args = parser.parse_args()

    import torch

    from core_rerank import CoReReranker

    reranker = CoReReranker.from_pretrained(MODEL, device="cpu", dtype="float32", max_doc_words=WORDS)
    prompts = [reranker.prepare(q, d).input_ids for q, d in scifact_requests(args.batch, 5)]
    lengths = [len(p) for p in prompts]
    pad = reranker.tokenizer.pad_token_id or 0
    width = max(lengths)
    batch = torch.tensor([p + [pad] * (width - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (width - len(p)) for p in prompts])
    decoder = reranker.model.base_model

    def single():
        return [decoder(input_ids=torch.tensor([p]), use_cache=False).last_hidden_state for p in prompts]

    def batched():
        return decoder(input_ids=batch, attention_mask=mask, use_cache=False).last_hidden_state

    with torch.inference_mode():
        one, many = single(), batched()
        max_diff = max(float((one[i][0] - many[i, : lengths[i]]).abs().max()) for i in range(len(prompts)))
        results = {
            "figure": "batching_prototype",
            "requests": len(prompts),
            "documents_per_request": 5,
            "prompt_tokens": lengths,
            "padded_width": width,
            "max_abs_diff_hidden": max_diff,
        }
        requests = scifact_requests(args.batch, 5)
        for threads in args.threads:
            torch.set_num_threads(threads)
            wall: dict[str, list[float]] = {"single": [], "batched": [], "rerank": []}
            cpu: dict[str, list[float]] = {"single": [], "batched": [], "rerank": []}
            for _ in range(args.repeats):  # interleaved, so that load from elsewhere hits both alike
                for name, fn in (
                    ("single", single),
                    ("batched", batched),
                    ("rerank", lambda: [reranker.rerank(q, d) for q, d in requests]),
                ):
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    wall[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
            summary = {}
            for label, runs in (("wall", wall), ("cpu", cpu)):
                for stat, reduce in (("median", statistics.median), ("min", min)):
                    one, many = reduce(runs["single"]), reduce(runs["batched"])
                    summary[f"{label}_{stat}"] = {
                        "one_by_one_s": round(one, 3),
                        "padded_batch_s": round(many, 3),
                        "batch_speedup": round(one / many, 3),
                        "full_rerank_one_by_one_s": round(reduce(runs["rerank"]), 3),
                    }
            summary["runs_wall"] = wall
            summary["runs_cpu"] = cpu
            results[f"threads_{threads}"] = summary
    results["load_average"] = os.getloadavg()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
