"""Haystack ranker: haystack_integrations.components.rankers.core_rerank.CoReRanker, against real haystack-ai.

Every test shares the session's one loaded model (``shared_reranker``) through ``from_reranker``.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.core.errors import DeserializationError
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack_integrations.components.rankers.core_rerank import CoReRanker
from integration_data import DOCS, QUERY, CountingReranker, with_max_doc_words

from core_rerank import CoReReranker, HeadConfig, adapters

pytestmark = [pytest.mark.real_model, pytest.mark.usefixtures("one_torch_thread")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BM25_TOP_K = 5
SHORT_WORDS = 40  # NQ passages cut to 40 words: one prompt window, a few seconds a call on 2 CPU cores


def documents(texts=DOCS):
    return [
        Document(id=f"d{i}", content=t, meta={"source": f"doc{i}"}, score=1.0 - i / 10) for i, t in enumerate(texts)
    ]


@pytest.fixture(scope="module")
def short_reranker(shared_reranker):
    """The session's loaded model (no second load) with passages cut to SHORT_WORDS words."""
    return with_max_doc_words(shared_reranker, SHORT_WORDS)


@pytest.fixture(scope="module")
def nq(short_reranker):
    """The example apps' NQ-open slice (275 Wikipedia passages) in an in-memory BM25 store, one
    question, its BM25 top-5 and the core's ranking of them (title, "\n", text: meta fields first)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from qa_common import load_corpus, load_questions
    finally:
        sys.path.remove(str(EXAMPLES))
    store = InMemoryDocumentStore()
    store.write_documents([Document(id=p["id"], content=p["text"], meta={"title": p["title"]}) for p in load_corpus()])
    question = load_questions(1)[0]["question"]
    retrieved = InMemoryBM25Retriever(document_store=store, top_k=BM25_TOP_K).run(query=question)["documents"]
    texts = [f"{d.meta['title']}\n{d.content}" for d in retrieved]
    want = short_reranker.rerank(question, texts, top_k=3)
    return store, question, retrieved, [(retrieved[r.index].id, r.score) for r in want]


def bm25_pipeline(store, ranker):
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=BM25_TOP_K))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def pipeline_input(question):
    return {"retriever": {"query": question}, "ranker": {"query": question}}


def test_bm25_pipeline_orders_like_the_core(short_reranker, nq):
    store, question, retrieved, want = nq
    ranker = CoReRanker.from_reranker(short_reranker, top_k=3, meta_fields_to_embed=["title"])
    out = bm25_pipeline(store, ranker).run(pipeline_input(question), include_outputs_from={"retriever"})
    assert out["retriever"]["documents"] == retrieved
    ranked = out["ranker"]["documents"]
    assert [(d.id, d.score) for d in ranked] == want  # the raw core score, nothing else
    assert all(type(d.score) is float for d in ranked)
    by_id = {d.id: d for d in retrieved}
    assert [d.meta for d in ranked] == [by_id[d.id].meta for d in ranked]  # no invented meta fields


def test_yaml_round_trip_reloads_the_same_settings(short_reranker, nq, monkeypatch):
    store, question, _, want = nq
    ranker = CoReRanker.from_reranker(short_reranker, top_k=3, score_threshold=-5.0, meta_fields_to_embed=["title"])
    text = bm25_pipeline(store, ranker).dumps()
    assert "haystack_integrations.components.rankers.core_rerank.ranker.CoReRanker" in text
    loaded = Pipeline.loads(text)
    again = loaded.get_component("ranker")
    assert again.to_dict() == ranker.to_dict() and loaded.dumps() == text
    params = ranker.to_dict()["init_parameters"]
    assert set(params) == {
        *adapters.LOADING_SETTINGS,
        "top_k",
        "score_threshold",
        "meta_fields_to_embed",
        "meta_data_separator",
        "relevant_spans",
        "use_first_stage_scores",
    }
    assert HeadConfig.from_dict(params["heads"]) == short_reranker.heads and isinstance(again.heads, HeadConfig)
    assert params["max_doc_words"] == SHORT_WORDS

    calls = []

    def fake_from_pretrained(model_name_or_path, **kwargs):
        calls.append((model_name_or_path, kwargs))
        return short_reranker

    monkeypatch.setattr(CoReReranker, "from_pretrained", staticmethod(fake_from_pretrained))
    assert [(d.id, d.score) for d in loaded.run(pipeline_input(question))["ranker"]["documents"]] == want
    (model, kwargs), *more = calls
    assert not more and model == short_reranker.model_id  # warmed up once, from the YAML's settings
    described = {k: v for k, v in short_reranker.settings().items() if k in adapters.LOADING_SETTINGS}
    assert {"model": model, **kwargs} == described


def test_run_async_and_async_pipeline_match_run(shared_reranker, expected_order, short_reranker, nq):
    ranker = CoReRanker.from_reranker(shared_reranker, top_k=None)
    sync = ranker.run(query=QUERY, documents=documents())["documents"]
    async_ = asyncio.run(ranker.run_async(query=QUERY, documents=documents()))["documents"]
    assert [(d.id, d.score) for d in async_] == [(d.id, d.score) for d in sync]
    assert [d.id for d in sync] == [f"d{i}" for i in expected_order]

    store, question, _, want = nq
    pipeline = bm25_pipeline(store, CoReRanker.from_reranker(short_reranker, top_k=3, meta_fields_to_embed=["title"]))
    out = asyncio.run(pipeline.run_async(pipeline_input(question)))
    assert [(d.id, d.score) for d in out["ranker"]["documents"]] == want


def test_input_documents_are_not_mutated(shared_reranker):
    docs = documents()
    before = copy.deepcopy(docs)
    out = CoReRanker.from_reranker(shared_reranker, top_k=None).run(query=QUERY, documents=docs)["documents"]
    assert docs == before  # scores (the retriever's), meta, content untouched
    assert not {id(d) for d in out} & {id(d) for d in docs}
    by_id = {d.id: d for d in docs}
    assert all(d.content == by_id[d.id].content and d.meta == by_id[d.id].meta for d in out)


def test_top_k_validation_and_defaults(shared_reranker, expected_order):
    with pytest.raises(ValueError, match="top_k"):
        CoReRanker(top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        CoReRanker(top_k=-2)
    ranker = CoReRanker.from_reranker(shared_reranker)
    assert ranker.top_k == 10 and ranker.score_threshold is None  # as Haystack's model rankers
    with pytest.raises(ValueError, match="top_k"):
        ranker.run(query=QUERY, documents=documents(), top_k=0)
    assert [d.id for d in ranker.run(query=QUERY, documents=documents(), top_k=2)["documents"]] == [
        f"d{i}" for i in expected_order[:2]
    ]
    every = CoReRanker.from_reranker(shared_reranker, top_k=None).run(query=QUERY, documents=documents(), top_k=None)
    assert len(every["documents"]) == len(DOCS)  # top_k=None at run time: the component's (None: all)


def test_score_threshold_at_init_and_at_run(shared_reranker):
    ranker = CoReRanker.from_reranker(shared_reranker, top_k=None)
    scores = [d.score for d in ranker.run(query=QUERY, documents=documents())["documents"]]
    ranker.score_threshold = scores[1]
    out = ranker.run(query=QUERY, documents=documents(), score_threshold=scores[3], top_k=3)["documents"]
    assert [d.score for d in out] == scores[:3]  # the run's threshold and top_k win
    assert [d.score for d in ranker.run(query=QUERY, documents=documents())["documents"]] == scores[:2]


def test_empty_list_and_documents_without_content(shared_reranker):
    counting = CountingReranker(shared_reranker)
    ranker = CoReRanker.from_reranker(counting, top_k=None)
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    assert counting.calls == []  # the model is not run
    docs = [*documents(DOCS[:2]), Document(id="none", content=None), Document(id="blank", content="  ")]
    out = ranker.run(query=QUERY, documents=docs)["documents"]
    assert [d.id for d in out[-2:]] == ["none", "blank"] and {d.score for d in out[-2:]} == {float("-inf")}
    assert len(out) == 4  # kept and ranked last, never lost
    assert [d.id for d in ranker.run(query=QUERY, documents=docs, score_threshold=-1e9)["documents"]] == [
        d.id for d in out[:2]
    ]


def test_from_reranker_describes_it_and_refuses_loading_settings(shared_reranker):
    ranker = CoReRanker.from_reranker(shared_reranker, top_k=4)
    assert ranker.reranker is shared_reranker and ranker.top_k == 4
    assert ranker.model == shared_reranker.model_id and ranker.heads == shared_reranker.heads
    assert ranker.device == "cpu" and ranker.dtype == "float32" and ranker.num_layers_to_keep == 30
    with pytest.raises(TypeError, match="method belong to the reranker"):
        CoReRanker.from_reranker(shared_reranker, method="qr")
    with pytest.raises(TypeError, match="from_reranker"):
        CoReRanker(reranker=shared_reranker)
    with pytest.raises(TypeError, match="unexpected"):
        CoReRanker(top_n=3)
    with pytest.raises(DeserializationError, match="top_n"):
        CoReRanker.from_dict({"type": ranker.to_dict()["type"], "init_parameters": {"top_n": 3}})
    with pytest.raises(TypeError, match="cannot be serialized"):
        CoReRanker(heads=object()).to_dict()


def test_loads_once_from_its_settings_including_new_loading_settings(shared_reranker, monkeypatch):
    """Built from settings: nothing loads before warm_up, which loads once; a loading setting
    added to ``adapters.LOADING_SETTINGS`` later (here ``max_length``) is accepted, passed on and serialized."""
    calls = []

    def fake_from_pretrained(model_name_or_path, **kwargs):
        calls.append((model_name_or_path, kwargs))
        return shared_reranker

    monkeypatch.setattr(CoReReranker, "from_pretrained", staticmethod(fake_from_pretrained))
    settings = tuple(adapters.LOADING_SETTINGS)
    monkeypatch.setattr(adapters, "LOADING_SETTINGS", settings + ("max_length",) * ("max_length" not in settings))
    ranker = CoReRanker(model="smollm2-135m-instruct", device="cpu", max_doc_words=200, max_length=2048, top_k=2)
    assert calls == [] and ranker.max_length == 2048
    assert CoReRanker(device="cpu").max_length is None  # from_pretrained's default
    for _ in range(2):
        ranker.run(query=QUERY, documents=documents(DOCS[:2]))
    ((model, kwargs),) = calls
    assert model == "smollm2-135m-instruct" and kwargs["max_doc_words"] == 200 and kwargs["max_length"] == 2048
    assert ranker.to_dict()["init_parameters"]["max_length"] == 2048
    assert CoReRanker.from_dict(ranker.to_dict()).max_length == 2048


def test_missing_framework_names_the_extra():
    code = (
        "import sys; sys.modules['haystack'] = None\n"
        "try:\n    import haystack_integrations.components.rankers.core_rerank\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert 'pip install "core-rerank[haystack]"' in out
