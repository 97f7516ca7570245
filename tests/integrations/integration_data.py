"""Shared test data and helpers for the integration tests (imported by the test modules)."""

from __future__ import annotations

QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital and largest city of Germany.",
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower is a wrought-iron tower in Paris.",
    "Bananas are rich in potassium and grow in tropical regions.",
    "France is a country in Western Europe with several overseas territories.",
    "Madrid is the capital of Spain.",
]
QUERIES = [
    "What is the capital of France?",
    "Which fruit is rich in potassium?",
    "Where is the Eiffel Tower?",
    "What is the capital of Spain?",
    "Which city is the largest in Germany?",
    "Where is France?",
    "What is the capital of Germany?",
    "Name a tower made of wrought iron.",
]


class CountingReranker:
    """Delegates to a real reranker and records ``rerank`` calls (to prove what the adapters ask
    the core for, and that empty input never runs the model)."""

    def __init__(self, inner):
        self._inner = inner
        self.calls = []

    def rerank(self, query, documents, **kwargs):
        self.calls.append((query, list(documents), kwargs))
        return self._inner.rerank(query, documents, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def with_max_doc_words(reranker, words: int):
    """The same loaded model and heads as ``reranker`` (no second load), documents cut to ``words``."""
    from core_rerank import CoReReranker

    return CoReReranker(
        model=reranker.model,
        tokenizer=reranker.tokenizer,
        heads=reranker.heads,
        max_doc_words=words,
        model_id=reranker.model_id,
    )
