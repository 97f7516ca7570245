"""LlamaIndex adapter: llama_index.postprocessor.core_rerank.CoReRerank, against real llama-index-core."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("llama_index.core")

from integration_data import DOCS, QUERIES, QUERY, CountingReranker
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.core_rerank import CoReRerank

from core_rerank import HeadConfig

pytestmark = pytest.mark.real_model


def make_nodes(texts=DOCS):
    return [
        NodeWithScore(
            node=TextNode(
                id_=f"n{i}", text=t, metadata={"source": f"doc{i}"}, excluded_embed_metadata_keys=["source"]
            ),  # reranked text == t
            score=1.0 - i / 10,
        )
        for i, t in enumerate(texts)
    ]


class Recorder(BaseEventHandler):
    events: list = []  # noqa: RUF012 - a pydantic field, copied per instance

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event, **kwargs):
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def recorder():
    handler = Recorder(events=[])
    root = get_dispatcher()
    root.add_event_handler(handler)
    yield handler
    root.event_handlers.remove(handler)


def ids(nodes):
    return [n.node.node_id for n in nodes]


def test_is_a_node_postprocessor():
    assert BaseNodePostprocessor in CoReRerank.__mro__
    assert CoReRerank.class_name() == "CoReRerank"


def test_to_dict_has_every_public_setting(shared_reranker):
    data = CoReRerank.from_reranker(shared_reranker, top_n=2, score_threshold=0.5).to_dict()
    assert set(data) == {
        "model",
        "heads",
        "method",
        "top_n",
        "keep_retrieval_score",
        "use_first_stage_scores",
        "metadata_mode",
        "device",
        "dtype",
        "num_layers_to_keep",
        "max_doc_words",
        "max_length",
        "window_tokens",
        "document_order",
        "forward",
        "score_threshold",
        "relevant_spans",
        "replace_text_with_spans",
        "class_name",
    }
    assert data["class_name"] == "CoReRerank"
    assert data["top_n"] == 2 and data["score_threshold"] == 0.5
    assert data["method"] == "core" and data["device"] == "cpu" and data["num_layers_to_keep"] == 30
    assert data["model"] == shared_reranker.model_id and HeadConfig(**data["heads"]) == shared_reranker.heads
    assert data["window_tokens"] == shared_reranker.window_tokens == 600  # the SmolLM2 preset's windows


def test_top_n_defaults_to_two_like_llamaindex_rerankers(shared_reranker, expected_order):
    post = CoReRerank.from_reranker(shared_reranker)
    assert post.top_n == 2  # SentenceTransformerRerank and CohereRerank default to top_n=2
    assert ids(post.postprocess_nodes(make_nodes(), query_str=QUERY)) == [f"n{i}" for i in expected_order[:2]]


def test_reranks_like_the_core(shared_reranker, expected_order):
    post = CoReRerank.from_reranker(shared_reranker, top_n=3)
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert ids(out) == [f"n{i}" for i in expected_order[:3]]
    scores = [n.score for n in out]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    assert shared_reranker.score(QUERY, DOCS)[expected_order[0]] == scores[0]


def test_sync_and_async_agree(shared_reranker):
    post = CoReRerank.from_reranker(shared_reranker, top_n=None)
    nodes = make_nodes()
    sync = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    async_ = asyncio.run(post.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY)))
    assert ids(sync) == ids(async_) and [n.score for n in sync] == [n.score for n in async_]


def test_events_in_order_and_callback_pair(shared_reranker, recorder):
    debug = LlamaDebugHandler()
    post = CoReRerank.from_reranker(shared_reranker, top_n=None, callback_manager=CallbackManager([debug]))
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankEndEvent]
    start, end = recorder.events
    assert start.top_n == len(DOCS)  # an int even though top_n is None
    assert start.model_name == post.model and start.query.query_str == QUERY
    assert [n.node.node_id for n in end.nodes] == ids(out)
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1 and len(pairs[0]) == 2


def test_empty_list_emits_paired_events_and_skips_the_model(shared_reranker, recorder):
    counting = CountingReranker(shared_reranker)
    post = CoReRerank.from_reranker(counting, top_n=None)
    assert post.postprocess_nodes([], query_str=QUERY) == []
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankEndEvent]
    assert recorder.events[0].top_n == 0 and recorder.events[1].nodes == []
    assert counting.calls == []


def test_missing_query(shared_reranker, recorder):
    post = CoReRerank.from_reranker(shared_reranker)
    with pytest.raises(ValueError, match=r"Missing query bundle in extra info\."):
        post.postprocess_nodes(make_nodes())
    assert recorder.events == []


def test_callers_nodes_untouched(shared_reranker):
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    post = CoReRerank.from_reranker(shared_reranker, top_n=None, keep_retrieval_score=True)
    out = post.postprocess_nodes(nodes, query_str=QUERY)
    assert [(n.node.node_id, n.score, n.node.metadata) for n in nodes] == [
        (n.node.node_id, n.score, n.node.metadata) for n in before
    ]
    assert not {id(n) for n in out} & {id(n) for n in nodes}
    retrieval = {n.node.node_id: n.score for n in nodes}
    for n in out:
        assert n.node.metadata["retrieval_score"] == retrieval[n.node.node_id]
        assert n.node.metadata["source"] == f"doc{n.node.node_id[1:]}"


def test_top_n_none_returns_all_sorted_and_empty_text_last(shared_reranker):
    texts = DOCS[:3] + [""]
    post = CoReRerank.from_reranker(shared_reranker, top_n=None)
    out = post.postprocess_nodes(make_nodes(texts), query_str=QUERY)
    assert len(out) == 4 and out[-1].node.node_id == "n3" and out[-1].score == float("-inf")
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)


def test_top_n_zero_and_limits(shared_reranker):
    assert CoReRerank.from_reranker(shared_reranker, top_n=0).postprocess_nodes(make_nodes(), query_str=QUERY) == []
    with pytest.raises(ValueError):
        CoReRerank.from_reranker(shared_reranker, top_n=-1)


def test_score_threshold(shared_reranker):
    scores = sorted(shared_reranker.score(QUERY, DOCS), reverse=True)
    threshold = scores[2]
    post = CoReRerank.from_reranker(shared_reranker, top_n=None, score_threshold=threshold)
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert len(out) == 3 and all(n.score >= threshold for n in out)


def test_score_threshold_and_top_n_go_to_the_core_rerank(shared_reranker):
    counting = CountingReranker(shared_reranker)
    scores = sorted(shared_reranker.score(QUERY, DOCS), reverse=True)
    out = CoReRerank.from_reranker(counting, top_n=2, score_threshold=scores[3]).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    assert [n.score for n in out] == scores[:2]
    assert counting.calls == [(QUERY, DOCS, {"top_k": 2, "score_threshold": scores[3]})]


def test_from_reranker_describes_it_and_refuses_loading_settings(shared_reranker):
    post = CoReRerank.from_reranker(shared_reranker, top_n=4, keep_retrieval_score=True)
    assert post.reranker is shared_reranker and post.top_n == 4 and post.keep_retrieval_score
    assert post.model == shared_reranker.model_id and post.heads == shared_reranker.heads
    assert post.method == "core" and post.dtype == "float32" and post.max_doc_words == shared_reranker.max_doc_words
    with pytest.raises(TypeError, match="device, method belong to the reranker"):
        CoReRerank.from_reranker(shared_reranker, method="qr", device="cpu")
    with pytest.raises(TypeError, match="from_reranker"):
        CoReRerank(reranker=shared_reranker)
    with pytest.raises(TypeError, match="CoReReranker"):
        CoReRerank.from_reranker(object())


def test_heads_accept_a_head_config(smollm2_dir):
    qr = HeadConfig.load("smollm2-135m-instruct-qr")
    post = CoReRerank(heads=qr, device="cpu", dtype="float32", top_n=None)
    assert post.reranker.heads == qr and post.reranker.method == "qr"
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert [n.score for n in out] == sorted(post.reranker.score(QUERY, DOCS), reverse=True)
    assert post.to_dict()["heads"]["method"] == "qr"
    with pytest.raises(ValueError, match="contradicts"):
        CoReRerank(heads=qr, method="core", device="cpu")


def test_inside_a_real_query_engine(shared_reranker, expected_order):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    index = VectorStoreIndex([n.node for n in make_nodes()], embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=8),
        similarity_top_k=len(DOCS),
        node_postprocessors=[CoReRerank.from_reranker(shared_reranker, top_n=2)],
    )
    response = engine.query(QUERY)
    assert ids(response.source_nodes) == [f"n{i}" for i in expected_order[:2]]
    response = asyncio.run(engine.aquery(QUERY))
    assert ids(response.source_nodes) == [f"n{i}" for i in expected_order[:2]]


def test_concurrent_threads_and_gather_match_serial(shared_reranker):
    post = CoReRerank.from_reranker(shared_reranker, top_n=3)
    nodes = make_nodes(DOCS[:4])
    serial = [ids(post.postprocess_nodes(nodes, query_str=q)) for q in QUERIES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda q: ids(post.postprocess_nodes(nodes, query_str=q)), QUERIES))
    assert threaded == serial

    async def gather():
        results = await asyncio.gather(*(post.apostprocess_nodes(nodes, query_str=q) for q in QUERIES))
        return [ids(r) for r in results]

    assert asyncio.run(gather()) == serial


def test_missing_framework_names_the_extra():
    code = (
        "import sys; sys.modules['llama_index.core'] = None\n"
        "try:\n    import llama_index.postprocessor.core_rerank\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert 'pip install "core-rerank[llamaindex]"' in out
