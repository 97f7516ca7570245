"""Cohere v2 ``relevant_spans`` on ``/v2/rerank``: through the real cohere SDK, equal to the
in-process spans, offsets into each document's text; absent or disabled, the reply is as before;
bad values are 422."""

from __future__ import annotations

import inspect

import httpx
import pytest

from core_rerank.utils import DEFAULT_MODEL

pytestmark = pytest.mark.real_model

QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital of Germany. It has many museums.",
    "France is in Europe.  The capital of France is Paris.\nIt has the Eiffel Tower.",
    "Bananas are yellow.",
]
OBJECT_DOCS = [{"text": DOCS[0], "id": "a"}, {"text": DOCS[1], "id": "b"}, DOCS[2]]


def _rerank_with_spans(co, spans, documents):
    """``ClientV2.rerank`` with ``relevant_spans``: the SDK's own parameter when it has one
    (cohere >= 7), else sent in the body through the SDK's ``additional_body_parameters``."""
    if "relevant_spans" in inspect.signature(co.rerank).parameters:
        return co.rerank(model=DEFAULT_MODEL, query=QUERY, documents=documents, relevant_spans=spans)
    return co.rerank(
        model=DEFAULT_MODEL,
        query=QUERY,
        documents=documents,
        request_options={"additional_body_parameters": {"relevant_spans": spans}},
    )


def _spans_of(result):
    spans = getattr(result, "relevant_spans", None)
    if spans is None and getattr(result, "model_extra", None):
        spans = result.model_extra.get("relevant_spans")
    return [s if isinstance(s, dict) else {"start": s.start, "end": s.end, "score": s.score} for s in spans]


def test_cohere_sdk_gets_the_in_process_spans(server, reference):
    cohere = pytest.importorskip("cohere")
    co = cohere.ClientV2(api_key="unused", base_url=server.url)
    settings = {"mode": "enabled", "threshold": 0.1, "max_spans": 2}
    response = _rerank_with_spans(co, settings, DOCS)
    want = {
        r.index: r.relevant_spans
        for r in reference.rerank(QUERY, DOCS, relevant_spans={"threshold": 0.1, "max_spans": 2})
    }
    assert [r.index for r in response.results] == [r.index for r in reference.rerank(QUERY, DOCS)]
    for result in response.results:
        spans = _spans_of(result)
        text = DOCS[result.index]
        assert 1 <= len(spans) <= 2
        assert [s["score"] for s in spans] == sorted((s["score"] for s in spans), reverse=True)
        assert all(0.1 <= s["score"] <= 1.0 and 0 <= s["start"] < s["end"] <= len(text) for s in spans)
        assert all(text[s["start"] : s["end"]].strip() == text[s["start"] : s["end"]] for s in spans)
        assert [(s["start"], s["end"]) for s in spans] == [(s["start"], s["end"]) for s in want[result.index]]
        assert [s["score"] for s in spans] == pytest.approx([s["score"] for s in want[result.index]], abs=1e-6)


def test_object_documents_get_offsets_into_their_text(server):
    body = {"query": QUERY, "documents": OBJECT_DOCS, "relevant_spans": {"threshold": 0.0}, "return_documents": True}
    reply = httpx.post(server.url + "/v2/rerank", json=body, timeout=60).json()
    for r in reply["results"]:
        text = DOCS[r["index"]]
        assert r["document"]["text"] == text and r["relevant_spans"]
        covered = " ".join(text[s["start"] : s["end"]] for s in sorted(r["relevant_spans"], key=lambda s: s["start"]))
        assert covered.split() == text.split()  # threshold 0: every sentence, no word lost or invented


@pytest.mark.parametrize("field", [None, {"mode": "disabled"}, {"mode": "disabled", "max_spans": 3}])
def test_absent_or_disabled_replies_as_before(server, field):
    body = {"query": QUERY, "documents": DOCS, "top_n": 2}
    plain = httpx.post(server.url + "/v2/rerank", json=body, timeout=60).json()
    reply = httpx.post(
        server.url + "/v2/rerank", json=body if field is None else {**body, "relevant_spans": field}, timeout=60
    ).json()
    assert all(set(r) == {"index", "relevance_score", "raw_score"} for r in reply["results"])
    assert reply["results"] == plain["results"] and set(reply) == set(plain)


@pytest.mark.parametrize(
    "field",
    [{"max_spans": 0}, {"max_spans": -1}, {"threshold": -0.01}, {"threshold": 1.01}, {"mode": "sometimes"},
     {"threshold": "0.5"}, {"max_spans": 1.5}, "enabled", [1]],
)  # fmt: skip
def test_bad_values_are_422(server, field):
    reply = httpx.post(
        server.url + "/v2/rerank", json={"query": QUERY, "documents": DOCS, "relevant_spans": field}, timeout=60
    )
    assert reply.status_code == 422, reply.text
    assert "relevant_spans" in reply.json()["message"]
