"""Milvus Lite searches reranked by ``core-rerank serve``, through Milvus's own cohere RERANK function.

A real embedded Milvus Lite collection (pymilvus + milvus-lite, no server binary) with the serving
tests' documents, vectors from the LanceDB example's hashing embedding (no model). Milvus posts
the plain search's top ``10 x limit`` hits to ``{base_url}/rerank`` (Cohere v2) and orders them by
the ``relevance_score`` it gets back: the final order must be the server's own order for those
hits, and each hit's distance its relevance score. One shared server (``server``) answers all.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from pymilvus import DataType, Function, FunctionType, MilvusClient
from pymilvus.exceptions import MilvusException
from serve_helpers import QUERIES

from core_rerank.utils import DEFAULT_MODEL

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
try:
    from lancedb_qa import hashing_embedding
finally:
    sys.path.pop(0)

pytestmark = pytest.mark.real_model

TEXTS = list(dict.fromkeys(doc for _, docs in QUERIES for doc in docs))
DIM = 64
QUERY = QUERIES[0][0]


def vector(text: str) -> list[float]:
    return hashing_embedding([text], dim=DIM)[0].tolist()


@pytest.fixture(scope="module")
def milvus(tmp_path_factory):
    client = MilvusClient(str(tmp_path_factory.mktemp("milvus") / "lite.db"))
    for name, count in (("docs", len(TEXTS)), ("empty", 0), ("many", 1001)):
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=2000)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
        index = client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type="FLAT")
        client.create_collection(name, schema=schema, index_params=index)
        texts = TEXTS if name == "docs" else [f"note {i} on city {i % 13}" for i in range(count)]
        if texts:
            client.insert(name, [{"id": i, "text": t, "vector": vector(t)} for i, t in enumerate(texts)])
        client.load_collection(name)
    yield client
    client.close()


def core_ranker(server, query: str = QUERY, field: str = "text", model: str = DEFAULT_MODEL) -> Function:
    """Milvus's RERANK function pointed at the server: provider cohere, ``base_url`` ending in /v2."""
    params = {"reranker": "model", "provider": "cohere", "queries": [query], "base_url": f"{server.url}/v2"}
    params.update(api_key="unused", model_name=model)  # Milvus wants a key; its default model is rerank-v3.5
    return Function(name="core", function_type=FunctionType.RERANK, input_field_names=[field], params=params)


def search(milvus, server, limit: int, collection: str = "docs", **ranker):
    hits = milvus.search(
        collection, data=[vector(QUERY)], limit=limit, output_fields=["text"], ranker=core_ranker(server, **ranker)
    )
    return list(hits[0])


def test_milvus_order_is_the_servers_order_for_the_hits_milvus_sent(milvus, server):
    limit = 3
    started = time.monotonic()
    hits = search(milvus, server, limit)
    seconds = time.monotonic() - started
    # Milvus sends the plain search's top 10 x limit (here: every row), in its order
    sent = list(milvus.search("docs", data=[vector(QUERY)], limit=10 * limit, output_fields=["text"])[0])
    assert len(sent) == len(TEXTS) < 10 * limit
    texts = [hit["entity"]["text"] for hit in sent]
    body = {"model": DEFAULT_MODEL, "query": QUERY, "documents": texts, "top_n": len(texts)}
    own = httpx.post(f"{server.url}/v2/rerank", json=body, timeout=120).json()["results"]
    assert [hit["id"] for hit in hits] == [sent[r["index"]]["id"] for r in own[:limit]]
    assert [hit["distance"] for hit in hits] == pytest.approx([r["relevance_score"] for r in own[:limit]], abs=1e-6)
    assert seconds < 60, f"Milvus gives up after 60 s; this search took {seconds:.0f} s"


def test_an_empty_collection_never_calls_the_server(milvus, server):
    assert search(milvus, server, 5, collection="empty") == []


@pytest.mark.parametrize(
    "collection, limit, ranker, words",
    [
        ("many", 101, {}, "too many documents: 1001 sent, at most 1000"),  # 10 x 101 hits > --max-documents
        ("docs", 3, {"model": "rerank-v3.5"}, "model_not_found"),  # Milvus's default model name
        ("docs", 3, {"field": "id"}, "must be VARCHAR"),  # Milvus's own check: a non-text field
        ("docs", 3, {"field": "missing"}, "not found"),
    ],
)
def test_bad_input_through_milvus_is_a_clear_error(milvus, server, collection, limit, ranker, words):
    with pytest.raises(MilvusException, match=words):
        search(milvus, server, limit, collection=collection, **ranker)
