"""PyTerrier reranker for core-rerank: ``from pyterrier_core_rerank import CoReReRanker``."""

try:
    import pyterrier  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        'pyterrier_core_rerank needs PyTerrier: pip install "core-rerank[pyterrier]"  (installs pyterrier, no Java)'
    ) from error

from pyterrier_core_rerank.reranker import CoReReRanker

__all__ = ["CoReReRanker"]
