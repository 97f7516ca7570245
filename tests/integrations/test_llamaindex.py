"""LlamaIndex adapter: llama_index.postprocessor.core_rerank.CoReRerank, against real llama-index-core."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from llama_index.postprocessor.core_rerank import CoReRerank  # noqa: E402

from integration_data import DOCS, QUERIES, QUERY, CountingReranker  # noqa: E402

pytestmark = pytest.mark.real_model


def make_nodes(texts=DOCS):
    return [
        NodeWithScore(
            node=TextNode(id_=f"n{i}", text=t, metadata={"source": f"doc{i}"},
                          excluded_embed_metadata_keys=["source"]),  # reranked text == t
            score=1.0 - i / 10,
        )
        for i, t in enumerate(texts)
    ]


class Recorder(BaseEventHandler):
    events: list = []

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
    data = CoReRerank(reranker=shared_reranker, top_n=2, score_threshold=0.5).to_dict()
    assert set(data) == {
        "model", "heads", "method", "top_n", "keep_retrieval_score", "metadata_mode", "device",
        "dtype", "num_layers_to_keep", "max_doc_words", "score_threshold", "class_name",
    }
    assert data["class_name"] == "CoReRerank"
    assert data["top_n"] == 2 and data["score_threshold"] == 0.5
    assert data["method"] == shared_reranker.method and data["device"] == "cpu"


def test_reranks_like_the_core(shared_reranker, expected_order):
    post = CoReRerank(reranker=shared_reranker, top_n=3)
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert ids(out) == [f"n{i}" for i in expected_order[:3]]
    scores = [n.score for n in out]
    assert all(type(s) is float for s in scores) and scores == sorted(scores, reverse=True)
    assert shared_reranker.score(QUERY, DOCS)[expected_order[0]] == scores[0]


def test_sync_and_async_agree(shared_reranker):
    post = CoReRerank(reranker=shared_reranker, top_n=None)
    nodes = make_nodes()
    sync = post.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    async_ = asyncio.run(post.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERY)))
    assert ids(sync) == ids(async_) and [n.score for n in sync] == [n.score for n in async_]


def test_events_in_order_and_callback_pair(shared_reranker, recorder):
    debug = LlamaDebugHandler()
    post = CoReRerank(reranker=shared_reranker, top_n=None, callback_manager=CallbackManager([debug]))
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
    post = CoReRerank(reranker=counting, top_n=None)
    assert post.postprocess_nodes([], query_str=QUERY) == []
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankEndEvent]
    assert recorder.events[0].top_n == 0 and recorder.events[1].nodes == []
    assert counting.calls == 0


def test_missing_query(shared_reranker, recorder):
    post = CoReRerank(reranker=shared_reranker)
    with pytest.raises(ValueError, match="Missing query bundle in extra info."):
        post.postprocess_nodes(make_nodes())
    assert recorder.events == []


def test_callers_nodes_untouched(shared_reranker):
    nodes = make_nodes()
    before = copy.deepcopy(nodes)
    post = CoReRerank(reranker=shared_reranker, top_n=None, keep_retrieval_score=True)
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
    post = CoReRerank(reranker=shared_reranker, top_n=None)
    out = post.postprocess_nodes(make_nodes(texts), query_str=QUERY)
    assert len(out) == 4 and out[-1].node.node_id == "n3" and out[-1].score == float("-inf")
    assert [n.score for n in out] == sorted((n.score for n in out), reverse=True)


def test_top_n_zero_and_limits(shared_reranker):
    assert CoReRerank(reranker=shared_reranker, top_n=0).postprocess_nodes(make_nodes(), query_str=QUERY) == []
    with pytest.raises(ValueError):
        CoReRerank(reranker=shared_reranker, top_n=-1)


def test_score_threshold(shared_reranker):
    scores = sorted(shared_reranker.score(QUERY, DOCS), reverse=True)
    threshold = scores[2]
    post = CoReRerank(reranker=shared_reranker, top_n=None, score_threshold=threshold)
    out = post.postprocess_nodes(make_nodes(), query_str=QUERY)
    assert len(out) == 3 and all(n.score >= threshold for n in out)


def test_injected_reranker_settings_must_agree(shared_reranker):
    other = "qr" if shared_reranker.method != "qr" else "icr"
    with pytest.raises(ValueError, match="do not match"):
        CoReRerank(reranker=shared_reranker, method=other)
    assert CoReRerank(reranker=shared_reranker, method=shared_reranker.method).method == shared_reranker.method


def test_inside_a_real_query_engine(shared_reranker, expected_order):
    from llama_index.core import VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    index = VectorStoreIndex([n.node for n in make_nodes()], embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(
        llm=MockLLM(max_tokens=8), similarity_top_k=len(DOCS),
        node_postprocessors=[CoReRerank(reranker=shared_reranker, top_n=2)],
    )
    response = engine.query(QUERY)
    assert ids(response.source_nodes) == [f"n{i}" for i in expected_order[:2]]
    response = asyncio.run(engine.aquery(QUERY))
    assert ids(response.source_nodes) == [f"n{i}" for i in expected_order[:2]]


def test_concurrent_threads_and_gather_match_serial(shared_reranker):
    post = CoReRerank(reranker=shared_reranker, top_n=3)
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
