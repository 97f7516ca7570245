"""LanceDB reranker for core-rerank: ``from lancedb_core_rerank import CoReReranker``."""

try:
    import lancedb  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError('lancedb_core_rerank needs LanceDB: pip install "core-rerank[lancedb]"') from error

from lancedb_core_rerank.reranker import CoReReranker

__all__ = ["CoReReranker"]
