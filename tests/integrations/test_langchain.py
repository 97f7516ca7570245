"""LangChain adapter: langchain_core_rerank.CoReRerank, against real langchain-core / -classic / -community."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import BaseDocumentCompressor, Document  # noqa: E402
from langchain_core_rerank import CoReRerank  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from integration_data import DOCS, QUERIES, QUERY, CountingReranker  # noqa: E402

pytestmark = pytest.mark.real_model


def make_docs(texts=DOCS):
    return [Document(page_content=t, metadata={"source": f"doc{i}", "tags": ["x"]}, id=f"d{i}")
            for i, t in enumerate(texts)]


def ids(docs):
    return [d.id for d in docs]


def test_is_a_document_compressor():
    assert BaseDocumentCompressor in CoReRerank.__mro__


def test_unknown_kwargs_are_rejected(shared_reranker):
    with pytest.raises(ValidationError, match="top_k"):
        CoReRerank(reranker=shared_reranker, top_k=3)


def test_returns_scored_copies_with_same_ids(shared_reranker, expected_order):
    docs = make_docs()
    before = copy.deepcopy(docs)
    out = CoReRerank(reranker=shared_reranker).compress_documents(docs, QUERY)
    assert ids(out) == [f"d{i}" for i in expected_order[:3]]  # top_n defaults to 3
    scores = [d.metadata["relevance_score"] for d in out]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    assert scores == [shared_reranker.score(QUERY, DOCS)[i] for i in expected_order[:3]]
    assert docs == before  # the caller's documents (and their metadata) are untouched
    assert not {id(d) for d in out} & {id(d) for d in docs}
    by_id = {d.id: d for d in docs}
    for d in out:
        assert d.page_content == by_id[d.id].page_content
        assert d.metadata["source"] == by_id[d.id].metadata["source"]
        assert d.metadata["tags"] is not by_id[d.id].metadata["tags"]  # deep-copied metadata


def test_top_n_none_and_threshold(shared_reranker):
    out = CoReRerank(reranker=shared_reranker, top_n=None).compress_documents(make_docs(), QUERY)
    assert len(out) == len(DOCS)
    threshold = out[1].metadata["relevance_score"]
    out = CoReRerank(reranker=shared_reranker, top_n=None, score_threshold=threshold).compress_documents(
        make_docs(), QUERY)
    assert len(out) == 2 and all(d.metadata["relevance_score"] >= threshold for d in out)


def test_empty_input_skips_the_model(shared_reranker):
    counting = CountingReranker(shared_reranker)
    compressor = CoReRerank(reranker=counting)
    assert compressor.compress_documents([], QUERY) == []
    assert compressor.rerank([], QUERY) == []
    assert asyncio.run(compressor.acompress_documents([], QUERY)) == []
    assert counting.calls == 0


def test_rerank_helper_like_cohere_and_jina(shared_reranker, expected_order):
    compressor = CoReRerank(reranker=shared_reranker, top_n=2)
    results = compressor.rerank(DOCS, QUERY, top_n=None)
    assert [r["index"] for r in results] == expected_order
    assert all(set(r) == {"index", "relevance_score"} and type(r["relevance_score"]) is float for r in results)
    assert [r["index"] for r in compressor.rerank(make_docs(), QUERY)] == expected_order[:2]  # -1: own top_n


def test_async_matches_sync(shared_reranker):
    compressor = CoReRerank(reranker=shared_reranker, top_n=None)
    sync = compressor.compress_documents(make_docs(), QUERY)
    async_ = asyncio.run(compressor.acompress_documents(make_docs(), QUERY))
    assert sync == async_


def test_injected_reranker_settings_must_agree(shared_reranker):
    other = "qr" if shared_reranker.method != "qr" else "icr"
    with pytest.raises(ValidationError, match="do not match"):
        CoReRerank(reranker=shared_reranker, method=other)
    compressor = CoReRerank(reranker=shared_reranker)
    assert compressor.method == shared_reranker.method and compressor.device == "cpu"


def test_inside_contextual_compression_retriever(shared_reranker):
    pytest.importorskip("rank_bm25")
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_community.retrievers import BM25Retriever

    bm25 = BM25Retriever.from_documents(make_docs(), k=4, preprocess_func=lambda t: t.lower().replace("?", "").split())
    retriever = ContextualCompressionRetriever(
        base_compressor=CoReRerank(reranker=shared_reranker, top_n=2), base_retriever=bm25)
    candidates = bm25.invoke(QUERY)
    expected = [candidates[r["index"]].id for r in
                CoReRerank(reranker=shared_reranker, top_n=2).rerank(candidates, QUERY)]
    out = retriever.invoke(QUERY)
    assert ids(out) == expected and all("relevance_score" in d.metadata for d in out)
    assert ids(asyncio.run(retriever.ainvoke(QUERY))) == expected


def test_concurrent_threads_and_gather_match_serial(shared_reranker):
    compressor = CoReRerank(reranker=shared_reranker, top_n=3)
    docs = make_docs(DOCS[:4])
    serial = [compressor.compress_documents(docs, q) for q in QUERIES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda q: compressor.compress_documents(docs, q), QUERIES))
    assert threaded == serial

    async def gather():
        return await asyncio.gather(*(compressor.acompress_documents(docs, q) for q in QUERIES))

    assert [list(r) for r in asyncio.run(gather())] == serial


def test_missing_framework_names_the_extra():
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n    import langchain_core_rerank\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert 'pip install "core-rerank[langchain]"' in out
