"""The app around a stand-in reranker (no model): fast checks of routing and edge cases."""

from __future__ import annotations

import json
from types import SimpleNamespace

from fastapi.testclient import TestClient

from core_rerank.errors import InputError
from core_rerank.serving import create_app


class FakeReranker:
    """Scores a document by its length; raises on the document "boom" (a bug of ours), and an
    InputError on the document "refuse" (bad input the reranker refuses)."""

    model_id = "fake-model"
    tokenizer = None
    lock = None

    def rerank(self, query, documents):
        if "boom" in documents:
            raise RuntimeError("boom")
        if "typo" in documents:
            raise TypeError("a bug of ours that happens to be a TypeError")
        if "refuse" in documents:
            raise InputError("this document cannot be scored")
        scores = [float(len(d)) if d else float("-inf") for d in documents]
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
        return [SimpleNamespace(index=i, score=scores[i]) for i in order]


def client(**kwargs) -> TestClient:
    return TestClient(create_app(FakeReranker(), **kwargs), raise_server_exceptions=False)


def test_a_bug_is_a_json_500_with_an_error_id_in_the_log_and_the_server_keeps_serving(caplog):
    c = client()
    for document in ("boom", "typo"):  # a TypeError inside the reranker is ours too, not the user's
        response = c.post("/v1/rerank", json={"query": "q", "documents": [document]})
        body = response.json()
        assert response.status_code == 500 and body["type"] == "internal_error", body
        assert body["error_id"] in body["message"] and body["error_id"] in caplog.text
    assert c.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200


def test_input_the_reranker_refuses_is_a_400():
    response = client().post("/v1/rerank", json={"query": "q", "documents": ["refuse"]})
    assert response.status_code == 400 and "cannot be scored" in response.json()["message"]


def test_openapi_describes_what_each_route_returns():
    spec = client().get("/openapi.json").json()

    def returns(path: str, method: str) -> str:
        return json.dumps(spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"])

    assert "RerankResponse" in returns("/v1/rerank", "post") and "RerankResponse" in returns("/v2/rerank", "post")
    assert "TEIResult" in returns("/rerank", "post") and "ModelList" in returns("/v1/models", "get")
    fields = spec["components"]["schemas"]["RerankResultItem"]["properties"]
    assert {"index", "relevance_score", "raw_score", "document"} <= set(fields)


def test_empty_document_scores_zero_and_raw_null():
    body = client().post("/v1/rerank", json={"query": "q", "documents": ["", "abc", "a"]}).json()
    assert [(r["index"], r["relevance_score"], r["raw_score"]) for r in body["results"]] == [
        (1, 1.0, 3.0),
        (2, 0.0, 1.0),
        (0, 0.0, None),
    ]


def test_rank_fields_top_n_and_aliases():
    c = client(model_names=["my-reranker"])
    docs = [{"title": "long title here", "body": "x"}, {"title": "t", "body": "much longer body"}]
    body = c.post(
        "/v1/rerank",
        json={"model": "FAKE-MODEL", "query": "q", "documents": docs, "rank_fields": ["title", "body"], "top_n": 1},
    ).json()
    assert [r["index"] for r in body["results"]] == [1] and body["model"] == "my-reranker"
    assert body["results"][0]["document"]["body"] == "much longer body"
    assert [m["id"] for m in c.get("/v1/models").json()["data"]] == ["my-reranker", "fake-model"]


def test_bearer_scheme_is_case_insensitive_and_health_is_open():
    c = client(api_key="k")
    assert c.get("/health").status_code == 200
    assert c.get("/v1/models", headers={"Authorization": "bearer k"}).status_code == 200
    assert c.get("/v1/models", headers={"Authorization": "Bearer k2"}).status_code == 401


def test_readiness_probes_are_open_and_the_other_formats_need_the_key():
    c = client(api_key="k")
    assert c.get("/.well-known/ready").status_code == 204 and c.get("/.well-known/live").status_code == 204
    for method, route in (("GET", "/meta"), ("POST", "/v1/ranking"), ("POST", "/score"), ("POST", "/v1/score")):
        assert c.request(method, route, json={}).status_code == 401, route
    ok = c.post(
        "/v1/rerank", json={"query": "q", "documents": ["a", "abc"], "top_k": 1}, headers={"Authorization": "Bearer k"}
    )
    assert ok.json()["data"] == [{"index": 1, "relevance_score": 1.0}]
    spec = c.get("/openapi.json", headers={"Authorization": "Bearer k"}).json()
    assert {"/v1/ranking", "/score", "/v1/score", "/.well-known/ready", "/meta"} <= set(spec["paths"])
