"""Regenerate the shipped head presets for the paper's models from the official score files.

    python scripts/make_presets.py [--reference ../shared/reference/heads] [--out core_rerank/heads]

Each official file maps "layer-head" to the mean contrastive score (SCoRe) of that head; the
presets keep the top 8 (the paper's k). The "-prune0.5" variants come from the files made with
50% of the final layers pruned: their heads sit in the first half, which is all they build.
QRHead's published Llama-3.1-8B-Instruct QR heads (method.md section 4) become QR presets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core_rerank.head_config import Architecture, HeadConfig, Provenance, ScoringSettings

ROOT = Path(__file__).resolve().parent.parent
PAPER = "CoRe, arXiv 2510.02219 (official release)"

# name, official file stem, temperature, model ids, architecture, scoring overrides
MODELS = [
    (
        "llama-3.1-8b-instruct",
        "llama_core_temp0.1",
        0.1,
        ["meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"],
        Architecture(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8),
        {},
    ),
    (
        "mistral-7b-instruct",
        "mistral_core_temp0.001",
        0.001,
        # IBM's vLLM-Hook uses the same top-8 for v0.3.
        ["mistralai/Mistral-7B-Instruct-v0.2", "mistralai/Mistral-7B-Instruct-v0.3"],
        Architecture(num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8),
        {},
    ),
    (
        "granite-3.2-8b-instruct",
        "granite_core_temp0.001",
        0.001,
        ["ibm-granite/granite-3.2-8b-instruct"],
        Architecture(num_hidden_layers=40, num_attention_heads=32, num_key_value_heads=8),
        # The official code found these heads with 1/sqrt(head_dim) logits instead of Granite's
        # own attention multiplier (1/128); scoring with the same scale reproduces the paper.
        {"logit_scale": 128**-0.5},
    ),
    (
        "phi-4",
        "phi_core_temp0.1",
        0.1,
        ["microsoft/phi-4"],
        Architecture(num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=10),
        {},
    ),
]

QRHEAD_LLAMA = {
    "llama-3.1-8b-instruct-qr": (
        "14-22,13-16,14-28,14-31,16-19,14-1,16-26,17-24,14-0,13-0,16-25,13-12,13-1,13-10,17-27,20-14",
        "Natural Questions (QRHead's BEIR setting)",
    ),
    "llama-3.1-8b-instruct-qr-lme": (
        "13-18,13-21,8-11,14-13,17-29,13-1,13-13,14-29,14-31,13-8,16-1,17-21,13-3,10-31,13-4,14-22",
        "LongMemEval (QRHead's default)",
    ),
}


def build(reference: Path) -> dict[str, HeadConfig]:
    presets: dict[str, HeadConfig] = {}
    for name, stem, temperature, model_ids, arch, scoring in MODELS:
        for prune in ("0.0", "0.5"):
            path = reference / f"{stem}_prune{prune}.json"
            kept = None if prune == "0.0" else round(arch.num_hidden_layers * (1 - float(prune)))
            preset = name if prune == "0.0" else f"{name}-prune{prune}"
            presets[preset] = HeadConfig.from_scores(
                path,
                num_heads=8,
                num_layers_to_keep=kept,
                name=preset,
                model_ids=model_ids,
                architecture=arch,
                method="core",
                scoring=ScoringSettings(**scoring),
                provenance=Provenance(
                    method="core",
                    temperature=temperature,
                    k=8,
                    data="Natural Questions (paper setting)",
                    source=f"{PAPER}: {path.name}",
                ),
            )
    llama = MODELS[0]
    for preset, (heads, data) in QRHEAD_LLAMA.items():
        presets[preset] = HeadConfig.from_qrhead_string(
            heads,
            name=preset,
            model_ids=llama[3],
            architecture=llama[4],
            provenance=Provenance(method="qr", k=16, data=data, source="QRHead (EMNLP 2025), published attn_head_set"),
        )
    return presets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference" / "heads")
    parser.add_argument("--out", type=Path, default=ROOT / "core_rerank" / "heads")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, config in build(args.reference).items():
        config.to_json(args.out / f"{name}.json")
        heads = " ".join(f"({l},{h})" for l, h in config.heads)
        print(f"{name:<36} keep {config.num_layers_to_keep or config.deepest_layer + 1:>2}  {heads}")


if __name__ == "__main__":
    main()
