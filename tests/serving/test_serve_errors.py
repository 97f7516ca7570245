"""Every bad request is a clear 4xx and the server keeps serving; auth, limits, a full queue,
and a graceful SIGTERM."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from serve_helpers import ServerProcess

pytestmark = pytest.mark.real_model

GOOD = {"query": "capital of France", "documents": ["Paris is in France.", "Bananas are yellow."]}
BAD = [  # (route, body: dict or raw text, status, words the message must hold)
    ("/v1/rerank", "{not json", 400, "not valid JSON"),
    ("/v1/rerank", "", 400, "empty"),
    ("/v1/rerank", "[1, 2]", 400, "JSON object"),
    ("/v1/rerank", {"query": 3, "documents": ["a"]}, 400, "query"),
    ("/v1/rerank", {"query": "q", "documents": "a single string"}, 400, "documents"),
    ("/v1/rerank", {"query": "q", "documents": [1, 2]}, 400, "documents.0"),
    ("/v1/rerank", {"query": "q", "documents": [{"title": "no text"}]}, 400, "text"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": "2"}, 400, "top_n"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": 1.5}, 400, "top_n"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "return_documents": "yes"}, 400, "return_documents"),
    ("/v1/rerank", {"query": "   ", "documents": ["a"]}, 400, "query is empty"),
    ("/v1/rerank", {"documents": ["a"]}, 400, "query: field required"),
    ("/v1/rerank", {"query": "q"}, 400, "documents: field required"),
    ("/v1/rerank", {"query": "q", "documents": []}, 400, "documents is empty"),
    ("/v1/rerank", {"query": "q", "documents": ["x"] * 1001}, 400, "too many documents"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "model": "rerank-english-v3.0"}, 404, "not served"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, 400, "top_n must be >= 0"),
    ("/v2/rerank", {"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, 400, "max_tokens_per_doc"),
    ("/v2/rerank", {"query": "q", "documents": ["a"], "model": "nope"}, 404, "nope"),
    ("/rerank", {"query": "q", "texts": "not a list"}, 400, "texts"),
    ("/rerank", {"query": "q", "texts": []}, 400, "documents is empty"),
    ("/rerank", {"query": "", "texts": ["a"]}, 400, "query is empty"),
    ("/no/such/route", {}, 404, "no such route"),
    # bodies the JSON parser cannot take: nested too deep, a number too long to read
    ("/v1/rerank", "[" * 100_000 + "]" * 100_000, 400, "nested too deeply"),
    ("/v1/rerank", '{"query": "q", "documents": [' + "[" * 500 + "]" * 500 + "]}", 400, "nested too deeply"),
    ("/v1/rerank", '{"query": "q", "documents": ["a"], "top_n": ' + "9" * 5000 + "}", 400, "not valid JSON"),
    (
        "/rerank",
        {"query": "q", "texts": ["a"], "truncate": True, "truncation_direction": "Left"},
        400,
        "truncation_direction",
    ),
]


def _post(url: str, body, **kwargs) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(
        url,
        content=content,
        headers={"Content-Type": "application/json", **kwargs.pop("headers", {})},
        timeout=60,
        **kwargs,
    )


@pytest.mark.parametrize("route,body,status,words", BAD, ids=[f"{r}:{i}" for i, (r, *_) in enumerate(BAD)])
def test_bad_request_is_a_clear_4xx_and_the_server_keeps_serving(server, route, body, status, words):
    response = _post(server.url + route, body)
    assert response.status_code == status, response.text
    assert words in response.json()["message"]
    assert _post(server.url + "/v1/rerank", GOOD).status_code == 200


def test_wrong_method_is_405(server):
    assert httpx.get(server.url + "/v1/rerank").status_code == 405


@pytest.fixture(scope="module")
def guarded():
    """A server with an API key (from the environment), a small body limit and no queue."""
    srv = ServerProcess(
        "--max-queue", "0", "--max-body-bytes", "200000", "--max-documents", "60", env={"CORE_RERANK_API_KEY": "s3cret"}
    )
    yield srv
    srv.stop()


AUTH = {"Authorization": "Bearer s3cret"}
LONG = {
    "query": "a query about proteins",
    "documents": [
        f"Document {i}: " + " ".join(f"protein{j} binds receptor{i} in cell{j}" for j in range(6)) for i in range(12)
    ],
}


def test_api_key_is_required_on_every_route_but_health(guarded):
    assert httpx.get(guarded.url + "/health").status_code == 200
    for method, route in (
        ("POST", "/v1/rerank"),
        ("POST", "/v2/rerank"),
        ("POST", "/rerank"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
    ):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            response = httpx.request(method, guarded.url + route, json=GOOD, headers=headers)
            assert response.status_code == 401, (route, headers)
            assert "API key" in response.json()["message"]
    assert _post(guarded.url + "/v1/rerank", GOOD, headers=AUTH).status_code == 200
    assert httpx.get(guarded.url + "/v1/models", headers=AUTH).status_code == 200


def test_body_over_the_limit_is_413(guarded):
    body = {"query": "q", "documents": ["word " * 50_000]}
    response = _post(guarded.url + "/v1/rerank", body, headers=AUTH)
    assert response.status_code == 413 and "--max-body-bytes" in response.json()["message"]


def test_full_queue_is_503_with_retry_after_and_health_answers_during_a_long_rerank(guarded):
    results = {}

    def long_request():
        results["long"] = _post(guarded.url + "/v1/rerank", LONG, headers=AUTH)

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(1.0)
    start = time.perf_counter()
    health = httpx.get(guarded.url + "/health", timeout=5)
    health_s = time.perf_counter() - start
    long_still_running = "long" not in results
    busy = _post(guarded.url + "/v1/rerank", GOOD, headers=AUTH)
    thread.join(120)
    assert health.status_code == 200 and health_s < 2.0 and long_still_running
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    assert results["long"].status_code == 200
    assert _post(guarded.url + "/v1/rerank", GOOD, headers=AUTH).status_code == 200


def test_sigterm_finishes_the_request_in_flight_then_exits_0(guarded):
    results = {}

    def long_request():
        results["long"] = _post(guarded.url + "/v1/rerank", LONG, headers=AUTH)

    thread = threading.Thread(target=long_request)
    thread.start()
    time.sleep(1.0)
    guarded.proc.terminate()
    time.sleep(0.5)
    with pytest.raises(httpx.TransportError):
        httpx.get(guarded.url + "/health", timeout=5)
    thread.join(120)
    assert results["long"].status_code == 200 and len(results["long"].json()["results"]) == 12
    assert guarded.proc.wait(60) == 0
