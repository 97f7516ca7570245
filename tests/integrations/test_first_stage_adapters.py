"""``use_first_stage_scores`` in the five adapters, against the real frameworks and the session's
SmolLM2: off, they ask the core exactly as before (no ``first_stage_scores``); on, they hand it
the retriever's scores (``NodeWithScore.score``, ``Document.score``, the frame's ``score``, a
LangChain metadata key, LanceDB's ``_distance``/``_score``/fused hybrid ranks), so the same
candidates in another order rank the same; a document without a score keeps the heads' order
for the whole call, with a warning."""

from __future__ import annotations

import pytest
from integration_data import DOCS, QUERY, CountingReranker

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

FIRST_STAGE = [0.2, 0.9, 0.5, 0.1, 0.7, 0.3]  # one per DOCS, higher is better
SHUFFLE = [3, 5, 0, 4, 2, 1]


def shuffled(values):
    return [values[i] for i in SHUFFLE]


@pytest.fixture(scope="module")
def counting(shared_reranker):
    return CountingReranker(shared_reranker)


@pytest.fixture(scope="module")
def reference(shared_reranker):
    """text -> score of the core's own ``rerank(..., first_stage_scores=...)``."""
    return {r.text: r.score for r in shared_reranker.rerank(QUERY, DOCS, first_stage_scores=FIRST_STAGE)}


def test_the_core_ranks_the_same_candidates_the_same_with_first_stage_scores(shared_reranker, reference):
    again = shared_reranker.rerank(QUERY, shuffled(DOCS), first_stage_scores=shuffled(FIRST_STAGE))
    assert {r.text: r.score for r in again} == reference
    if shared_reranker.heads.scoring.order_by == "input":  # the preset's order: the input's, so it matters
        plain = {r.text: r.score for r in shared_reranker.rerank(QUERY, DOCS)}
        assert {r.text: r.score for r in shared_reranker.rerank(QUERY, shuffled(DOCS))} != plain


def _last_first_stage(counting):
    return counting.calls[-1][2].get("first_stage_scores")


def test_llamaindex_reads_node_with_score(counting, reference):
    pytest.importorskip("llama_index.core")
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.core_rerank import CoReRerank

    def run(texts, scores, **settings):
        nodes = [NodeWithScore(node=TextNode(text=t), score=s) for t, s in zip(texts, scores)]
        post = CoReRerank.from_reranker(counting, top_n=None, **settings)
        return {n.node.get_content(): n.score for n in post.postprocess_nodes(nodes, query_str=QUERY)}

    assert run(DOCS, FIRST_STAGE, use_first_stage_scores=True) == reference
    assert _last_first_stage(counting) == FIRST_STAGE
    assert run(shuffled(DOCS), shuffled(FIRST_STAGE), use_first_stage_scores=True) == reference
    off = run(shuffled(DOCS), shuffled(FIRST_STAGE))
    assert _last_first_stage(counting) is None  # off by default: the call of before
    assert off == {r.text: r.score for r in counting.rerank(QUERY, shuffled(DOCS))}
    with pytest.warns(UserWarning, match="1 of 6 documents have no first-stage score"):
        fallback = run(shuffled(DOCS), [None, *shuffled(FIRST_STAGE)[1:]], use_first_stage_scores=True)
    assert _last_first_stage(counting) is None and fallback == off


def test_haystack_reads_document_score_and_round_trips_the_setting(counting, reference):
    pytest.importorskip("haystack")
    from haystack import Document
    from haystack_integrations.components.rankers.core_rerank import CoReRanker

    def run(ranker, texts, scores):
        documents = [Document(content=t, score=s) for t, s in zip(texts, scores)]
        return {d.content: d.score for d in ranker.run(query=QUERY, documents=documents)["documents"]}

    ranker = CoReRanker.from_reranker(counting, top_k=None, use_first_stage_scores=True)
    assert run(ranker, shuffled(DOCS), shuffled(FIRST_STAGE)) == reference
    assert _last_first_stage(counting) == shuffled(FIRST_STAGE)
    data = ranker.to_dict()
    assert data["init_parameters"]["use_first_stage_scores"] is True
    assert CoReRanker.from_dict(data).use_first_stage_scores is True
    assert CoReRanker(model="m").use_first_stage_scores is False
    run(CoReRanker.from_reranker(counting, top_k=None), DOCS, FIRST_STAGE)
    assert _last_first_stage(counting) is None
    with pytest.warns(UserWarning, match="no first-stage score"):
        run(ranker, DOCS, [*FIRST_STAGE[:-1], None])
    assert _last_first_stage(counting) is None


def test_pyterrier_reads_the_score_column_per_query(counting, reference):
    pytest.importorskip("pyterrier")
    import numpy as np
    import pandas as pd

    from pyterrier_core_rerank import CoReReRanker

    def frame(order, scores):
        rows = [
            {"qid": qid, "query": QUERY, "docno": f"d{i}", "text": DOCS[i], "score": scores[i]}
            for qid in ("q1", "q2")
            for i in order
        ]
        return pd.DataFrame(rows)

    transformer = CoReReRanker.from_reranker(counting, use_first_stage_scores=True)
    sorted_out = transformer.transform(frame(range(len(DOCS)), FIRST_STAGE))
    shuffled_out = transformer.transform(frame(SHUFFLE, FIRST_STAGE))
    assert _last_first_stage(counting) == shuffled(FIRST_STAGE)
    for out in (sorted_out, shuffled_out):
        for _, rows in out.groupby("qid"):
            assert dict(zip(rows["text"], rows["score"])) == reference
            assert rows["docno"].tolist() == sorted_out[sorted_out["qid"] == "q1"]["docno"].tolist()
    with pytest.raises(ValueError, match="missing: \\['score'\\]"):
        transformer.transform(frame(SHUFFLE, FIRST_STAGE).drop(columns=["score"]))
    CoReReRanker.from_reranker(counting).transform(frame(SHUFFLE, FIRST_STAGE))
    assert _last_first_stage(counting) is None
    with pytest.warns(UserWarning, match="1 of 6 documents"):
        transformer.transform(frame(SHUFFLE, [np.nan, *FIRST_STAGE[1:]]))
    assert _last_first_stage(counting) is None


def test_langchain_reads_a_metadata_key(counting, reference):
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document

    from langchain_core_rerank import CoReRerank

    def run(compressor, texts, scores, key="score"):
        documents = [Document(page_content=t, metadata={key: s}) for t, s in zip(texts, scores)]
        return {d.page_content: d.metadata["raw_score"] for d in compressor.compress_documents(documents, QUERY)}

    on = CoReRerank.from_reranker(counting, top_n=None, use_first_stage_scores=True)
    assert run(on, shuffled(DOCS), shuffled(FIRST_STAGE)) == reference
    assert _last_first_stage(counting) == shuffled(FIRST_STAGE)
    keyed = CoReRerank.from_reranker(
        counting, top_n=None, use_first_stage_scores=True, first_stage_score_key="relevance_score"
    )
    assert run(keyed, DOCS, FIRST_STAGE, key="relevance_score") == reference
    run(CoReRerank.from_reranker(counting, top_n=None), DOCS, FIRST_STAGE)
    assert _last_first_stage(counting) is None
    with pytest.warns(UserWarning, match="6 of 6 documents"):
        run(on, DOCS, FIRST_STAGE, key="other")
    assert _last_first_stage(counting) is None
    with pytest.warns(UserWarning, match="1 of 2 documents"):
        on.rerank([Document(page_content=DOCS[0], metadata={"score": 1.0}), DOCS[1]], QUERY)


def test_lancedb_negates_a_distance_and_reads_a_full_text_score(counting, reference):
    pytest.importorskip("lancedb")
    import pyarrow as pa

    from lancedb_core_rerank import CoReReranker

    reranker = CoReReranker(reranker=counting, use_first_stage_scores=True)

    def run(column, values, order):
        table = pa.table({"id": list(order), "text": [DOCS[i] for i in order], column: [values[i] for i in order]})
        out = (reranker.rerank_vector if column == "_distance" else reranker.rerank_fts)(QUERY, table)
        return dict(zip((DOCS[i] for i in out["id"].to_pylist()), out["_relevance_score"].to_pylist()))

    as_float32 = {text: float(pa.scalar(score, pa.float32()).as_py()) for text, score in reference.items()}
    distances = [1.0 - s for s in FIRST_STAGE]  # lower is better: the same order as FIRST_STAGE
    assert run("_distance", distances, SHUFFLE) == as_float32
    assert _last_first_stage(counting) == pytest.approx([-d for d in shuffled(distances)])
    assert run("_score", FIRST_STAGE, SHUFFLE) == as_float32 == run("_relevance_score", FIRST_STAGE, SHUFFLE)
    assert _last_first_stage(counting) == pytest.approx(shuffled(FIRST_STAGE))
    with pytest.warns(UserWarning, match="1 of 6 documents"):
        run("_distance", [None, *distances[1:]], SHUFFLE)
    assert _last_first_stage(counting) is None
    CoReReranker(reranker=counting).rerank_vector(QUERY, pa.table({"text": DOCS, "_distance": distances}))
    assert _last_first_stage(counting) is None
