"""``CoReRerank``: a LangChain ``BaseDocumentCompressor`` over ``core_rerank.CoReReranker``."""

from __future__ import annotations

from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from core_rerank.adapters import first_stage_argument, given_reranker, handing_over, load_reranker, loaded_reranker
from core_rerank.head_config import HeadConfig
from core_rerank.spans import join_spans, spans_argument
from core_rerank.utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL

USE_TOP_N: Any = object()  # rerank()'s default: the compressor's own top_n


class CoReRerank(BaseDocumentCompressor):
    """Rerank documents with CoRe attention heads of a local LLM (arXiv 2510.02219).

    All candidates go into one prompt with the query; the attention a few selected heads pay
    each document is its score. A *copy* of each kept document (same ``id``) carries
    ``metadata["raw_score"]`` (that listwise score) and ``metadata["relevance_score"]`` (the
    same mapped to [0, 1] over the call's documents, as LangChain's other rerankers and this
    package's server give it). Scores are relative within one call, not probabilities.

    The model is loaded once, when the compressor is built, from the loading settings. To
    share one loaded model with the LlamaIndex adapter or with answer generation, build a
    ``core_rerank.CoReReranker`` and wrap it: ``CoReRerank.from_reranker(reranker, top_n=3)``.

    Example::

        from langchain_classic.retrievers import ContextualCompressionRetriever
        from langchain_core_rerank import CoReRerank

        retriever = ContextualCompressionRetriever(
            base_compressor=CoReRerank(model="smollm2-135m-instruct", top_n=3),
            base_retriever=bm25_retriever,
        )
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model: str = DEFAULT_MODEL
    """Model to rerank with: a registered offline name, a Hugging Face id, a local checkpoint
    directory or a .gguf file."""
    heads: str | HeadConfig | None = None
    """Head preset name, head-config JSON path or HeadConfig; None picks the preset shipped for the model."""
    method: str | None = None
    """'core' (CoRe heads), 'qr' (QR heads) or 'icr' (all heads); None: the heads' method, else 'core'."""
    top_n: int | None = Field(default=3, ge=0)
    """Number of documents to return; None returns all."""
    score_threshold: float | None = None
    """Drop documents scoring below this value. Scores are relative within one call."""
    device: str | None = None
    """Torch device; None picks cuda > mps > cpu."""
    dtype: str = "auto"
    """'auto', 'bfloat16', 'float16' or 'float32'."""
    num_layers_to_keep: int | str | None = None
    """Decoder layers to build: None as many as the heads need; 'all' every layer (needed to
    share the model with text generation); an int that many."""
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS
    """Each document is cut to this many words before reranking."""

    max_length: int | None = None
    """Token budget of one prompt; None: the model's context, capped at 32768."""
    window_tokens: int | str | None = "auto"
    """Document tokens per prompt window: 'auto' the heads' setting (the small offline models'
    presets use windows), None every document in one prompt, or a number."""
    document_order: str = "auto"
    """Order of the documents inside each prompt window: 'auto' the heads' setting, 'first_stage'
    (strongest first), 'reversed' (strongest nearest the query), 'both' (both orders, scores
    averaged: twice the prompts) or 'ends'."""
    forward: str = "auto"
    """How prompts run: 'auto', 'packed' (one forward pass for all; the CPU default) or 'sequential'."""
    relevant_spans: bool | dict[str, Any] | None = None
    """Evidence spans from the same forward pass (``core_rerank.spans``): ``True`` or settings
    (``threshold``, ``max_spans``, ``unit``) put ``metadata["relevant_spans"]`` (``[{start, end,
    score}]`` best first, character offsets into ``page_content``) on each kept document."""
    cut_to_spans: bool = False
    """Cut each kept document to its spans: ``page_content`` becomes the spans joined in document
    order (``" ... "``), ``metadata["full_text"]`` keeps the whole text and
    ``metadata["relevant_spans"]`` the offsets into it. Asks for spans with the default settings
    when ``relevant_spans`` is not set. A document with no span keeps its text."""
    use_first_stage_scores: bool = False
    """Order the prompts by each ``Document``'s ``metadata[first_stage_score_key]`` (the first
    stage's score, higher is better) instead of the documents' order (``core_rerank.first_stage``);
    it enters the score only with ``scoring.first_stage_weight`` > 0. When any document has no
    score (a string or dict document never has one), the whole call keeps the heads' order, with a
    ``UserWarning``."""
    first_stage_score_key: str = "score"
    """The metadata key ``use_first_stage_scores`` reads: ``"score"`` is where LangChain's
    retrievers that return a score put it (``PineconeHybridSearchRetriever``,
    ``AmazonKnowledgeBasesRetriever``, ``ZepRetriever``, ...; a vector store's own
    ``as_retriever()`` drops its scores); ``"relevance_score"`` reads a reranker before this one.
    A distance (lower is better) must be negated first."""

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
        """A compressor around an already-built ``core_rerank.CoReReranker`` (no loading).

        ``settings`` are the compressor's own (``top_n``, ``score_threshold``, ``relevant_spans``,
        ``cut_to_spans``, ``use_first_stage_scores``, ``first_stage_score_key``); the loading
        settings (model, heads, method, device, dtype, num_layers_to_keep, max_doc_words,
        max_length, window_tokens, document_order) are taken from the reranker, so the fields
        describe what runs.
        """
        with handing_over(reranker, settings, "compressor") as described:
            return cls(**described, **settings)

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (share it with other components).

        Loaded again from the settings if it is missing (e.g. after unpickling)."""
        return loaded_reranker(self)

    def rerank(
        self,
        documents: Sequence[str | Document | dict[str, Any]],
        query: str,
        *,
        top_n: Any = USE_TOP_N,
    ) -> list[dict[str, Any]]:
        """Score documents against ``query``, best first: ``[{"index", "relevance_score", "raw_score"}]``.

        ``index`` is the position in ``documents`` (``Document``s, strings, or
        ``{"text", "title"}`` dicts, whose title is read with the text as in the core).
        ``relevance_score`` is in [0, 1] (min-max over this call's documents, as over HTTP);
        ``raw_score`` is the core's listwise score. ``top_n``: the compressor's ``top_n`` unless
        given; ``None`` returns all. ``score_threshold`` applies to the raw score.
        """
        limit = self.top_n if top_n is USE_TOP_N else top_n
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"top_n must be a number >= 0 or None (all), got {limit!r}")
        if not documents:
            return []
        results = self.reranker.rerank(
            query,
            [_core_document(doc) for doc in documents],
            top_k=limit,
            score_threshold=self.score_threshold,
            **spans_argument(self._span_settings()),
            **first_stage_argument(self._first_stage(documents), "CoReRerank"),
        )
        found = []
        for r in results:
            entry = {"index": r.index, "relevance_score": r.relevance_score, "raw_score": r.score}
            if r.relevant_spans is not None:
                entry["relevant_spans"] = r.relevant_spans
            found.append(entry)
        return found

    def _first_stage(self, documents: Sequence[Any]) -> list[Any] | None:
        """Each document's first-stage score (``None`` where it has none), or ``None`` when off."""
        if not self.use_first_stage_scores:
            return None
        key = self.first_stage_score_key
        return [doc.metadata.get(key) if isinstance(doc, Document) else None for doc in documents]

    def _span_settings(self) -> Any:
        return self.relevant_spans if self.relevant_spans not in (None, False) or not self.cut_to_spans else True

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Copies of the best ``top_n`` documents, best first, with ``metadata["relevance_score"]``
        (in [0, 1] over this call's documents) and ``metadata["raw_score"]`` (and the spans, or
        the text cut to them, with ``relevant_spans`` / ``cut_to_spans``)."""
        documents = list(documents)
        compressed = []
        for result in self.rerank(documents, query):
            doc = documents[result["index"]]
            metadata = deepcopy(doc.metadata)
            metadata["relevance_score"] = result["relevance_score"]
            metadata["raw_score"] = result["raw_score"]
            update: dict[str, Any] = {"metadata": metadata}
            if "relevant_spans" in result:
                metadata["relevant_spans"] = result["relevant_spans"]
                if self.cut_to_spans and result["relevant_spans"]:
                    metadata["full_text"] = doc.page_content
                    update["page_content"] = join_spans(doc.page_content, result["relevant_spans"])
            compressed.append(doc.model_copy(update=update))
        return compressed


def _core_document(doc: Any) -> Any:
    """What the core reranker reads: a Document's ``page_content``; strings and
    ``{"text", "title"}`` dicts as they are (the core joins title and text)."""
    if isinstance(doc, Document):
        return doc.page_content
    if isinstance(doc, str) or (isinstance(doc, dict) and isinstance(doc.get("text"), str)):
        return doc
    raise TypeError(f"documents must be Documents, strings or {{'text': ...}} dicts, not {type(doc).__name__}")
