"""Haystack ranker for core-rerank: ``from haystack_integrations.components.rankers.core_rerank import CoReRanker``."""

try:
    import haystack  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "haystack_integrations.components.rankers.core_rerank needs Haystack: "
        'pip install "core-rerank[haystack]"  (installs haystack-ai)'
    ) from error

from haystack_integrations.components.rankers.core_rerank.ranker import CoReRanker

__all__ = ["CoReRanker"]
