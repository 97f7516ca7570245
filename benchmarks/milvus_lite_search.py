"""How long does a Milvus Lite search reranked by ``core-rerank serve`` take, and does it fit
Milvus's fixed 60 s? (docs/integrations.md, Milvus Lite.)

Builds an embedded Milvus Lite collection over the NQ-open slice of the examples (275 passages,
the examples' hashing embedding: no model), then runs ``--searches`` searches with ``--limit``
through Milvus's cohere RERANK function pointed at a running server. Milvus sends the plain
search's top ``10 x limit`` hits in one request; its provider gives up after 60 s. Prints one
JSON line: seconds per search, documents sent, and the server's settings.

    core-rerank serve --port 8000 &                       # the default threads, or --threads 1
    .venv/bin/python benchmarks/milvus_lite_search.py --url http://127.0.0.1:8000 --limit 10
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import qa_common  # noqa: E402
from lancedb_qa import hashing_embedding  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running core-rerank serve")
    parser.add_argument("--limit", type=int, default=10, help="the search's limit (Milvus sends 10 x limit)")
    parser.add_argument("--searches", type=int, default=3, help="questions searched, one after another")
    args = parser.parse_args()

    from pymilvus import DataType, Function, FunctionType, MilvusClient

    served = httpx.get(args.url + "/v1/models", timeout=10).json()["data"][0]
    passages = qa_common.load_corpus()
    with tempfile.TemporaryDirectory() as folder:
        client = MilvusClient(os.path.join(folder, "lite.db"))
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=8000)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=256)
        index = client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type="FLAT")
        client.create_collection("nq", schema=schema, index_params=index)
        vectors = hashing_embedding([p["text"] for p in passages])
        client.insert(
            "nq",
            [{"id": i, "text": p["text"], "vector": v.tolist()} for i, (p, v) in enumerate(zip(passages, vectors))],
        )
        client.load_collection("nq")
        seconds = []
        for item in qa_common.load_questions(args.searches):
            params = {"reranker": "model", "provider": "cohere", "queries": [item["question"]]}
            params.update(base_url=args.url + "/v2", api_key="unused", model_name=served["id"])
            ranker = Function(name="core", function_type=FunctionType.RERANK, input_field_names=["text"], params=params)
            started = time.perf_counter()
            try:
                client.search(
                    "nq", data=[hashing_embedding([item["question"]])[0].tolist()], limit=args.limit, ranker=ranker
                )
                seconds.append(round(time.perf_counter() - started, 1))
            except Exception as exc:  # Milvus's own error: the timeout, or the server's 4xx/5xx
                seconds.append(f"failed after {time.perf_counter() - started:.0f} s: {str(exc)[:160]}")
        client.close()
    settings = served.get("settings", {})
    print(
        json.dumps(
            {
                "limit": args.limit,
                "documents_sent": min(10 * args.limit, len(passages)),
                "seconds": seconds,
                "load_average": os.getloadavg()[0],
                "server": {k: settings.get(k) for k in ("dtype", "max_doc_words", "window_tokens")},
            }
        )
    )


if __name__ == "__main__":
    main()
