"""Pruned loading reads only what it keeps: no tensor of a dropped layer, no LM head.

Tiny random checkpoints with each shipped 7-8B preset's architecture (its layer and head counts,
narrow heads) are written as sharded safetensors and loaded with that preset; the loader's
reads are recorded where the shards are memory-mapped. The 8B-shape benchmark's ``--smoke``
run (the same script that measured the real shape, docs/results.md) is checked the same way.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GraniteConfig, LlamaConfig, MistralConfig, Phi3Config

from core_rerank import CoReReranker, HeadConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from cpu_llama8b_shape import copy_tokenizer, read_check, record_reads  # noqa: E402

NARROW = dict(intermediate_size=32, vocab_size=49152, max_position_embeddings=4096)
ARCHITECTURES = {  # each preset's layer and head counts, 4 dimensions a head
    "llama-3.1-8b-instruct": lambda: LlamaConfig(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=128, **NARROW
    ),
    "mistral-7b-instruct": lambda: MistralConfig(
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, hidden_size=128, **NARROW
    ),
    "granite-3.2-8b-instruct": lambda: GraniteConfig(
        num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8, hidden_size=128, **NARROW
    ),
    "phi-4": lambda: Phi3Config(
        num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=10, hidden_size=160, pad_token_id=0, **NARROW
    ),
}


@pytest.mark.parametrize("preset", sorted(ARCHITECTURES))
def test_each_preset_loads_only_its_layers(tmp_path, smollm2_dir, preset):
    torch.manual_seed(0)
    config = ARCHITECTURES[preset]()
    config.tie_word_embeddings = False
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path, max_shard_size="2MB")
    assert len(list(tmp_path.glob("*.safetensors"))) > 1  # sharded, as real checkpoints are
    copy_tokenizer(tmp_path)
    heads = HeadConfig.load(preset)
    read = record_reads()
    reranker = CoReReranker.from_pretrained(str(tmp_path), heads=preset, device="cpu", dtype="float32")
    kept = reranker.model.config.num_hidden_layers
    assert kept == heads.num_layers_needed(config.num_hidden_layers) < config.num_hidden_layers
    assert not hasattr(reranker.model, "lm_head")
    check = read_check(read, kept)
    assert check["dropped_layer_tensors_read"] == [] and not check["lm_head_read"]
    assert any(f"layers.{kept - 1}." in name for name in read)  # the deepest kept layer was read
    scores = reranker.score("what causes tides?", ["The moon pulls the sea.", "Bananas are yellow."])
    assert len(scores) == 2 and all(abs(s) < float("inf") for s in scores)


def test_the_default_model_loads_only_its_layers():
    read = record_reads()
    reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", device="cpu", dtype="float32")
    kept = reranker.model.config.num_hidden_layers
    assert kept == reranker.heads.deepest_layer + 1 < 30
    assert read_check(read, kept)["dropped_layer_tensors_read"] == []
    assert len(read) > 0  # the recorder saw the loader's reads


def test_8b_shape_benchmark_smoke(tmp_path):
    out = tmp_path / "smoke.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "cpu_llama8b_shape.py"),
        "--smoke",
        "--dir",
        str(tmp_path / "ckpt"),
    ]
    command += ["--docs", "4", "--words", "12", "--queries", "1", "--out", str(out)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    figures = json.loads(out.read_text())
    assert figures["layers_built"] == 15 and not figures["lm_head_built"]  # the Llama preset keeps 15 of 32
    assert figures["reads"]["dropped_layer_tensors_read"] == [] and not figures["reads"]["lm_head_read"]
    assert figures["peak_rss_gib"] > figures["kept_weights_gib"] > 0
    assert figures["score_s_packed"] and figures["fraction_of_gemm_peak"] > 0
