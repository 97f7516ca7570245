"""CPU roofline: this CPU's GEMM peak against what ``score()`` achieves, packed against sequential.

    python benchmarks/cpu_roofline.py [--queries 5] [--docs 20] [--words 80] [--threads N]
                                      [--dtype bfloat16] [--cold-start] [--out FILE]

In one run, on SciFact test queries with their BM25 top-``docs`` documents cut to ``words``
words (the default model, SmolLM2-135M-Instruct, with its preset's settings):

1. GEMM peak: ``torch.matmul`` GFLOP/s in bfloat16 and float32 at 4096^3 and at the model's own
   shapes (rows = the tokens one ``score()`` runs; q/o, k/v, gate/up, down).
2. ``score()`` with ``forward="packed"`` (the CPU default) and ``forward="sequential"`` (the
   path before it), and one bare sdpa forward of the same layers over the one-prompt ids (no
   capture, no windows: the baseline the CPU-speed issue measures against). Each timed in
   turn per query; medians of wall time and of process CPU time (CPU time is steadier on a
   shared machine). FLOPs are counted from the prompts: linear layers 2 x tokens x weights of
   every layer run, attention 4 x heads x head_dim per (query, visible key) pair.
3. Rankings: Kendall tau between this dtype's packed scores and float32 sequential scores.
4. With ``--cold-start``: a new process's import + load + first ``score()`` against a bare
   model's import + load + first forward (each in a fresh interpreter).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_score_vs_forward import DEFAULT_DATA, load_scifact  # noqa: E402


def gemm_gflops(torch, m: int, k: int, n: int, dtype, seconds: float = 0.5) -> float:
    """Achieved GFLOP/s of an [m, k] x [k, n] matmul in ``dtype`` (best of repeated runs)."""
    a = torch.randn(m, k, dtype=dtype)
    b = torch.randn(k, n, dtype=dtype)
    torch.matmul(a, b)
    best, spent = float("inf"), 0.0
    while spent < seconds:
        start = time.perf_counter()
        torch.matmul(a, b)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
    return 2 * m * k * n / best / 1e9


def model_shapes(config, rows: int) -> dict[str, tuple[int, int, int]]:
    """The decoder's linear layers as (rows, in, out)."""
    hidden, head_dim = (
        config.hidden_size,
        getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
    )
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    inter = config.intermediate_size
    return {
        "q/o": (rows, hidden, q),
        "k/v": (rows, hidden, kv),
        "gate/up": (rows, hidden, inter),
        "down": (rows, inter, hidden),
    }


def gemm_table(torch, config, rows: int, large: bool = True, seconds: float = 0.5) -> dict[str, dict[str, float]]:
    """GFLOP/s per dtype: 4096^3 (when ``large``) and each model shape at ``rows`` rows, each
    timed for about ``seconds``."""
    table = {}
    for name, dtype in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        rates = {"4096^3": gemm_gflops(torch, 4096, 4096, 4096, dtype, seconds=1.0)} if large else {}
        for shape, (m, k, n) in model_shapes(config, rows).items():
            rates[shape] = gemm_gflops(torch, m, k, n, dtype, seconds)
        table[name] = {key: round(value, 1) for key, value in rates.items()}
    return table


def layer_weights(config) -> int:
    """Weights of one decoder layer's linear maps: q, k, v, o, gate, up and down."""
    shapes = model_shapes(config, 1)
    (_, hidden, q), (_, _, kv), (_, _, inter) = shapes["q/o"], shapes["k/v"], shapes["gate/up"]
    return 2 * hidden * q + 2 * hidden * kv + 3 * hidden * inter


def score_flops(reranker, query: str, docs) -> dict[str, float]:
    """Linear and attention FLOPs one ``score()`` runs (every window and order, N/A suffixes)."""
    from core_rerank.windows import window_orders

    config = reranker.model.config
    layers = config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    plan = reranker._plan(query, docs)
    tokens, pairs = 0, 0
    calibrate = reranker.heads.scoring.calibration != "none"
    for window in plan.windows:
        for order in window_orders(window, reranker.document_order):
            prepared = reranker.builder.prepare(query, [plan.slots[i] for i in order])
            length, prefix = len(prepared), prepared.prefix_length
            tokens += length
            pairs += length * (length + 1) // 2
            if calibrate:
                null = len(prepared.null_input_ids) - prefix
                tokens += null
                pairs += null * prefix + null * (null + 1) // 2
    per_pair = 4 * config.num_attention_heads * head_dim
    return {
        "tokens": tokens,
        "linear": 2.0 * tokens * layer_weights(config) * layers,
        "attention": 1.0 * pairs * per_pair * layers,
    }


def bare_flops(config, length: int) -> dict[str, float]:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    layers = config.num_hidden_layers
    pairs = length * (length + 1) // 2
    return {
        "tokens": length,
        "linear": 2.0 * length * layer_weights(config) * layers,
        "attention": 1.0 * pairs * 4 * config.num_attention_heads * head_dim * layers,
    }


def timed(fn, *args) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, value


def bare_forward(torch, reranker, ids) -> None:
    """One plain sdpa forward of the kept layers (no capture wrapper at all)."""
    from core_rerank import capture

    model = reranker.model
    model.set_attn_implementation("sdpa")
    try:
        with torch.inference_mode():
            model.base_model(input_ids=torch.tensor([ids]), use_cache=False)
    finally:
        capture.install(model)


def measure_modes(torch, reranker, data) -> dict[str, dict[str, list[float]]]:
    """Per query, in turn: packed score(), sequential score(), one bare forward."""
    times: dict[str, dict[str, list[float]]] = {m: {"wall": [], "cpu": []} for m in ("packed", "sequential", "bare")}
    scores: dict[str, list] = {"packed": [], "sequential": []}
    first_query, first_docs = data[0]
    for mode in ("packed", "sequential"):  # warm-up
        reranker.forward = mode
        reranker.score(first_query, first_docs)
    bare_forward(torch, reranker, reranker.prepare(first_query, first_docs).input_ids)
    for query, docs in data:
        ids = reranker.prepare(query, docs).input_ids
        for mode in ("packed", "sequential", "bare"):
            if mode == "bare":
                wall, cpu, _ = timed(bare_forward, torch, reranker, ids)
            else:
                reranker.forward = mode
                wall, cpu, value = timed(reranker.score, query, docs)
                scores[mode].append(value)
            times[mode]["wall"].append(wall)
            times[mode]["cpu"].append(cpu)
    reranker.forward = "auto"
    times["_scores"] = scores  # type: ignore[assignment]
    return times


def summarize(times, flops_score, flops_bare, peak: float) -> dict[str, dict[str, float]]:
    out = {}
    for mode, flops in (("packed", flops_score), ("sequential", flops_score), ("bare", flops_bare)):
        wall, cpu = statistics.median(times[mode]["wall"]), statistics.median(times[mode]["cpu"])
        total = flops["linear"] + flops["attention"]
        out[mode] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "gflops_per_s": round(total / wall / 1e9, 1),
            "fraction_of_peak": round(total / wall / 1e9 / peak, 3),
        }
    for mode in ("packed", "sequential"):
        out[mode]["wall_over_bare"] = round(out[mode]["wall_s"] / out["bare"]["wall_s"], 3)
        out[mode]["cpu_over_bare"] = round(out[mode]["cpu_s"] / out["bare"]["cpu_s"], 3)
    return out


def float32_agreement(reranker_cls, data, scores, words: int) -> float:
    """Mean Kendall tau between ``scores`` and float32 sequential scores of the same queries."""
    from core_rerank.evaluation.metrics import kendall_tau

    reference = reranker_cls.from_pretrained(
        "smollm2-135m-instruct", device="cpu", dtype="float32", max_doc_words=words, forward="sequential"
    )
    taus = [kendall_tau(s, reference.score(q, d)) for (q, d), s in zip(data, scores)]
    return round(statistics.mean(taus), 3)


COLD_SCORE = """
import time; start = time.perf_counter()
from core_rerank import CoReReranker
rr = CoReReranker.from_pretrained("smollm2-135m-instruct", device="cpu", dtype={dtype!r})
rr.score("what causes tides?", ["The Moon's gravity pulls on the oceans.", "Bananas are rich in potassium."])
print(time.perf_counter() - start)
"""
COLD_BARE = """
import time; start = time.perf_counter()
import torch, transformers
from core_rerank import loading
source = loading.resolve_source("smollm2-135m-instruct")
model = transformers.AutoModelForCausalLM.from_pretrained(source.path, dtype=getattr(torch, {dtype!r}), **source.kwargs())
tok = transformers.AutoTokenizer.from_pretrained(source.path, **source.kwargs())
ids = tok("The Moon's gravity pulls on the oceans. Bananas are rich in potassium. what causes tides?", return_tensors="pt")
with torch.inference_mode():
    model.model(**ids)
print(time.perf_counter() - start)
"""


def cold_start(dtype: str, repeats: int = 2) -> dict[str, float]:
    """Seconds to import + load + first answer in fresh interpreters (best of ``repeats``)."""
    out = {}
    for name, code in (("score", COLD_SCORE), ("bare", COLD_BARE)):
        runs = []
        for _ in range(repeats):
            done = subprocess.run(
                [sys.executable, "-c", code.format(dtype=dtype)], capture_output=True, text=True, check=True
            )
            runs.append(float(done.stdout.strip().splitlines()[-1]))
        out[f"{name}_s"] = round(min(runs), 2)
    out["ratio"] = round(out["score_s"] / out["bare_s"], 2)
    return out


def report(figures: dict, out: Path | None) -> None:
    """Print the figures as JSON, and write them to ``out`` when given."""
    print(json.dumps(figures, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--words", type=int, default=80)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--cold-start", action="store_true", help="also time a fresh process (import + load + first score)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    import torch

    from core_rerank import CoReReranker

    if args.threads:
        torch.set_num_threads(args.threads)
    reranker = CoReReranker.from_pretrained(
        "smollm2-135m-instruct", device="cpu", dtype=args.dtype, max_doc_words=args.words
    )
    data = load_scifact(args.data, args.queries, args.docs)
    flops_score = score_flops(reranker, *data[0])
    flops_bare = bare_flops(reranker.model.config, len(reranker.prepare(*data[0]).input_ids))
    gemm = gemm_table(torch, reranker.model.config, int(flops_score["tokens"]))
    times = measure_modes(torch, reranker, data)
    scores = times.pop("_scores")
    peak = max(v for k, v in gemm[args.dtype].items() if k != "4096^3")
    figures = {
        "model": f"smollm2-135m-instruct ({args.dtype}, CPU)",
        "queries": len(data),
        "docs_per_query": args.docs,
        "words_per_doc": args.words,
        "window_tokens": reranker.window_tokens,
        "layers_run": reranker.model.config.num_hidden_layers,
        "flops_first_query": {"score": flops_score, "bare": flops_bare},
        "gemm_gflops_per_s": gemm,
        "gemm_peak_at_model_shapes": peak,
        "modes": summarize(times, flops_score, flops_bare, peak),
        "kendall_tau_vs_float32": float32_agreement(CoReReranker, data, scores["packed"], args.words),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    if args.cold_start:
        figures["cold_start"] = cold_start(args.dtype)
    report(figures, args.out)


if __name__ == "__main__":
    main()
