"""``first_stage_scores`` on the rerank routes (Cohere v1/v2, Jina/vLLM/Weaviate ``/rerank``, TEI,
Voyage, NIM) of a real ``core-rerank serve``: the same candidates in another order, their scores
with them, get the same reply, equal to the in-process ``rerank(..., first_stage_scores=...)``;
absent (or null), the reply is as before; a wrong length or a non-number is 422. And the Ray
Serve pieces (the model replica's ``rank`` and the ingress's ``HandleScorer``) carry the field."""

from __future__ import annotations

import asyncio

import httpx
import pytest

pytestmark = pytest.mark.real_model

QUERY = "What is the capital of France?"
DOCS = [
    "Berlin is the capital and largest city of Germany.",
    "Paris is the capital and most populous city of France.",
    "The Eiffel Tower is a wrought-iron tower in Paris.",
    "Bananas are rich in potassium and grow in tropical regions.",
    "France is a country in Western Europe with several overseas territories.",
    "Madrid is the capital of Spain.",
]
FIRST_STAGE = [0.2, 0.9, 0.5, 0.1, 0.7, 0.3]
SHUFFLE = [3, 5, 0, 4, 2, 1]


def shuffled(values):
    return [values[i] for i in SHUFFLE]


def post(server, path, body):
    return httpx.post(server.url + path, json=body, timeout=120)


@pytest.fixture(scope="module")
def expected(reference):
    """text -> raw score, in process, with the first-stage scores."""
    return {r.text: r.score for r in reference.rerank(QUERY, DOCS, first_stage_scores=FIRST_STAGE)}


def by_text(reply, docs):
    return {docs[r["index"]]: r["raw_score"] for r in reply["results"]}


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank", "/rerank"])
def test_cohere_routes_rank_by_the_first_stage_scores(server, expected, path):
    for docs, scores in ((DOCS, FIRST_STAGE), (shuffled(DOCS), shuffled(FIRST_STAGE))):
        reply = post(server, path, {"query": QUERY, "documents": docs, "first_stage_scores": scores})
        assert reply.status_code == 200, reply.text
        got = by_text(reply.json(), docs)
        assert got.keys() == expected.keys()
        assert [got[t] for t in DOCS] == pytest.approx([expected[t] for t in DOCS], rel=1e-5, abs=1e-9)


def test_absent_or_null_replies_as_before(server, reference):
    docs = shuffled(DOCS)
    plain = [(r.index, r.score) for r in reference.rerank(QUERY, docs)]
    for extra in ({}, {"first_stage_scores": None}):
        reply = post(server, "/v2/rerank", {"query": QUERY, "documents": docs, **extra}).json()
        assert [r["index"] for r in reply["results"]] == [i for i, _ in plain]
        assert [r["raw_score"] for r in reply["results"]] == pytest.approx([s for _, s in plain], rel=1e-5)
        assert set(reply) == {"id", "model", "results", "usage", "meta"}
    with_scores = post(
        server, "/v2/rerank", {"query": QUERY, "documents": docs, "first_stage_scores": shuffled(FIRST_STAGE)}
    )
    assert [r["index"] for r in with_scores.json()["results"]] != [i for i, _ in plain]  # the order mattered


def test_tei_voyage_and_nim_take_the_field_too(server, reference, expected):
    docs, scores = shuffled(DOCS), shuffled(FIRST_STAGE)
    order = [docs[r.index] for r in reference.rerank(QUERY, docs, first_stage_scores=scores)]
    assert order == sorted(expected, key=lambda t: -expected[t])
    tei = post(server, "/rerank", {"query": QUERY, "texts": docs, "first_stage_scores": scores, "raw_scores": True})
    assert [docs[r["index"]] for r in tei.json()] == order
    voyage = post(server, "/v1/rerank", {"query": QUERY, "documents": docs, "top_k": 6, "first_stage_scores": scores})
    assert [docs[r["index"]] for r in voyage.json()["data"]] == order
    passages = [{"text": t} for t in docs]
    nim = post(server, "/v1/ranking", {"query": {"text": QUERY}, "passages": passages, "first_stage_scores": scores})
    assert [docs[r["index"]] for r in nim.json()["rankings"]] == order


@pytest.mark.parametrize(
    "value, message",
    [
        ([1.0, 2.0], "got 2 first_stage_scores for 6 documents"),
        (["1", 2, 3, 4, 5, 6], "numbers, got"),
        ([True, 2, 3, 4, 5, 6], "numbers, got"),
        ([[1], 2, 3, 4, 5, 6], "numbers, got"),
        ({"a": 1}, "must be a list of numbers"),
        ("123456", "must be a list of numbers"),
        (3, "must be a list of numbers"),
    ],
)
def test_bad_values_are_422_on_every_route(server, value, message):
    bodies = {
        "/v1/rerank": {"query": QUERY, "documents": DOCS},
        "/v2/rerank": {"query": QUERY, "documents": DOCS},
        "/rerank": {"query": QUERY, "texts": DOCS},
        "/v1/ranking": {"query": {"text": QUERY}, "passages": [{"text": t} for t in DOCS]},
    }
    bodies["/v1/rerank?voyage"] = {"query": QUERY, "documents": DOCS, "top_k": 2}
    for path, body in bodies.items():
        reply = post(server, path.split("?")[0], {**body, "first_stage_scores": value})
        assert reply.status_code == 422, (path, reply.text)
        assert "first_stage_scores" in reply.json()["message"] and message in reply.json()["message"], path


def test_nan_is_422(server):
    body = '{"query": "q", "documents": ["a", "b"], "first_stage_scores": [NaN, 1]}'
    reply = httpx.post(server.url + "/v1/rerank", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 422 and "first_stage_scores" in reply.json()["message"]


def test_ray_serve_model_replica_and_handle_carry_the_scores(reference, expected):
    pytest.importorskip("ray.serve")
    from core_rerank.serving.ray_serve import HandleScorer, RerankModel
    from core_rerank.serving.service import LocalScorer

    replica = RerankModel.func_or_class.__new__(RerankModel.func_or_class)  # the class Ray would build
    replica.scorer = LocalScorer(reference)
    sent = []

    class Method:
        def __init__(self, name):
            self.name = name

        async def remote(self, *args):
            sent.append(args)
            return await getattr(replica, self.name)(*args)

    class Handle:
        rank = Method("rank")

    scorer = HandleScorer(Handle())
    ranked = asyncio.run(scorer.rank(QUERY, shuffled(DOCS), None, None, shuffled(FIRST_STAGE)))
    assert sent[-1][-1] == shuffled(FIRST_STAGE)
    docs = shuffled(DOCS)
    assert {docs[i]: s for i, s in enumerate(ranked.raw)} == expected
    plain = asyncio.run(scorer.rank(QUERY, docs))
    assert sent[-1][-1] is None
    assert plain.raw == [r.score for r in sorted(reference.rerank(QUERY, docs), key=lambda r: r.index)]
    replica.scorer.close()
