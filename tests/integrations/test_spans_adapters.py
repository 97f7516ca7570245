"""Evidence spans through every adapter: LangChain (metadata, or page_content cut to the spans),
LlamaIndex (metadata, or node text replaced), Haystack (Document.meta) and PyTerrier (a column).
Offsets are checked against each adapter's own text, and against the core's spans."""

from __future__ import annotations

import pytest

from core_rerank.spans import join_spans

pytestmark = pytest.mark.real_model

QUERY = "What is the capital of France?"
TEXTS = [
    "Berlin is the capital of Germany. It has many museums and a large zoo.",
    "France is a country in Europe. The capital of France is Paris. Wine is made in Bordeaux.",
    "Bananas are rich in potassium. They grow in tropical regions.",
]
SETTINGS = {"threshold": 0.0, "max_spans": 2}


@pytest.fixture(scope="module")
def core_spans(shared_reranker, one_torch_thread):
    """The core's spans per input index, for TEXTS."""
    return {r.index: r.relevant_spans for r in shared_reranker.rerank(QUERY, TEXTS, relevant_spans=SETTINGS)}


def assert_spans_in(text, spans, want=None):
    assert spans and len(spans) <= 2
    for s in spans:
        assert 0 <= s["start"] < s["end"] <= len(text)
        assert text[s["start"] : s["end"]].strip() == text[s["start"] : s["end"]] != ""
    assert [s["score"] for s in spans] == sorted((s["score"] for s in spans), reverse=True)
    if want is not None:
        assert [(s["start"], s["end"]) for s in spans] == [(s["start"], s["end"]) for s in want]


def test_langchain_metadata_and_cut_to_spans(shared_reranker, core_spans):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from langchain_core_rerank import CoReRerank

    docs = [Document(page_content=t, metadata={"n": i}) for i, t in enumerate(TEXTS)]
    plain = CoReRerank.from_reranker(shared_reranker, top_n=None).compress_documents(docs, QUERY)
    assert all("relevant_spans" not in d.metadata for d in plain)
    marked = CoReRerank.from_reranker(shared_reranker, top_n=None, relevant_spans=SETTINGS).compress_documents(
        docs, QUERY
    )
    for doc in marked:
        assert doc.page_content == TEXTS[doc.metadata["n"]]
        assert_spans_in(doc.page_content, doc.metadata["relevant_spans"], core_spans[doc.metadata["n"]])
    cut = CoReRerank.from_reranker(shared_reranker, top_n=2, relevant_spans={"max_spans": 1}, cut_to_spans=True)
    kept = cut.compress_documents(docs, QUERY)
    assert [d.metadata["n"] for d in kept] == [d.metadata["n"] for d in marked][:2]
    for doc in kept:
        full = doc.metadata["full_text"]
        assert full == TEXTS[doc.metadata["n"]] and len(doc.page_content) < len(full)
        assert doc.page_content == join_spans(full, doc.metadata["relevant_spans"])
        assert_spans_in(full, doc.metadata["relevant_spans"])
    assert docs[0].page_content == TEXTS[0] and "full_text" not in docs[0].metadata  # inputs untouched


def test_llamaindex_metadata_and_replaced_text(shared_reranker, core_spans):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
    from llama_index.postprocessor.core_rerank import CoReRerank

    nodes = [NodeWithScore(node=TextNode(text=t, metadata={"topic": "geo"}, id_=f"n{i}")) for i, t in enumerate(TEXTS)]
    bundle = QueryBundle(QUERY)
    marked = CoReRerank.from_reranker(
        shared_reranker, top_n=3, relevant_spans=SETTINGS, metadata_mode=MetadataMode.NONE
    ).postprocess_nodes(nodes, bundle)
    for n in marked:
        index = int(n.node.id_[1:])
        assert n.node.text == TEXTS[index]
        assert_spans_in(n.node.text, n.node.metadata["relevant_spans"], core_spans[index])
        assert "relevant_spans" not in n.node.get_content(metadata_mode=MetadataMode.LLM)
    # metadata in the ranked text (EMBED mode): offsets still index the node's own text
    embedded = CoReRerank.from_reranker(shared_reranker, top_n=3, relevant_spans=SETTINGS).postprocess_nodes(
        nodes, bundle
    )
    for n in embedded:
        assert_spans_in(n.node.text, n.node.metadata["relevant_spans"])
    replaced = CoReRerank.from_reranker(
        shared_reranker, top_n=2, relevant_spans={"max_spans": 1}, replace_text_with_spans=True
    ).postprocess_nodes(nodes, bundle)
    for n in replaced:
        full = n.node.metadata["full_text"]
        assert full == TEXTS[int(n.node.id_[1:])]
        assert n.node.text == join_spans(full, n.node.metadata["relevant_spans"]) and n.node.text != full
        assert full not in n.node.get_content(metadata_mode=MetadataMode.LLM)
    assert nodes[0].node.text == TEXTS[0] and "relevant_spans" not in nodes[0].node.metadata


def test_haystack_meta(shared_reranker, core_spans):
    pytest.importorskip("haystack")
    from haystack import Document
    from haystack_integrations.components.rankers.core_rerank import CoReRanker

    docs = [Document(content=t, meta={"title": f"T{i}", "n": i}) for i, t in enumerate(TEXTS)]
    ranker = CoReRanker.from_reranker(shared_reranker, top_k=3, relevant_spans=SETTINGS)
    assert CoReRanker.from_dict(ranker.to_dict()).relevant_spans == SETTINGS
    for doc in ranker.run(query=QUERY, documents=docs)["documents"]:
        assert_spans_in(doc.content, doc.meta["relevant_spans"], core_spans[doc.meta["n"]])
    embedded = CoReRanker.from_reranker(shared_reranker, relevant_spans=SETTINGS, meta_fields_to_embed=["title"])
    for doc in embedded.run(query=QUERY, documents=docs)["documents"]:
        assert_spans_in(doc.content, doc.meta["relevant_spans"])  # offsets into content, not "T0\n..."
    assert "relevant_spans" not in docs[0].meta


def test_pyterrier_column(shared_reranker, core_spans):
    pytest.importorskip("pyterrier")
    import pandas as pd

    from pyterrier_core_rerank import CoReReRanker

    frame = pd.DataFrame(
        {"qid": "q1", "query": QUERY, "docno": [f"d{i}" for i in range(3)], "text": TEXTS, "title": ["A", "B", "C"]}
    )
    plain = CoReReRanker.from_reranker(shared_reranker).transform(frame)
    assert "relevant_spans" not in plain.columns
    out = CoReReRanker.from_reranker(shared_reranker, relevant_spans=SETTINGS).transform(frame)
    for _, row in out.iterrows():
        assert_spans_in(row["text"], row["relevant_spans"], core_spans[int(row["docno"][1:])])
    titled = CoReReRanker.from_reranker(shared_reranker, relevant_spans=SETTINGS, title_field="title")
    for _, row in titled.transform(frame).iterrows():
        assert_spans_in(row["text"], row["relevant_spans"])  # offsets into the text column, not title + text
