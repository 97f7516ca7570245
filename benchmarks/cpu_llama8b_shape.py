"""The Llama-3.1-8B shape on a CPU: load with the shipped Llama CoRe preset and score.

    python benchmarks/cpu_llama8b_shape.py [--dir DIR] [--queries 2] [--docs 20] [--words 80] [--out FILE]
    python benchmarks/cpu_llama8b_shape.py --smoke     # tiny shapes (the test suite runs this)

No 8B weights are reachable offline and speed does not depend on weight values, so the script
writes once a random-weight checkpoint with the exact Llama-3.1-8B-Instruct config as 10
safetensors shards (about 16 GB, in ``--dir``, outside the repo; reused when it is there),
in a separate process so that its memory does not count below. Then, in this process:

- loads it with ``CoReReranker.from_pretrained(dir, heads="llama-3.1-8b-instruct",
  dtype="bfloat16")`` (15 of 32 layers) and records which tensors were read from the shards
  (materialised safetensors slices): none of a dropped layer, and not the LM head;
- scores ``docs`` documents x ``words`` words (SciFact test queries and their BM25 top documents
  when ../shared/data is there, else random words) with the default packed forward, after one
  untimed call that pages the kept weights in from disk (``first_score_s``), and times one bare sdpa forward of the kept layers over the
  one-prompt ids and the sequential path once, for comparison;
- reports load and score seconds, peak RSS against the bytes of the kept weights (target: at
  most + 1.5 GiB) and the achieved fraction of this CPU's bf16 GEMM peak at the model's shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cpu_roofline import bare_flops, bare_forward, gemm_table, report, score_flops, timed
from cpu_score_vs_forward import DEFAULT_DATA, load_scifact

GIB = 1024**3
LLAMA_8B = dict(
    vocab_size=128256,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=131072,
    rope_theta=500000.0,
    rope_scaling={
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
    bos_token_id=128000,
    eos_token_id=128009,
)
SMOKE = dict(LLAMA_8B, vocab_size=49152, hidden_size=64, intermediate_size=128, head_dim=8)
WORDS = (
    "cell protein gene expression tumour patient cohort trial dose receptor signal pathway "
    "membrane enzyme binding mutation variant sequence model analysis result effect risk "
    "increase decrease level measure outcome response treatment therapy clinical study"
).split()


def tensor_shapes(shape: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a LlamaForCausalLM checkpoint with this config, in checkpoint order."""
    hidden, inter = shape["hidden_size"], shape["intermediate_size"]
    head_dim = shape.get("head_dim") or hidden // shape["num_attention_heads"]
    q, kv = shape["num_attention_heads"] * head_dim, shape["num_key_value_heads"] * head_dim
    out = {"model.embed_tokens.weight": (shape["vocab_size"], hidden)}
    for layer in range(shape["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        out |= {
            prefix + "input_layernorm.weight": (hidden,),
            prefix + "self_attn.q_proj.weight": (q, hidden),
            prefix + "self_attn.k_proj.weight": (kv, hidden),
            prefix + "self_attn.v_proj.weight": (kv, hidden),
            prefix + "self_attn.o_proj.weight": (hidden, q),
            prefix + "post_attention_layernorm.weight": (hidden,),
            prefix + "mlp.gate_proj.weight": (inter, hidden),
            prefix + "mlp.up_proj.weight": (inter, hidden),
            prefix + "mlp.down_proj.weight": (hidden, inter),
        }
    out |= {"model.norm.weight": (hidden,), "lm_head.weight": (shape["vocab_size"], hidden)}
    return out


def write_checkpoint(folder: Path, shape: dict, shards: int = 10) -> None:
    """Random bf16 weights (std 0.02, norms 1) as ``shards`` safetensors files plus an index."""
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    folder.mkdir(parents=True, exist_ok=True)
    shapes = tensor_shapes(shape)
    total = sum(torch.Size(s).numel() for s in shapes.values())
    generator = torch.Generator().manual_seed(0)
    weight_map, shard, size, index = {}, {}, 0, 1
    for name, dims in shapes.items():
        if len(dims) == 1:
            shard[name] = torch.ones(dims, dtype=torch.bfloat16)
        else:
            shard[name] = (torch.randn(dims, generator=generator) * 0.02).to(torch.bfloat16)
        size += shard[name].numel()
        if size >= total * index / shards or name == "lm_head.weight":
            file = f"model-{index:05d}-of-{shards:05d}.safetensors"
            save_file(shard, folder / file, metadata={"format": "pt"})
            weight_map |= {key: file for key in shard}
            shard, index = {}, min(index + 1, shards)
    index_json = {"metadata": {"total_size": total * 2}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index_json))
    LlamaConfig(**shape, architectures=["LlamaForCausalLM"], dtype="bfloat16").save_pretrained(folder)
    copy_tokenizer(folder)
    (folder / "WRITTEN").write_text(json.dumps(shape, sort_keys=True))


def copy_tokenizer(folder: Path) -> None:
    """Any fast tokenizer will do (prompt length is what matters): the default model's."""
    from transformers import AutoTokenizer

    from core_rerank import loading

    source = loading.resolve_source("smollm2-135m-instruct")
    AutoTokenizer.from_pretrained(source.path, **source.kwargs()).save_pretrained(folder)


def record_reads() -> set[str]:
    """Names of the safetensors tensors that loading materialises (read from the mapped files)."""
    import transformers.modeling_utils as modeling_utils

    read: set[str] = set()
    original = modeling_utils.safe_open

    class RecordingSlice:
        def __init__(self, inner, name):
            self._inner, self._name = inner, name

        def __getitem__(self, item):
            read.add(self._name)
            return self._inner[item]

        def __getattr__(self, attr):
            return getattr(self._inner, attr)

    class RecordingFile:
        def __init__(self, *args, **kwargs):
            self._inner = original(*args, **kwargs)

        def get_slice(self, name):
            return RecordingSlice(self._inner.get_slice(name), name)

        def get_tensor(self, name):
            read.add(name)
            return self._inner.get_tensor(name)

        def __getattr__(self, attr):
            return getattr(self._inner, attr)

    modeling_utils.safe_open = RecordingFile
    return read


def documents(count: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)) for _ in range(count)]


def benchmark_data(queries: int, docs: int, words: int, smoke: bool) -> list[tuple[str, list[str]]]:
    """SciFact test queries with their BM25 top documents when ../shared/data is there (as the
    CPU-speed issue measured), else random words."""
    if not smoke and DEFAULT_DATA.exists():
        return load_scifact(DEFAULT_DATA, queries, docs)
    return [
        (f"what is the effect of {WORDS[i]} on {WORDS[-i - 1]}?", documents(docs, words, i)) for i in range(queries)
    ]


def read_check(read: set[str], kept_layers: int) -> dict:
    """Which tensors loading read beyond the kept layers (should be none)."""
    dropped = sorted(
        name for name in read if name.startswith("model.layers.") and int(name.split(".")[2]) >= kept_layers
    )
    return {
        "tensors_read": len(read),
        "dropped_layer_tensors_read": dropped,
        "lm_head_read": "lm_head.weight" in read,
        "final_norm_read": "model.norm.weight" in read,
    }


def measure(folder: Path, queries: int, docs: int, words: int, smoke: bool) -> dict:
    import torch

    from core_rerank import CoReReranker

    read = record_reads()
    loaded, cpu = time.perf_counter(), time.process_time()
    reranker = CoReReranker.from_pretrained(
        str(folder),
        heads="llama-3.1-8b-instruct",
        dtype="float32" if smoke else "bfloat16",
        device="cpu",
        max_doc_words=words,
    )
    load_s, load_cpu_s = time.perf_counter() - loaded, time.process_time() - cpu
    model = reranker.model
    kept_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    data = benchmark_data(queries, docs, words, smoke)
    flops = score_flops(reranker, *data[0])
    bare = bare_flops(model.config, len(reranker.prepare(*data[0]).input_ids))
    first_score_s = timed(reranker.score, *data[0])[0]  # pages the kept weights in from disk
    times: dict[str, list[float]] = {"packed": [], "sequential": [], "bare": []}
    for index, (query, texts) in enumerate(data):
        reranker.forward = "packed"
        times["packed"].append(timed(reranker.score, query, texts)[0])
        if index == 0:
            times["bare"].append(timed(bare_forward, torch, reranker, reranker.prepare(query, texts).input_ids)[0])
            reranker.forward = "sequential"
            times["sequential"].append(timed(reranker.score, query, texts)[0])
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gemm = gemm_table(torch, model.config, int(flops["tokens"]), large=not smoke, seconds=0.02 if smoke else 0.5)[
        "bfloat16"
    ]
    peak = max(value for key, value in gemm.items() if key != "4096^3")
    packed_s = statistics.median(times["packed"])
    achieved = (flops["linear"] + flops["attention"]) / packed_s / 1e9
    return {
        "shape": "smoke" if smoke else "Llama-3.1-8B-Instruct (random weights, bfloat16)",
        "layers_built": model.config.num_hidden_layers,
        "lm_head_built": hasattr(model, "lm_head"),
        "parameters_kept": sum(p.numel() for p in model.parameters()),
        "kept_weights_gib": round(kept_bytes / GIB, 3),
        "peak_rss_gib": round(peak_rss / GIB, 3),
        "rss_over_kept_gib": round((peak_rss - kept_bytes) / GIB, 3),
        "load_s": round(load_s, 2),
        "load_cpu_s": round(load_cpu_s, 2),
        "first_score_s": round(first_score_s, 2),
        "reads": read_check(read, model.config.num_hidden_layers),
        "docs": docs,
        "words": words,
        "prompt_tokens": flops["tokens"],
        "score_s_packed": [round(t, 2) for t in times["packed"]],
        "score_s_sequential": [round(t, 2) for t in times["sequential"]],
        "bare_forward_s": [round(t, 2) for t in times["bare"]],
        "flops": flops,
        "bare_flops": bare,
        "gemm_gflops_per_s_bf16": gemm,
        "achieved_gflops_per_s": round(achieved, 1),
        "fraction_of_gemm_peak": round(achieved / peak, 3),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "core-rerank-llama8b-shape")
    parser.add_argument("--queries", type=int, default=2)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--words", type=int, default=80)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes (hidden 64), float32, for the tests")
    parser.add_argument("--write-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    shape = SMOKE if args.smoke else LLAMA_8B
    folder = args.dir if not args.smoke else args.dir.with_name(args.dir.name + "-smoke")
    if args.write_only:
        write_checkpoint(folder, shape)
        return
    marker = folder / "WRITTEN"
    if not marker.exists() or marker.read_text() != json.dumps(shape, sort_keys=True):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--write-only", "--dir", str(args.dir)] + ["--smoke"] * args.smoke, check=True
        )
        print(f"wrote {folder} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    figures = measure(folder, args.queries, args.docs, args.words, args.smoke)
    figures["checkpoint_gib"] = round(sum(f.stat().st_size for f in folder.glob("*.safetensors")) / GIB, 2)
    figures["cpu_count"] = os.cpu_count()
    report(figures, args.out)


if __name__ == "__main__":
    main()
