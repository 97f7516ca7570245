"""``CoReRerank``: a LlamaIndex ``BaseNodePostprocessor`` over ``core_rerank.CoReReranker``."""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from core_rerank.adapters import first_stage_argument, given_reranker, handing_over, load_reranker, loaded_reranker
from core_rerank.head_config import HeadConfig
from core_rerank.spans import join_spans, spans_argument, spans_within
from core_rerank.utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL

dispatcher = get_dispatcher(__name__)


class CoReRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with CoRe attention heads of a local LLM (arXiv 2510.02219).

    All candidate nodes go into one prompt with the query; the attention that a few selected
    heads pay each node is its score. Scores are *relative within one call* (listwise): use
    them to order nodes, and treat ``score_threshold`` as a heuristic, not a probability.

    The model is loaded once, in the constructor, from the loading settings. To share one
    loaded model with the LangChain adapter or with answer generation, build a
    ``core_rerank.CoReReranker`` yourself and wrap it: ``CoReRerank.from_reranker(reranker, top_n=5)``.

    Example::

        from llama_index.postprocessor.core_rerank import CoReRerank

        engine = index.as_query_engine(
            similarity_top_k=20,
            node_postprocessors=[CoReRerank(model="smollm2-135m-instruct", top_n=5)],
        )
    """

    model: str = Field(
        default=DEFAULT_MODEL,
        description=(
            "Model to rerank with: a registered offline name, a Hugging Face id, a local "
            "checkpoint directory or a .gguf file."
        ),
    )
    heads: str | HeadConfig | None = Field(
        default=None,
        description=(
            "Head preset name, head-config JSON path or HeadConfig; None picks the preset shipped for the model."
        ),
    )
    method: str | None = Field(
        default=None,
        description=(
            "'core' (CoRe heads), 'qr' (QR heads) or 'icr' (all heads); None: the heads' method, else 'core'."
        ),
    )
    top_n: int | None = Field(default=2, ge=0, description="Number of nodes to return; None returns all.")
    keep_retrieval_score: bool = Field(
        default=False,
        description=("Copy each node's retrieval score into metadata['retrieval_score'] (on a copy of the node)."),
    )
    use_first_stage_scores: bool = Field(
        default=False,
        description=(
            "Order the prompts by the retriever's NodeWithScore.score (higher is better) instead of the nodes' "
            "order (core_rerank.first_stage); mixed into the score only with the heads' scoring.first_stage_weight > 0. When any node has "
            "no score (None), the whole call keeps the heads' order, with a UserWarning."
        ),
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description=("Which metadata is included in the text that is reranked.")
    )
    device: str | None = Field(default=None, description="Torch device; None picks cuda > mps > cpu.")
    dtype: str = Field(default="auto", description="'auto', 'bfloat16', 'float16' or 'float32'.")
    num_layers_to_keep: int | str | None = Field(
        default=None,
        description=(
            "Decoder layers to build: None as many as the heads need; 'all' every layer (needed to "
            "share the model with text generation); an int that many."
        ),
    )
    max_doc_words: int | None = Field(
        default=DEFAULT_MAX_DOC_WORDS, description=("Each node's text is cut to this many words.")
    )
    score_threshold: float | None = Field(
        default=None,
        description=("Drop nodes whose CoRe score is below this value. Scores are relative within one call."),
    )

    max_length: int | None = Field(
        default=None, description="Token budget of one prompt; None: the model's context, capped at 32768."
    )
    window_tokens: int | str | None = Field(
        default="auto",
        description=(
            "Document tokens per prompt window: 'auto' the heads' setting (the small offline models' "
            "presets use windows), None every node in one prompt, or a number."
        ),
    )
    document_order: str = Field(
        default="auto",
        description=(
            "Order of the nodes inside each prompt window: 'auto' the heads' setting, 'first_stage' "
            "(strongest first), 'reversed' (strongest nearest the query), 'both' (both orders, scores "
            "averaged: twice the prompts) or 'ends'."
        ),
    )
    forward: str = Field(
        default="auto",
        description="How prompts run: 'auto', 'packed' (one forward pass for all; the CPU default) or 'sequential'.",
    )
    relevant_spans: bool | dict[str, Any] | None = Field(
        default=None,
        description=(
            "Evidence spans from the same forward pass (core_rerank.spans): True or settings (threshold, "
            "max_spans, unit) put metadata['relevant_spans'] ([{start, end, score}] best first, character "
            "offsets into the node's text) on a copy of each node; the key is hidden from the LLM and embeddings."
        ),
    )
    replace_text_with_spans: bool = Field(
        default=False,
        description=(
            "Replace each returned node's text by its spans joined in document order (' ... '); "
            "metadata['full_text'] keeps the text (hidden from the LLM). Asks for spans with the default "
            "settings when relevant_spans is not set. A node with no span keeps its text."
        ),
    )

    _reranker: Any = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        if "reranker" in data:
            raise TypeError("CoReRerank(reranker=...) is gone: use CoReRerank.from_reranker(reranker, top_n=...)")
        given = given_reranker()
        super().__init__(**data)
        # The model is loaded once, here (unless from_reranker hands one over), never per call.
        self._reranker = given if given is not None else load_reranker(self)

    @classmethod
    def from_reranker(cls, reranker: Any, **settings: Any) -> "CoReRerank":
        """A postprocessor around an already-built ``core_rerank.CoReReranker`` (no loading).

        ``settings`` are this postprocessor's own (``top_n``, ``score_threshold``,
        ``keep_retrieval_score``, ``use_first_stage_scores``, ``metadata_mode``, ``callback_manager``); the loading
        settings (model, heads, method, device, dtype, num_layers_to_keep, max_doc_words,
        max_length, window_tokens, document_order) are taken from the reranker, so ``to_dict()``
        describes what runs.
        """
        with handing_over(reranker, settings, "postprocessor") as described:
            return cls(**described, **settings)

    @classmethod
    def class_name(cls) -> str:
        return "CoReRerank"

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (share it with other components).

        Loaded again from the settings if it is missing (e.g. after unpickling)."""
        return loaded_reranker(self)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        if not query_bundle.query_str or not query_bundle.query_str.strip():
            raise ValueError("The query is empty: reranking needs a query with some text.")
        nodes = list(nodes)
        top_n = self.top_n if self.top_n is not None else len(nodes)
        dispatcher.event(ReRankStartEvent(query=query_bundle, nodes=nodes, top_n=top_n, model_name=self.model))
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
            wanted = self.relevant_spans if self.relevant_spans or not self.replace_text_with_spans else True
            first_stage = [n.score for n in nodes] if self.use_first_stage_scores else None
            results = self.reranker.rerank(
                query_bundle.query_str,
                texts,
                top_k=self.top_n,
                score_threshold=self.score_threshold,
                **spans_argument(wanted),
                **first_stage_argument(first_stage, "CoReRerank"),
            )
            reranked = [
                NodeWithScore(node=self._node_for(nodes[r.index], r.relevant_spans, texts[r.index]), score=r.score)
                for r in results
            ]
            event.on_end(payload={EventPayload.NODES: reranked})

        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _node_for(self, node_with_score: NodeWithScore, spans: list | None = None, ranked: str = "") -> Any:
        """The node to return: the same node, or a copy carrying the retrieval score and spans."""
        node = node_with_score.node
        if not self.keep_retrieval_score and spans is None:
            return node
        metadata = dict(node.metadata)
        if self.keep_retrieval_score:
            metadata["retrieval_score"] = node_with_score.score
        if spans is None:
            return node.model_copy(update={"metadata": metadata})
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        metadata["relevant_spans"] = spans_within(spans, ranked, text)
        hidden = ["relevant_spans"]
        if self.replace_text_with_spans and metadata["relevant_spans"]:
            metadata["full_text"] = text
            hidden.append("full_text")
        update = {
            "metadata": metadata,
            "excluded_llm_metadata_keys": [*node.excluded_llm_metadata_keys, *hidden],
            "excluded_embed_metadata_keys": [*node.excluded_embed_metadata_keys, *hidden],
        }
        copy = node.model_copy(update=update)
        if "full_text" in hidden:
            copy.set_content(join_spans(text, metadata["relevant_spans"]))
        return copy
