"""``CoReRerank``: a LlamaIndex ``BaseNodePostprocessor`` over ``core_rerank.CoReReranker``."""

from __future__ import annotations

from typing import Any, List, Optional, Union

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from core_rerank.adapter_settings import settings_from_reranker
from core_rerank.offline_models import DEFAULT_MODEL

dispatcher = get_dispatcher(__name__)


class CoReRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with CoRe attention heads of a local LLM (arXiv 2510.02219).

    All candidate nodes go into one prompt with the query; the attention that a few selected
    heads pay each node is its score. Scores are *relative within one call* (listwise): use
    them to order nodes, and treat ``score_threshold`` as a heuristic, not a probability.

    The model is loaded once, in the constructor. To share one loaded model with another
    reranker (e.g. the LangChain adapter) or with answer generation, build a
    ``core_rerank.CoReReranker`` yourself and pass it as ``reranker=``.

    Example::

        from llama_index.postprocessor.core_rerank import CoReRerank

        engine = index.as_query_engine(
            similarity_top_k=20,
            node_postprocessors=[CoReRerank(model="smollm2-135m-instruct", top_n=5)],
        )
    """

    model: str = Field(default=DEFAULT_MODEL, description=(
        "Model to rerank with: a registered offline name, a Hugging Face id, a local "
        "checkpoint directory or a .gguf file."))
    heads: Optional[str] = Field(default=None, description=(
        "Head preset name or head-config JSON path; None picks the preset shipped for the model."))
    method: str = Field(default="core", description="'core' (CoRe heads), 'qr' (QR heads) or 'icr' (all heads).")
    top_n: Optional[int] = Field(default=5, ge=0, description="Number of nodes to return; None returns all.")
    keep_retrieval_score: bool = Field(default=False, description=(
        "Copy each node's retrieval score into metadata['retrieval_score'] (on a copy of the node)."))
    metadata_mode: MetadataMode = Field(default=MetadataMode.EMBED, description=(
        "Which metadata is included in the text that is reranked."))
    device: Optional[str] = Field(default=None, description="Torch device; None picks cuda > mps > cpu.")
    dtype: str = Field(default="auto", description="'auto', 'bfloat16', 'float16' or 'float32'.")
    num_layers_to_keep: Optional[Union[int, str]] = Field(default="auto", description=(
        "'auto' loads only the layers the heads need; an int loads that many; None loads all "
        "(needed to share the model with text generation)."))
    max_doc_words: Optional[int] = Field(default=300, description="Each node's text is cut to this many words.")
    score_threshold: Optional[float] = Field(default=None, description=(
        "Drop nodes whose CoRe score is below this value. Scores are relative within one call."))

    _reranker: Any = PrivateAttr(default=None)

    def __init__(self, reranker: Any = None, **kwargs: Any) -> None:
        if reranker is not None:
            if not callable(getattr(reranker, "score", None)):
                raise TypeError("reranker must be a core_rerank.CoReReranker (with .score(query, documents))")
            kwargs = settings_from_reranker(reranker, kwargs)
        super().__init__(**kwargs)
        if reranker is None:
            from core_rerank import CoReReranker

            reranker = CoReReranker.from_pretrained(
                self.model, heads=self.heads, method=self.method,
                num_layers_to_keep=self.num_layers_to_keep, device=self.device,
                dtype=self.dtype, max_doc_words=self.max_doc_words,
            )
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "CoReRerank"

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (share it with other components)."""
        return self._reranker

    def _postprocess_nodes(
        self,
        nodes: List[NodeWithScore],
        query_bundle: Optional[QueryBundle] = None,
    ) -> List[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        if not query_bundle.query_str or not query_bundle.query_str.strip():
            raise ValueError("The query is empty: reranking needs a query with some text.")
        nodes = list(nodes)
        top_n = self.top_n if self.top_n is not None else len(nodes)
        dispatcher.event(
            ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model)
        )
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []

        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: top_n,
            },
        ) as event:
            scores = self._reranker.score(query_bundle.query_str, texts)
            reranked = [
                NodeWithScore(node=self._node_for(n), score=float(s)) for n, s in zip(nodes, scores)
            ]
            if self.score_threshold is not None:
                reranked = [n for n in reranked if n.score is not None and n.score >= self.score_threshold]
            # Stable sort: ties keep retrieval order; a missing score sorts last.
            reranked.sort(key=lambda n: -n.score if n.score is not None else float("inf"))
            reranked = reranked[:top_n]
            event.on_end(payload={EventPayload.NODES: reranked})

        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _node_for(self, node_with_score: NodeWithScore) -> Any:
        """The node to return: the same node, or a copy carrying the retrieval score."""
        node = node_with_score.node
        if not self.keep_retrieval_score:
            return node
        metadata = {**node.metadata, "retrieval_score": node_with_score.score}
        return node.model_copy(update={"metadata": metadata})
