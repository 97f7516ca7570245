"""LlamaIndex node postprocessor for core-rerank: ``from llama_index.postprocessor.core_rerank import CoReRerank``."""

try:
    import llama_index.core  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "llama_index.postprocessor.core_rerank needs LlamaIndex: "
        'pip install "core-rerank[llamaindex]"  (installs llama-index-core)'
    ) from error

from llama_index.postprocessor.core_rerank.base import CoReRerank

__all__ = ["CoReRerank"]
