"""LanceDB reranker: lancedb_core_rerank.CoReReranker against a real embedded LanceDB table.

Vector, full-text and hybrid searches, sync and async, both ``return_score`` modes. The expected
order is computed here from LanceDB's own unreranked rows (for hybrid: the vector rows, then the
full-text rows not among them) and the core reranker's ``rerank`` on their texts. Vectors come
from the LanceDB example's hashing embedding (no model). The model is the session's one SmolLM2.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

pytest.importorskip("lancedb")

import lancedb
import numpy as np
import pyarrow as pa
from integration_data import DOCS, QUERY, CountingReranker
from lancedb.index import FTS

from core_rerank import CoReReranker as CoreReranker
from core_rerank.errors import InputError
from lancedb_core_rerank import CoReReranker

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
try:
    from lancedb_qa import hashing_embedding
finally:
    sys.path.pop(0)

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

ROWS = [*DOCS, "Lyon is a large city in France.", "The capital of Italy is Rome."]
LIMIT = 4


def vector(text: str) -> list[float]:
    return hashing_embedding([text])[0].tolist()


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return lancedb.connect(tmp_path_factory.mktemp("lancedb"))


@pytest.fixture(scope="module")
def table(db):
    rows = [{"id": i, "text": t, "body": t, "vector": vector(t)} for i, t in enumerate(ROWS)]
    tbl = db.create_table("docs", data=rows)
    tbl.create_index("text", config=FTS())
    return tbl


@pytest.fixture(scope="module")
def counting(shared_reranker):
    return CountingReranker(shared_reranker)


def searches(table):
    """The three searches, unreranked builders (each ``.rerank(r)``-able), by query type."""
    return {
        "vector": lambda: table.search(vector(QUERY)).limit(LIMIT),
        "fts": lambda: table.search(QUERY, query_type="fts").limit(LIMIT),
        "hybrid": lambda: table.search(query_type="hybrid").vector(vector(QUERY)).text(QUERY).limit(LIMIT),
    }


def rerank(builder, reranker, kind):
    return builder.rerank(reranker, query_string=QUERY) if kind == "vector" else builder.rerank(reranker)


def handed_over(table, kind) -> list[int]:
    """The ids LanceDB hands the reranker, in its order (hybrid: LanceDB's merge, vector rows first)."""
    if kind != "hybrid":
        return searches(table)[kind]().to_arrow()["id"].to_pylist()
    ids = table.search(vector(QUERY)).limit(LIMIT).to_arrow()["id"].to_pylist()
    fts = table.search(QUERY, query_type="fts").limit(LIMIT).to_arrow()["id"].to_pylist()
    return ids + [i for i in fts if i not in ids]


@pytest.mark.parametrize("kind", ["vector", "fts", "hybrid"])
def test_order_and_scores_equal_the_core_on_the_rows_lancedb_hands_over(table, shared_reranker, kind):
    ids = handed_over(table, kind)
    expected = shared_reranker.rerank(QUERY, [ROWS[i] for i in ids])
    out = rerank(searches(table)[kind](), CoReReranker(reranker=shared_reranker), kind).to_arrow()
    assert out["id"].to_pylist() == [ids[r.index] for r in expected][:LIMIT]
    assert out.schema.field("_relevance_score").type == pa.float32()
    scores = np.array([r.score for r in expected][:LIMIT], dtype=np.float32)
    assert out["_relevance_score"].to_numpy().tolist() == scores.tolist()
    assert "_distance" not in out.column_names and "_score" not in out.column_names
    if kind == "hybrid":
        assert len(ids) > LIMIT, "the legs should differ, so that the merge is tested"


@pytest.mark.parametrize(
    "kind, kept", [("vector", {"_distance"}), ("fts", {"_score"}), ("hybrid", {"_distance", "_score"})]
)
def test_return_score_all_keeps_lancedb_scores(table, shared_reranker, kind, kept):
    out = rerank(searches(table)[kind](), CoReReranker(reranker=shared_reranker, return_score="all"), kind).to_arrow()
    assert kept <= set(out.column_names)
    relevance = out["_relevance_score"].to_pylist()
    assert relevance == sorted(relevance, reverse=True)


def test_async_searches_rerank_as_the_sync_ones(db, table, shared_reranker):
    reranker = CoReReranker(reranker=shared_reranker)
    sync = {
        kind: rerank(build(), reranker, kind).to_arrow()["id"].to_pylist() for kind, build in searches(table).items()
    }

    async def run():
        atable = await (await lancedb.connect_async(db.uri)).open_table("docs")
        vec = (
            await atable.query().nearest_to(vector(QUERY)).limit(LIMIT).rerank(reranker, query_string=QUERY).to_arrow()
        )
        fts = await atable.query().nearest_to_text(QUERY).limit(LIMIT).rerank(reranker).to_arrow()
        hyb = (
            await atable.query()
            .nearest_to(vector(QUERY))
            .nearest_to_text(QUERY)
            .limit(LIMIT)
            .rerank(reranker)
            .to_arrow()
        )
        return {"vector": vec, "fts": fts, "hybrid": hyb}

    result = asyncio.run(run())
    assert {kind: t["id"].to_pylist() for kind, t in result.items()} == sync


def test_the_limit_trap_the_reranker_sees_only_limit_rows(table, counting):
    top2 = table.search(vector(QUERY)).limit(2).to_arrow()["id"].to_pylist()
    counting.calls.clear()
    out = table.search(vector(QUERY)).limit(2).rerank(CoReReranker(reranker=counting), query_string=QUERY).to_list()
    assert len(counting.calls) == 1 and len(counting.calls[0][1]) == 2
    assert sorted(r["id"] for r in out) == sorted(top2)  # a deeper, better row is never considered


def test_empty_results_come_back_empty_with_the_score_column(db, table, counting):
    reranker = CoReReranker(reranker=counting)
    counting.calls.clear()
    none = table.search("zzzzqqq", query_type="fts").limit(LIMIT).rerank(reranker).to_arrow()
    filtered = searches(table)["hybrid"]().where("id > 1000").rerank(reranker).to_arrow()
    empty = db.create_table("empty", schema=table.schema)
    nothing = empty.search(vector(QUERY)).limit(LIMIT).rerank(reranker, query_string=QUERY).to_arrow()
    for out in (none, filtered, nothing):
        assert out.num_rows == 0 and out.schema.field("_relevance_score").type == pa.float32()
    assert counting.calls == []


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(column="missing"), "no column 'missing'"),
        (dict(column="id"), "holds int64, not text"),
        (dict(max_documents=2), "more than max_documents=2"),
    ],
)
def test_bad_input_is_an_input_error_before_anything_runs(table, counting, settings, message):
    before = table.count_rows()
    counting.calls.clear()
    for kind, build in searches(table).items():
        with pytest.raises(InputError, match=message):
            rerank(build(), CoReReranker(reranker=counting, **settings), kind).to_arrow()
    assert counting.calls == [] and table.count_rows() == before


def test_the_text_column_is_configurable_and_null_text_ranks_last(shared_reranker):
    results = pa.table({"id": [0, 1, 2], "body": [DOCS[0], None, DOCS[1]], "_distance": [0.1, 0.2, 0.3]})
    out = CoReReranker(reranker=shared_reranker, column="body").rerank_vector(QUERY, results)
    expected = [r.index for r in shared_reranker.rerank(QUERY, [DOCS[0], "", DOCS[1]])]
    assert out["id"].to_pylist() == expected and expected[-1] == 1
    assert out["_relevance_score"][2].as_py() == float("-inf")
    assert out.column_names == ["id", "body", "_relevance_score"]


def test_construction_from_settings_or_from_a_loaded_reranker(shared_reranker, monkeypatch):
    wrapped = CoReReranker(reranker=shared_reranker, column="body")
    assert wrapped.reranker is shared_reranker and wrapped.model == shared_reranker.settings()["model"]
    assert CoReReranker.from_reranker(shared_reranker).reranker is shared_reranker
    with pytest.raises(InputError, match="belong to the reranker"):
        CoReReranker(reranker=shared_reranker, dtype="float32")
    with pytest.raises(TypeError, match="unexpected keyword"):
        CoReReranker(reranker=None, top_n=3)
    with pytest.raises(ValueError, match="relevance"):
        CoReReranker(reranker=shared_reranker, return_score="raw")
    calls = []
    monkeypatch.setattr(CoreReranker, "from_pretrained", staticmethod(lambda **kw: calls.append(kw) or shared_reranker))
    loaded = CoReReranker(model="smollm2-135m-instruct", device="cpu", dtype="float32", max_doc_words=50)
    assert loaded.reranker is shared_reranker and len(calls) == 1
    assert calls[0]["model_name_or_path"] == "smollm2-135m-instruct" and calls[0]["max_doc_words"] == 50
    assert str(loaded) == "CoReReranker(model='smollm2-135m-instruct', column='text')"


@pytest.mark.parametrize("kind", ["vector", "fts", "hybrid"])
def test_first_stage_scores_are_the_searchs_own(table, counting, shared_reranker, kind):
    """use_first_stage_scores: -_distance (vector), _score (full text), for hybrid the reciprocal
    rank fusion of the two legs' ranks; the rows rank as the core ranks them with those scores."""
    ids = handed_over(table, kind)
    legs = {
        "vector": table.search(vector(QUERY)).limit(LIMIT).to_arrow(),
        "fts": table.search(QUERY, query_type="fts").limit(LIMIT).to_arrow(),
    }
    if kind == "hybrid":
        fused = dict.fromkeys(ids, 0.0)
        for leg in legs.values():  # each leg comes best first
            for rank, i in enumerate(leg["id"].to_pylist(), start=1):
                fused[i] += 1.0 / (60 + rank)
        expected_first = [fused[i] for i in ids]
    else:
        column, sign = ("_distance", -1.0) if kind == "vector" else ("_score", 1.0)
        expected_first = [sign * v for v in legs[kind][column].to_pylist()]
    counting.calls.clear()
    out = rerank(searches(table)[kind](), CoReReranker(reranker=counting, use_first_stage_scores=True), kind)
    ranked_ids = out.to_arrow()["id"].to_pylist()
    assert len(counting.calls) == 1 and counting.calls[0][2]["first_stage_scores"] == pytest.approx(expected_first)
    expected = shared_reranker.rerank(QUERY, [ROWS[i] for i in ids], first_stage_scores=expected_first)
    assert ranked_ids == [ids[r.index] for r in expected][:LIMIT]
    rerank(searches(table)[kind](), CoReReranker(reranker=counting), kind).to_arrow()
    assert "first_stage_scores" not in counting.calls[-1][2]  # off by default
