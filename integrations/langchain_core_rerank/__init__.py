"""LangChain document compressor for core-rerank: ``from langchain_core_rerank import CoReRerank``."""

try:
    import langchain_core  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'langchain_core_rerank needs LangChain: pip install "core-rerank[langchain]"  (installs langchain-core)'
    ) from error

from langchain_core_rerank.compressor import CoReRerank

__all__ = ["CoReRerank"]
