"""The other wire formats against the real ``core-rerank serve``: Voyage (the voyageai SDK with
``base_url``), NVIDIA NIM (LiteLLM's ``nvidia_nim`` rerank, both its routes), Weaviate's
reranker-transformers and vLLM's score API (raw HTTP, as their clients send it), and bad input
through each. The order must equal the in-process ``CoReReranker.rerank``."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core_rerank.utils import DEFAULT_MODEL

pytestmark = pytest.mark.real_model


def test_voyage_sdk_sync_and_async(server, cases):
    voyageai = pytest.importorskip("voyageai")
    query, docs, want = cases[3]
    client = voyageai.Client(api_key="unused", base_url=server.url + "/v1", max_retries=0)
    reply = client.rerank(query, docs, model=DEFAULT_MODEL, top_k=3)
    assert [r.index for r in reply.results] == [i for i, _ in want[:3]]
    assert [r.document for r in reply.results] == [docs[i] for i, _ in want[:3]]
    assert reply.results[0].relevance_score == 1.0 and reply.total_tokens > 0

    async_client = voyageai.AsyncClient(api_key="unused", base_url=server.url + "/v1", max_retries=0)
    every = asyncio.run(async_client.rerank(query, docs, model=DEFAULT_MODEL, truncation=False))
    assert [r.index for r in every.results] == [i for i, _ in want]

    with pytest.raises(voyageai.error.InvalidRequestError, match="documents is empty"):
        client.rerank(query, [], model=DEFAULT_MODEL)
    with pytest.raises(voyageai.error.VoyageError, match="not served"):
        client.rerank(query, docs, model="rerank-2")


@pytest.mark.parametrize("prefix", ["ranking/", ""], ids=["v1-ranking", "retrieval-path"])
def test_litellm_nvidia_nim_rerank(server, cases, monkeypatch, prefix):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network: the cost map shipped in the wheel
    litellm = pytest.importorskip("litellm")
    query, docs, want = cases[0]
    model = f"nvidia_nim/{prefix}{DEFAULT_MODEL}"  # ranking/: POST /v1/ranking; else /v1/retrieval/<model>/reranking
    response = litellm.rerank(model=model, query=query, documents=docs, top_n=2, api_base=server.url, api_key="unused")
    assert [r["index"] for r in response.results] == [i for i, _ in want[:2]]
    assert response.results[0]["relevance_score"] == 1.0


def test_weaviate_rerank_ready_and_meta(server, cases):
    query, docs, want = cases[1]
    reply = httpx.post(server.url + "/rerank", json={"query": query, "documents": docs}, timeout=60).json()
    assert reply["query"] == query
    assert [s["document"] for s in reply["scores"]] == docs  # input order
    by_index = {r["index"]: r["relevance_score"] for r in reply["results"]}  # the Jina/vLLM reply is still there
    assert [s["score"] for s in reply["scores"]] == [by_index[i] for i in range(len(docs))]
    assert [r["index"] for r in reply["results"]] == [i for i, _ in want]
    assert httpx.get(server.url + "/.well-known/ready").status_code == 204
    assert httpx.get(server.url + "/meta").json()["model"]["name"] == DEFAULT_MODEL


def test_vllm_score_broadcasts_one_text_1(server, cases):
    query, docs, want = cases[2]
    for text_1 in (query, [query], [query] * len(docs)):
        reply = httpx.post(server.url + "/v1/score", json={"text_1": text_1, "text_2": docs}, timeout=60).json()
        assert reply["object"] == "list" and reply["model"] == DEFAULT_MODEL and reply["usage"]["total_tokens"] > 0
        assert [d["index"] for d in reply["data"]] == list(range(len(docs)))  # input order
        scores = [d["score"] for d in reply["data"]]
        assert sorted(range(len(docs)), key=lambda i: -scores[i]) == [i for i, _ in want]
    single = httpx.post(server.url + "/score", json={"text_1": query, "text_2": docs[0]}, timeout=60).json()
    assert [d["score"] for d in single["data"]] == [1.0]


MANY = [f"doc {i}" for i in range(1001)]  # over the server's default --max-documents 1000
BAD = [  # (route, body, status, words the message must hold)
    ("/v1/rerank", {"query": "q", "documents": [], "top_k": 2}, 400, "documents is empty"),
    ("/v1/rerank", {"query": "q", "documents": MANY, "top_k": 2}, 400, "too many documents"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_k": 0}, 400, "top_k"),
    ("/v1/rerank", {"query": "q", "documents": [{"text": "a"}], "truncation": True}, 400, "documents.0"),
    ("/v1/rerank", {"documents": ["a"], "truncation": True}, 400, "query: field required"),
    ("/rerank", {"query": "q", "documents": []}, 400, "documents is empty"),
    ("/rerank", {"query": "q", "property": "a single document"}, 400, "documents: field required"),
    ("/v1/ranking", {"query": {"text": "q"}, "passages": []}, 400, "documents is empty"),
    ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": d} for d in MANY]}, 400, "too many documents"),
    ("/v1/ranking", {"query": "q", "passages": [{"text": "a"}]}, 400, "query"),
    ("/v1/ranking", {"query": {"text": " "}, "passages": [{"text": "a"}]}, 400, "query is empty"),
    ("/v1/ranking", {"query": {"text": "q"}}, 400, "passages: field required"),
    ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"image": "x"}]}, 400, "passages.0.text"),
    ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": "a"}], "truncate": "START"}, 400, "truncate"),
    ("/v1/ranking", {"model": "nv-rerank", "query": {"text": "q"}, "passages": [{"text": "a"}]}, 404, "not served"),
    ("/score", {"text_1": "q", "text_2": []}, 400, "documents is empty"),
    ("/score", {"text_1": "q", "text_2": MANY}, 400, "too many documents"),
    ("/v1/score", {"text_1": ["q", "p"], "text_2": ["a", "b"]}, 400, "one text_1"),
    ("/v1/score", {"text_1": [], "text_2": ["a"]}, 400, "text_1 is empty"),
    ("/v1/score", {"text_2": ["a"]}, 400, "text_1: field required"),
    ("/v1/score", {"text_1": "q", "text_2": [1]}, 400, "text_2"),
]


@pytest.mark.parametrize("route,body,status,words", BAD, ids=[f"{r}:{i}" for i, (r, *_) in enumerate(BAD)])
def test_bad_input_through_each_format_is_a_clear_4xx(server, route, body, status, words):
    response = httpx.post(server.url + route, json=body, timeout=60)
    assert response.status_code == status, response.text
    reply = response.json()
    assert words in reply["message"] and reply["code"] == status
    if "top_k" in body or "truncation" in body:
        assert reply["detail"] == reply["message"]  # what the voyageai SDK shows
