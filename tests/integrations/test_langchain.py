"""LangChain adapter: langchain_core_rerank.CoReRerank, against real langchain-core / -classic / -community."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("langchain_core")

from integration_data import DOCS, QUERIES, QUERY, CountingReranker
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ValidationError

from core_rerank import HeadConfig
from langchain_core_rerank import CoReRerank

pytestmark = pytest.mark.real_model


def make_docs(texts=DOCS):
    return [
        Document(page_content=t, metadata={"source": f"doc{i}", "tags": ["x"]}, id=f"d{i}") for i, t in enumerate(texts)
    ]


def ids(docs):
    return [d.id for d in docs]


def test_is_a_document_compressor():
    assert BaseDocumentCompressor in CoReRerank.__mro__


def test_unknown_kwargs_are_rejected(shared_reranker):
    with pytest.raises(ValidationError, match="top_k"):
        CoReRerank.from_reranker(shared_reranker, top_k=3)


def test_returns_scored_copies_with_same_ids(shared_reranker, expected_order):
    docs = make_docs()
    before = copy.deepcopy(docs)
    out = CoReRerank.from_reranker(shared_reranker).compress_documents(docs, QUERY)
    assert ids(out) == [f"d{i}" for i in expected_order[:3]]  # top_n defaults to 3
    scores = [d.metadata["raw_score"] for d in out]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    raw = shared_reranker.score(QUERY, DOCS)
    assert scores == [raw[i] for i in expected_order[:3]]
    relevance = [d.metadata["relevance_score"] for d in out]  # [0, 1] over all the call's documents
    assert relevance == pytest.approx([(raw[i] - min(raw)) / (max(raw) - min(raw)) for i in expected_order[:3]])
    assert relevance[0] == 1.0
    assert docs == before  # the caller's documents (and their metadata) are untouched
    assert not {id(d) for d in out} & {id(d) for d in docs}
    by_id = {d.id: d for d in docs}
    for d in out:
        assert d.page_content == by_id[d.id].page_content
        assert d.metadata["source"] == by_id[d.id].metadata["source"]
        assert d.metadata["tags"] is not by_id[d.id].metadata["tags"]  # deep-copied metadata


def test_top_n_none_and_threshold(shared_reranker):
    out = CoReRerank.from_reranker(shared_reranker, top_n=None).compress_documents(make_docs(), QUERY)
    assert len(out) == len(DOCS)
    threshold = out[1].metadata["raw_score"]  # the threshold is on the raw score
    out = CoReRerank.from_reranker(shared_reranker, top_n=None, score_threshold=threshold).compress_documents(
        make_docs(), QUERY
    )
    assert len(out) == 2 and all(d.metadata["raw_score"] >= threshold for d in out)


def test_empty_input_skips_the_model(shared_reranker):
    counting = CountingReranker(shared_reranker)
    compressor = CoReRerank.from_reranker(counting)
    assert compressor.compress_documents([], QUERY) == []
    assert compressor.rerank([], QUERY) == []
    assert asyncio.run(compressor.acompress_documents([], QUERY)) == []
    assert counting.calls == []


def test_rerank_helper_like_cohere_and_jina(shared_reranker, expected_order):
    compressor = CoReRerank.from_reranker(shared_reranker, top_n=2)
    results = compressor.rerank(DOCS, QUERY, top_n=None)
    assert [r["index"] for r in results] == expected_order
    assert all(set(r) == {"index", "relevance_score", "raw_score"} for r in results)
    assert all(type(r["relevance_score"]) is float and type(r["raw_score"]) is float for r in results)
    assert [r["index"] for r in compressor.rerank(make_docs(), QUERY)] == expected_order[:2]  # default: own top_n
    with pytest.raises(ValueError, match="None \\(all\\)"):
        compressor.rerank(DOCS, QUERY, top_n=-1)  # one spelling of "all": None


def test_async_matches_sync(shared_reranker):
    compressor = CoReRerank.from_reranker(shared_reranker, top_n=None)
    sync = compressor.compress_documents(make_docs(), QUERY)
    async_ = asyncio.run(compressor.acompress_documents(make_docs(), QUERY))
    assert sync == async_


def test_from_reranker_describes_it_and_refuses_loading_settings(shared_reranker):
    compressor = CoReRerank.from_reranker(shared_reranker, top_n=2, score_threshold=0.5)
    assert compressor.reranker is shared_reranker
    assert (compressor.top_n, compressor.score_threshold) == (2, 0.5)
    assert compressor.model == shared_reranker.model_id and compressor.heads == shared_reranker.heads
    assert compressor.method == "core" and compressor.device == "cpu" and compressor.dtype == "float32"
    assert compressor.num_layers_to_keep == 30 and compressor.max_doc_words == shared_reranker.max_doc_words
    assert compressor.window_tokens == shared_reranker.window_tokens == 600
    with pytest.raises(TypeError, match="method belong to the reranker"):
        CoReRerank.from_reranker(shared_reranker, method="qr")
    with pytest.raises(TypeError, match="from_reranker"):
        CoReRerank(reranker=shared_reranker)
    with pytest.raises(TypeError, match="CoReReranker"):
        CoReRerank.from_reranker("smollm2-135m-instruct")


def test_calls_the_core_rerank_with_top_n_and_threshold(shared_reranker):
    counting = CountingReranker(shared_reranker)
    CoReRerank.from_reranker(counting, top_n=2, score_threshold=-1.5).compress_documents(make_docs(), QUERY)
    assert counting.calls == [(QUERY, DOCS, {"top_k": 2, "score_threshold": -1.5})]


def test_top_n_and_threshold_together(shared_reranker):
    scores = sorted(shared_reranker.score(QUERY, DOCS), reverse=True)
    out = CoReRerank.from_reranker(shared_reranker, top_n=3, score_threshold=scores[1]).compress_documents(
        make_docs(), QUERY
    )
    assert [d.metadata["raw_score"] for d in out] == scores[:2]  # the threshold cut first
    out = CoReRerank.from_reranker(shared_reranker, top_n=1, score_threshold=scores[3]).compress_documents(
        make_docs(), QUERY
    )
    assert [d.metadata["raw_score"] for d in out] == scores[:1]  # then top_n


def test_dict_documents_keep_their_title_as_the_core_does(shared_reranker):
    docs = [
        {"title": "France", "text": "Its capital city is on the Seine."},
        {"title": "Spain", "text": "Its capital city is in the middle of the country."},
        {"text": DOCS[3]},
    ]
    compressor = CoReRerank.from_reranker(shared_reranker, top_n=None)
    got = compressor.rerank(docs, QUERY)
    expected = shared_reranker.rerank(QUERY, docs)
    assert got == [{"index": r.index, "relevance_score": r.relevance_score, "raw_score": r.score} for r in expected]
    titled = shared_reranker.score(QUERY, ["France Its capital city is on the Seine."])
    untitled = shared_reranker.score(QUERY, ["Its capital city is on the Seine."])
    assert compressor.rerank(docs[:1], QUERY)[0]["raw_score"] == titled[0] != untitled[0]


def test_heads_accept_a_head_config(smollm2_dir):
    qr = HeadConfig.load("smollm2-135m-instruct-qr")
    compressor = CoReRerank(heads=qr, device="cpu", dtype="float32", top_n=None)
    assert compressor.reranker.heads == qr and compressor.reranker.method == "qr"
    assert compressor.reranker.model.config.num_hidden_layers == qr.deepest_layer + 1  # None: what the heads need
    got = compressor.rerank(DOCS, QUERY)
    assert [r["raw_score"] for r in got] == sorted(compressor.reranker.score(QUERY, DOCS), reverse=True)
    with pytest.raises(ValueError, match="contradicts"):
        CoReRerank(heads=qr, method="core", device="cpu")


def test_inside_contextual_compression_retriever(shared_reranker):
    pytest.importorskip("rank_bm25")
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_community.retrievers import BM25Retriever

    bm25 = BM25Retriever.from_documents(make_docs(), k=4, preprocess_func=lambda t: t.lower().replace("?", "").split())
    retriever = ContextualCompressionRetriever(
        base_compressor=CoReRerank.from_reranker(shared_reranker, top_n=2), base_retriever=bm25
    )
    candidates = bm25.invoke(QUERY)
    expected = [
        candidates[r["index"]].id for r in CoReRerank.from_reranker(shared_reranker, top_n=2).rerank(candidates, QUERY)
    ]
    out = retriever.invoke(QUERY)
    assert ids(out) == expected and all("relevance_score" in d.metadata for d in out)
    assert ids(asyncio.run(retriever.ainvoke(QUERY))) == expected


def test_concurrent_threads_and_gather_match_serial(shared_reranker):
    compressor = CoReRerank.from_reranker(shared_reranker, top_n=3)
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
