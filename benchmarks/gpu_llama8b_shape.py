"""GPU benchmark on a random-weight model with the exact Llama-3.1-8B-Instruct shape.

    python benchmarks/gpu_llama8b_shape.py --tokenizer DIR [--lengths 4096,8192,16384,32768] [--out FILE]
    python benchmarks/gpu_llama8b_shape.py --smoke          # tiny shapes on CPU: checks the script runs

No 8B weights are reachable offline, and speed does not depend on weight values, so the model is
built from the Llama-3.1-8B config (4096 hidden, 14336 MLP, 32 heads, 8 KV heads, bf16) with
random weights and only the layers the shipped Llama CoRe preset needs. At each prompt length:
- fast path: ``CoReReranker.score`` (prefix pass to the deepest head, query and N/A passes on the
  prefix's KV cache, selected-head rows only);
- floor: one bare sdpa prefill of the kept layers over the same ids (``use_cache=False``);
- eager: ``output_attentions=True`` over the kept layers (what attention-reranking research code
  does), until it runs out of memory.
Reports median seconds, the fast/floor ratio (target <= 1.15) and peak GPU memory against the
kept-layer weights (target: weights + 2 GiB). Any fast tokenizer works (prompt length is what
matters); the SmolLM2 one from ``core-rerank models fetch`` is the default.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

GIB = 1024**3
WORDS = (
    "cell protein gene expression tumour patient cohort trial dose receptor signal pathway "
    "membrane enzyme binding mutation variant sequence model analysis result effect risk "
    "increase decrease level measure outcome response treatment therapy clinical study"
).split()


def build_model(kept: int, smoke: bool, device, vocab_size: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if smoke:
        shape = dict(hidden_size=64, intermediate_size=128, num_attention_heads=32, num_key_value_heads=8, head_dim=8)
    else:
        shape = dict(hidden_size=4096, intermediate_size=14336, num_attention_heads=32, num_key_value_heads=8)
    config = LlamaConfig(
        num_hidden_layers=kept,
        vocab_size=vocab_size,
        max_position_embeddings=131072,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        **shape,
    )
    dtype = torch.float32 if smoke else torch.bfloat16
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = LlamaForCausalLM(config).eval()
    torch.set_default_dtype(torch.float32)
    model.config.core_rerank_original_num_hidden_layers = 32
    return model


def documents_for(tokenizer, target_tokens: int, doc_words: int = 250):
    rng = random.Random(0)
    docs, total = [], 0
    while total < target_tokens - 200:
        doc = " ".join(rng.choice(WORDS) for _ in range(doc_words))
        docs.append(doc)
        total += len(tokenizer(doc, add_special_tokens=False)["input_ids"]) + 8
    return docs


def timed(fn, repeats: int, sync):
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", help="fast tokenizer directory (default: the fetched SmolLM2)")
    parser.add_argument("--lengths", default="4096,8192,16384,32768")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager-max", type=int, default=16384, help="skip eager above this length")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU, to check the script")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from core_rerank import CoReReranker, HeadConfig, capture
    from core_rerank.offline_models import fetch

    device = torch.device("cpu" if args.smoke else "cuda")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or fetch("smollm2-135m-instruct"))
    heads = HeadConfig.load("llama-3.1-8b-instruct")
    kept = heads.num_layers_needed(32)
    model = build_model(kept, args.smoke, device, len(tokenizer))
    weights_gib = sum(p.numel() * p.element_size() for p in model.parameters()) / GIB
    reranker = CoReReranker(model, tokenizer, heads=heads, max_length=max(map(int, args.lengths.split(","))) + 512)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def peak(fn):
        if not cuda:
            fn()
            return None
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        fn()
        return round(torch.cuda.max_memory_allocated() / GIB, 2)

    def plain(implementation, **kwargs):
        model.set_attn_implementation(implementation)
        try:
            with torch.inference_mode():
                model.base_model(input_ids=ids, use_cache=False, **kwargs)
        finally:
            capture.install(model)

    rows = []
    query = "which pathway does the receptor signal through in tumour cells?"
    for length in map(int, args.lengths.split(",")):
        docs = documents_for(tokenizer, length)
        ids = torch.tensor([reranker.prepare(query, docs).input_ids], device=device)
        row = {"target_tokens": length, "prompt_tokens": ids.shape[1], "documents": len(docs)}
        row["fast_s"] = round(timed(lambda docs=docs: reranker.score(query, docs), args.repeats, sync), 4)
        row["fast_peak_gib"] = peak(lambda docs=docs: reranker.score(query, docs))
        row["floor_s"] = round(timed(lambda: plain("sdpa"), args.repeats, sync), 4)
        row["floor_peak_gib"] = peak(lambda: plain("sdpa"))
        row["ratio_fast_over_floor"] = round(row["fast_s"] / row["floor_s"], 3)
        if length <= args.eager_max:
            try:
                row["eager_s"] = round(timed(lambda: plain("eager", output_attentions=True), 1, sync), 4)
                row["eager_peak_gib"] = peak(lambda: plain("eager", output_attentions=True))
            except torch.OutOfMemoryError:
                row["eager_s"] = "out of memory"
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {
        "model": "random-weight Llama-3.1-8B shape" + (" (smoke: tiny dims)" if args.smoke else ", bf16"),
        "heads": "llama-3.1-8b-instruct preset",
        "layers_kept": kept,
        "kept_weights_gib": round(weights_gib, 2),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
