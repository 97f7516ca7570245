"""Fixtures for the LlamaIndex / LangChain adapter tests and the example-app smoke tests.

Every test here shares ONE loaded model: the full SmolLM2-135M-Instruct (``num_layers_to_keep="all"``)
with its shipped CoRe heads, which reranks (stopping after the deepest head's layer) and can
also generate. A broken or missing SmolLM2 CoRe preset fails here, loudly.
"""

from __future__ import annotations

import pytest
from integration_data import DOCS, QUERY


@pytest.fixture(scope="session")
def shared_reranker(make_reranker):
    """The one reranker (full model, CoRe heads) used by all integration tests."""
    return make_reranker(method="core", num_layers_to_keep="all")


@pytest.fixture(scope="session")
def expected_order(shared_reranker):
    """Reference ranking of DOCS for QUERY, straight from the core reranker."""
    return [r.index for r in shared_reranker.rerank(QUERY, DOCS)]


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread while a module runs: on a busy 2-core machine two OpenMP threads spin
    against other processes and a forward pass gets several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
