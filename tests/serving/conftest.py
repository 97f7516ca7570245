"""Fixtures: a real ``core-rerank serve`` (subprocess, loopback) and the in-process reranker its
answers must equal (same model, fp32 on CPU, one thread)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from serve_helpers import QUERIES, ServerProcess

from core_rerank.utils import DEFAULT_MODEL


@pytest.fixture(scope="session")
def reference(smollm2_dir):
    """The in-process reranker (the server's twin)."""
    import torch

    from core_rerank import CoReReranker

    torch.set_num_threads(1)
    return CoReReranker.from_pretrained(DEFAULT_MODEL, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def server(smollm2_dir):
    """A plain server (no key), shared by the client, error and load tests."""
    srv = ServerProcess()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def cases(reference):
    """``[(query, documents, [(index, raw score) best first])]``, from the in-process reranker."""
    return [(q, docs, [(r.index, r.score) for r in reference.rerank(q, docs)]) for q, docs in QUERIES]
