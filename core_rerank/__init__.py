"""core-rerank: attention-head (CoRe) reranking with open LLMs.

Importing this package is cheap: torch, transformers and the frameworks load only when a
model is built. ``CoReReranker`` and friends are resolved lazily on first access.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# The documented public API (README, docs/): name -> module that defines it.
_EXPORTS = {
    "CoReReranker": "reranker",
    "RerankResult": "rerank_result",
    "HeadConfig": "head_config",
    "HeadConfigError": "head_config",
    "PreparedPrompt": "prompt",
    "detect_heads": "detection",
    "HeadScoreTable": "detection",
    "read_jsonl_examples": "detection",
    "beir_examples": "detection",
    "Example": "detection",
    "ExampleSet": "detection",
    "DetectionDataError": "detection",
    "InputError": "errors",
    "MissingExtra": "errors",
    "RerankerSettings": "settings",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'core_rerank' has no attribute {name!r}")
