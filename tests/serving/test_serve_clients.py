"""Clients nobody here wrote, pointed at a real ``core-rerank serve``: their order equals the
in-process ``CoReReranker.rerank``."""

from __future__ import annotations

import httpx
import pytest

from core_rerank.utils import DEFAULT_MODEL

pytestmark = pytest.mark.real_model


def _raw_close(results, want, key="raw_score"):
    assert [r["index"] for r in results] == [i for i, _ in want]
    for r, (_, score) in zip(results, want):
        assert r[key] == pytest.approx(score, rel=1e-4, abs=1e-6)


def test_cohere_client_v2_same_order_as_in_process(server, cases):
    cohere = pytest.importorskip("cohere")
    co = cohere.ClientV2(api_key="unused", base_url=server.url)
    for query, docs, want in cases:
        response = co.rerank(model=DEFAULT_MODEL, query=query, documents=docs, top_n=3)
        assert [r.index for r in response.results] == [i for i, _ in want][:3]
        scores = [r.relevance_score for r in response.results]
        assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and min(scores) >= 0.0


def test_cohere_client_v1_same_order_as_in_process(server, cases):
    cohere = pytest.importorskip("cohere")
    co = cohere.Client(api_key="unused", base_url=server.url)
    for query, docs, want in cases:
        response = co.rerank(model=DEFAULT_MODEL, query=query, documents=docs, return_documents=True)
        assert [r.index for r in response.results] == [i for i, _ in want]
        assert [r.document.text for r in response.results] == [docs[i] for i, _ in want]


def test_llamaindex_tei_reranker_in_a_query_engine(server, cases):
    pytest.importorskip("llama_index.postprocessor.tei_rerank")
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.tei_rerank import TextEmbeddingInference

    query, docs, want = cases[1]

    class FixedRetriever(BaseRetriever):
        def _retrieve(self, query_bundle):
            return [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.0) for i, d in enumerate(docs)]

    reranker = TextEmbeddingInference(base_url=server.url, top_n=2)
    engine = RetrieverQueryEngine.from_args(FixedRetriever(), llm=MockLLM(), node_postprocessors=[reranker])
    response = engine.query(query)
    assert [n.node.node_id for n in response.source_nodes] == [str(i) for i, _ in want[:2]]


def test_llamaindex_cohere_rerank(server, cases):
    pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.cohere_rerank import CohereRerank

    query, docs, want = cases[0]
    reranker = CohereRerank(api_key="unused", model=DEFAULT_MODEL, top_n=3, base_url=server.url)
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i))) for i, d in enumerate(docs)]
    out = reranker.postprocess_nodes(nodes, QueryBundle(query))
    assert [n.node.node_id for n in out] == [str(i) for i, _ in want[:3]]


def usage_of(reference, query: str, docs: list[str]) -> dict:
    """The tokens of the prompts ``score`` runs for this list (every window), and with each N/A twin's query part."""
    prompt = total = 0
    for window in reference.windows(query, docs):
        prepared = reference.prepare(query, [docs[i] for i in window])
        prompt += len(prepared)
        total += len(prepared) + len(prepared.null_input_ids) - prepared.prefix_length
    reference.score(query, docs)
    assert reference.last_usage == {
        "prompts": len(reference.windows(query, docs)),
        "prompt_tokens": prompt,
        "total_tokens": total,
    }
    return {"prompt_tokens": prompt, "total_tokens": total}


def test_raw_http_vllm_jina_shape(server, cases, reference):
    query, docs, want = cases[3]
    for route in ("/rerank", "/v1/rerank"):
        body = httpx.post(
            server.url + route,
            json={"model": DEFAULT_MODEL, "query": query, "documents": [{"text": d} for d in docs], "top_n": 0},
            timeout=60,
        ).json()
        assert body["model"] == DEFAULT_MODEL and set(body["usage"]) == {"prompt_tokens", "total_tokens"}
        _raw_close(body["results"], want)
        assert body["usage"] == usage_of(reference, query, docs)
        assert [r["document"]["text"] for r in body["results"]] == [docs[i] for i, _ in want]
        assert body["results"][0]["relevance_score"] == 1.0 and body["results"][-1]["relevance_score"] == 0.0


def test_raw_http_cohere_v2_shape(server, cases):
    query, docs, want = cases[2]
    body = httpx.post(
        server.url + "/v2/rerank",
        json={"model": DEFAULT_MODEL, "query": query, "documents": docs, "top_n": 2},
        timeout=60,
    ).json()
    assert set(body) >= {"id", "results", "meta"}
    assert all(set(r) == {"index", "relevance_score", "raw_score"} for r in body["results"])
    _raw_close(body["results"], want[:2])


def test_raw_http_max_tokens_per_doc_cuts_documents(server, reference):
    docs = ["Unrelated words come first here, and Paris is the capital of France.", "Lyon is in France."]
    query = "What is the capital of France?"
    body = httpx.post(
        server.url + "/v2/rerank", json={"query": query, "documents": docs, "max_tokens_per_doc": 4}, timeout=60
    ).json()
    cut = [reference.tokenizer.decode(reference.tokenizer(d, add_special_tokens=False)["input_ids"][:4]) for d in docs]
    want = [(r.index, r.score) for r in reference.rerank(query, cut)]
    _raw_close(body["results"], want)


def test_raw_http_tei_shape(server, cases):
    query, docs, want = cases[0]
    body = httpx.post(
        server.url + "/rerank", json={"query": query, "texts": docs, "truncate": True, "return_text": True}, timeout=60
    ).json()
    assert isinstance(body, list)
    assert [r["index"] for r in body] == [i for i, _ in want]
    assert [r["text"] for r in body] == [docs[i] for i, _ in want]
    assert body[0]["score"] == 1.0 and all(0.0 <= r["score"] <= 1.0 for r in body)
    raw = httpx.post(
        server.url + "/rerank", json={"query": query, "texts": docs, "raw_scores": True}, timeout=60
    ).json()
    _raw_close(raw, want, key="score")


def test_health_models_metrics(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    models = httpx.get(server.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == DEFAULT_MODEL
    text = httpx.get(server.url + "/metrics").text
    for name in (
        "core_rerank_requests_total",
        "core_rerank_request_errors_total",
        "core_rerank_documents_total",
        "core_rerank_request_duration_seconds_bucket",
        "core_rerank_queue_depth",
    ):
        assert name in text
