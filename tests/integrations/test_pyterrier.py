"""PyTerrier transformer: pyterrier_core_rerank.CoReReRanker, against real pyterrier (no Java).

The model is the session's one loaded SmolLM2 (``shared_reranker``), wrapped once per module with
short passages so that a SciFact query is one prompt window; ``core-rerank eval`` runs
in-process on the same candidates and must report the same nDCG@10 as ``pt.Experiment``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyterrier")

import pandas as pd
import pyterrier as pt
from integration_data import DOCS, QUERY, with_max_doc_words

from core_rerank import CoReReranker, adapters
from core_rerank.datasets import load_eval_data
from core_rerank.evaluation import EvalSettings, passes, run_evaluation
from pyterrier_core_rerank import CoReReRanker

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact_slice"
QUERIES = 3  # the slice's first three judged queries
DEPTH = 8
WORDS = 25  # abstracts cut to 25 words: the candidates fit one short prompt window


class SliceText:
    """What ``pt.text.get_text`` needs (``text_loader``): adds ``title`` and ``text`` from the slice's corpus."""

    def __init__(self, corpus):
        self.corpus = corpus

    def text_loader(self, fields="*", *, verbose=False, **kwargs):
        def add_text(frame):
            records = [self.corpus.get(d, {"title": "", "text": ""}) for d in frame["docno"]]
            return frame.assign(title=[r["title"] for r in records], text=[r["text"] for r in records])

        return pt.apply.generic(add_text)


@pytest.fixture(scope="module")
def short_reranker(shared_reranker):
    """The session's loaded model (no second load), CoRe heads, abstracts cut to WORDS words."""
    return with_max_doc_words(shared_reranker, WORDS)


@pytest.fixture(scope="module")
def scifact():
    """The slice's first QUERIES judged queries as PyTerrier frames: topics, qrels, BM25 run (top 20)."""
    data = load_eval_data(SLICE)
    qids = list(data.queries)[:QUERIES]
    topics = pd.DataFrame({"qid": qids, "query": [data.queries[q] for q in qids]})
    qrels = pd.DataFrame(
        [(q, d, label) for q in qids for d, label in data.qrels[q].items()],
        columns=["qid", "docno", "label"],
    )
    rows = [(q, d, float(20 - rank), rank) for q in qids for rank, d in enumerate(data.candidates(q, 20))]
    run = pd.DataFrame(rows, columns=["qid", "docno", "score", "rank"])
    return data, topics, qrels, run


def reranking_pipeline(reranker, data, run):
    bm25 = pt.Transformer.from_df(run)  # a precomputed first stage: no Java, no index
    return (bm25 % DEPTH) >> pt.text.get_text(SliceText(data.corpus), ["title", "text"]) >> reranker


def test_experiment_ndcg_equals_core_rerank_eval(short_reranker, scifact, tmp_path, monkeypatch):
    data, topics, qrels, run = scifact
    reranker = CoReReRanker.from_reranker(short_reranker, title_field="title")
    table = pt.Experiment(
        [pt.Transformer.from_df(run), reranking_pipeline(reranker, data, run)],
        topics,
        qrels,
        [pt.measures.nDCG @ 10],
        names=["BM25", "CoRe-R"],
        baseline=0,
    )

    built = []

    def build_reranker(settings, spec):  # the eval's own entry, served by the module's model
        built.append((settings, spec))
        return short_reranker

    monkeypatch.setattr(passes, "build_reranker", build_reranker)
    results = run_evaluation(
        EvalSettings(
            data_dir=str(SLICE),
            depth=DEPTH,
            max_doc_words=WORDS,
            device="cpu",
            dtype="float32",
            methods=("first-stage", "core"),
            max_queries=QUERIES,
            progress=False,
        ),
        out=tmp_path / "eval.json",
        log=lambda message: None,
    )
    ((settings, spec),) = built  # only CoRe-R needs a model
    assert spec.method == "core" and spec.heads == short_reranker.heads and settings.max_doc_words == WORDS
    entries = results["entries"]
    for name, label in (("CoRe-R", "core"), ("BM25", "first-stage")):
        per_query = [record["metrics"]["ndcg@10"] for record in entries[label]["per_query"].values()]
        assert len(per_query) == len(topics)
        mean = float(table.set_index("name").loc[name, "nDCG@10"])
        assert mean == pytest.approx(sum(per_query) / len(per_query), abs=1e-6)  # eval rounds each to 6 places
        assert mean == pytest.approx(entries[label]["summary"]["ndcg@10"], abs=5e-6)  # and the mean to 5
    assert {"nDCG@10 +", "nDCG@10 -", "nDCG@10 p-value"} <= set(table.columns)  # baseline=0: a t-test


def test_rows_scores_ranks_and_cut_off(short_reranker, scifact):
    data, topics, _, run = scifact
    reranker = CoReReRanker.from_reranker(short_reranker, title_field="title")
    pipeline = reranking_pipeline(reranker, data, run)
    one = topics.iloc[:1]
    out = pipeline(one)
    qid, query = one["qid"].iloc[0], one["query"].iloc[0]
    candidates = data.candidates(qid, DEPTH)
    want = short_reranker.rerank(query, [data.corpus[d] for d in candidates])
    assert out["docno"].tolist() == [candidates[r.index] for r in want]
    assert out["score"].tolist() == [r.score for r in want]  # the raw core score
    assert out["rank"].tolist() == list(range(DEPTH))  # 0-based, as pyterrier.model.add_ranks
    assert {"qid", "query", "docno", "title", "text", "score", "rank"} <= set(out.columns)
    cut = (pipeline % 3)(one)
    assert cut["docno"].tolist() == out["docno"].tolist()[:3] and cut["rank"].tolist() == [0, 1, 2]


def test_several_queries_each_in_one_listwise_call(shared_reranker, expected_order):
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(shared_reranker, name)

        def rerank(self, query, documents, **kwargs):
            calls.append((query, list(documents), kwargs))
            return shared_reranker.rerank(query, documents, **kwargs)

    frame = pd.DataFrame(
        {
            "qid": ["q2"] * 2 + ["q1"] * len(DOCS),
            "query": ["Which fruit is rich in potassium?"] * 2 + [QUERY] * len(DOCS),
            "docno": ["a", "b"] + [f"d{i}" for i in range(len(DOCS))],
            "text": [DOCS[3], ""] + DOCS,
            "score": 0.0,
            "rank": 0,
        }
    )
    out = CoReReRanker.from_reranker(Counting())(frame)
    assert [c[0] for c in calls] == ["Which fruit is rich in potassium?", QUERY]
    assert calls[1][1] == DOCS and calls[1][2] == {}
    assert out["qid"].tolist() == ["q1"] * len(DOCS) + ["q2"] * 2  # sorted by qid, then rank
    assert out["docno"].tolist()[: len(DOCS)] == [f"d{i}" for i in expected_order]
    assert out["docno"].tolist()[-1] == "b" and out["score"].tolist()[-1] == float("-inf")  # no text: last
    assert out.groupby("qid")["rank"].apply(list).to_dict() == {"q1": list(range(len(DOCS))), "q2": [0, 1]}
    assert len(frame) == len(out) and frame["score"].tolist() == [0.0] * len(frame)  # input untouched


def test_missing_columns_and_empty_input(shared_reranker):
    reranker = CoReReRanker.from_reranker(shared_reranker)
    frame = pd.DataFrame({"qid": ["1"], "query": [QUERY], "docno": ["d0"]})
    with pytest.raises(ValueError, match=r"missing: \['text'\]"):
        reranker(frame)
    with pytest.raises(ValueError, match="missing: \\['body'\\]"):
        CoReReRanker.from_reranker(shared_reranker, text_field="body")(frame.assign(text=DOCS[0]))
    empty = reranker(pd.DataFrame(columns=["qid", "query", "docno", "text"]))
    assert len(empty) == 0 and list(empty.columns) == ["qid", "query", "docno", "text", "score", "rank"]
    assert reranker.transform_outputs(["qid", "query", "docno", "text", "score"]) == [
        "qid",
        "query",
        "docno",
        "text",
        "score",
        "rank",
    ]


def test_from_reranker_describes_it_and_refuses_loading_settings(shared_reranker, monkeypatch):
    reranker = CoReReRanker.from_reranker(shared_reranker, text_field="body")
    assert reranker.reranker is shared_reranker and reranker.text_field == "body"
    assert reranker.model == shared_reranker.model_id and reranker.heads == shared_reranker.heads
    assert str(reranker) == "CoReReRanker(model='smollm2-135m-instruct', method='core')"
    with pytest.raises(TypeError, match="method belong to the reranker"):
        CoReReRanker.from_reranker(shared_reranker, method="qr")
    with pytest.raises(TypeError, match="unexpected"):
        CoReReRanker(top_k=3)

    calls = []

    def fake_from_pretrained(model_name_or_path, **kwargs):
        calls.append((model_name_or_path, kwargs))
        return shared_reranker

    monkeypatch.setattr(CoReReranker, "from_pretrained", staticmethod(fake_from_pretrained))
    built = CoReReRanker("smollm2-135m-instruct", method="core", device="cpu", max_doc_words=50)
    ((model, kwargs),) = calls  # loaded once, in the constructor, with every loading setting
    assert model == "smollm2-135m-instruct" and set(kwargs) == set(adapters.LOADING_SETTINGS) - {"model"}
    assert kwargs["max_doc_words"] == 50 and built.reranker is shared_reranker


def test_missing_framework_names_the_extra():
    code = (
        "import sys; sys.modules['pyterrier'] = None\n"
        "try:\n    import pyterrier_core_rerank\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert 'pip install "core-rerank[pyterrier]"' in out
