"""Ecosystem clients nobody here wrote, pointed at a real ``core-rerank serve``: Haystack's
``VLLMRanker`` (vllm-haystack, sync and async) and LiteLLM's ``rerank`` (cohere provider with
``api_base``). Their order must equal the in-process ``CoReReranker.rerank``."""

from __future__ import annotations

import asyncio
import os

import pytest

from core_rerank.utils import DEFAULT_MODEL

pytestmark = pytest.mark.real_model


def test_haystack_vllm_ranker_sync_and_async(server, cases):
    pytest.importorskip("haystack_integrations.components.rankers.vllm")
    from haystack import Document
    from haystack_integrations.components.rankers.vllm import VLLMRanker

    ranker = VLLMRanker(model=DEFAULT_MODEL, api_base_url=server.url + "/v1", top_k=3)
    expected = []
    for query, docs, want in cases[:2]:
        documents = [Document(id=str(i), content=d) for i, d in enumerate(docs)]
        out = ranker.run(query=query, documents=documents)["documents"]
        assert [d.id for d in out] == [str(i) for i, _ in want[:3]]
        scores = [d.score for d in out]
        assert scores == sorted(scores, reverse=True)  # the API's relevance_score (normalised), best first
        expected.append((query, documents, [(d.id, d.score) for d in out]))
    ranker.close()

    async def run_all():  # one event loop: the ranker keeps its async client between calls
        try:
            for query, documents, want in expected:
                out = (await ranker.run_async(query=query, documents=documents))["documents"]
                assert [(d.id, d.score) for d in out] == want
        finally:
            await ranker.close_async()

    asyncio.run(run_all())


def test_litellm_rerank_cohere_provider(server, cases, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: the cost map shipped in the wheel
    litellm = pytest.importorskip("litellm")
    query, docs, want = cases[3]
    response = litellm.rerank(
        model=f"cohere/{DEFAULT_MODEL}",
        query=query,
        documents=docs,
        top_n=3,
        api_base=server.url,
        api_key=os.environ.get("COHERE_API_KEY", "unused"),
    )
    assert [r["index"] for r in response.results] == [i for i, _ in want[:3]]
    scores = [r["relevance_score"] for r in response.results]
    assert scores == sorted(scores, reverse=True)

    async_response = asyncio.run(
        litellm.arerank(
            model=f"cohere/{DEFAULT_MODEL}", query=query, documents=docs, api_base=server.url, api_key="unused"
        )
    )
    assert [r["index"] for r in async_response.results] == [i for i, _ in want]
