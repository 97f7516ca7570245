"""Fixtures for the LlamaIndex / LangChain adapter tests and the example-app smoke tests.

Every test here shares ONE loaded model: the full SmolLM2-135M-Instruct (``num_layers_to_keep=None``),
which reranks (stopping after the deepest head's layer) and can also generate. The method is
"core" once the SmolLM2 CoRe preset ships, "icr" (all heads) until then.
"""

from __future__ import annotations

import pytest

from integration_data import DOCS, QUERY


@pytest.fixture(scope="session")
def shared_reranker(make_reranker):
    """The one reranker (full model) used by all integration tests."""
    from core_rerank import HeadConfigError

    try:
        return make_reranker(method="core", num_layers_to_keep=None)
    except HeadConfigError:
        return make_reranker(method="icr", num_layers_to_keep=None)


@pytest.fixture(scope="session")
def expected_order(shared_reranker):
    """Reference ranking of DOCS for QUERY, straight from the core reranker."""
    return [r.index for r in shared_reranker.rerank(QUERY, DOCS)]
