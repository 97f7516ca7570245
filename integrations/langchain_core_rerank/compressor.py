"""``CoReRerank``: a LangChain ``BaseDocumentCompressor`` over ``core_rerank.CoReReranker``."""

from __future__ import annotations

from copy import deepcopy
from typing import Any, Dict, List, Optional, Sequence, Union

from langchain_core.callbacks import Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, model_validator

from core_rerank.adapter_settings import settings_from_reranker
from core_rerank.offline_models import DEFAULT_MODEL


class CoReRerank(BaseDocumentCompressor):
    """Rerank documents with CoRe attention heads of a local LLM (arXiv 2510.02219).

    All candidates go into one prompt with the query; the attention a few selected heads pay
    each document is its score, returned in ``metadata["relevance_score"]`` of a *copy* of the
    document (same ``id``). Scores are relative within one call (listwise), not probabilities.

    The model is loaded once, when the compressor is built. To share one loaded model with the
    LlamaIndex adapter or with answer generation, build a ``core_rerank.CoReReranker`` and pass
    it as ``reranker=``.

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
    directory or a .gguf file (ignored when ``reranker`` is given)."""
    heads: Optional[str] = None
    """Head preset name or head-config JSON path; None picks the preset shipped for the model."""
    method: str = "core"
    """'core' (CoRe heads), 'qr' (QR heads) or 'icr' (all heads)."""
    top_n: Optional[int] = Field(default=3, ge=0)
    """Number of documents to return; None returns all."""
    score_threshold: Optional[float] = None
    """Drop documents scoring below this value. Scores are relative within one call."""
    device: Optional[str] = None
    """Torch device; None picks cuda > mps > cpu."""
    dtype: str = "auto"
    """'auto', 'bfloat16', 'float16' or 'float32'."""
    num_layers_to_keep: Optional[Union[int, str]] = "auto"
    """'auto' loads only the layers the heads need; an int that many; None all of them
    (needed to share the model with text generation)."""
    max_doc_words: Optional[int] = 300
    """Each document is cut to this many words before reranking."""
    reranker: Any = None
    """A prebuilt ``core_rerank.CoReReranker``; built from the settings above when None."""

    @model_validator(mode="before")
    @classmethod
    def _describe_injected_reranker(cls, values: Any) -> Any:
        """With ``reranker=``, the loading settings describe that reranker (and must agree)."""
        if isinstance(values, dict) and values.get("reranker") is not None:
            values = settings_from_reranker(values["reranker"], values)
        return values

    @model_validator(mode="after")
    def _build_reranker(self) -> "CoReRerank":
        if self.reranker is None:
            from core_rerank import CoReReranker

            self.reranker = CoReReranker.from_pretrained(
                self.model, heads=self.heads, method=self.method,
                num_layers_to_keep=self.num_layers_to_keep, device=self.device,
                dtype=self.dtype, max_doc_words=self.max_doc_words,
            )
        elif not hasattr(self.reranker, "score"):
            raise TypeError("reranker must be a core_rerank.CoReReranker (an object with .score(query, documents))")
        return self

    def rerank(
        self,
        documents: Sequence[Union[str, Document, Dict[str, Any]]],
        query: str,
        *,
        top_n: Optional[int] = -1,
    ) -> List[Dict[str, Any]]:
        """Score documents against ``query``, best first: ``[{"index", "relevance_score"}]``.

        ``index`` is the position in ``documents``. ``top_n``: -1 (default) uses the
        compressor's ``top_n``; None returns all. ``score_threshold`` applies.
        """
        limit = self.top_n if top_n == -1 else top_n
        if limit is not None and limit < 0:
            raise ValueError("top_n must be >= 0, None (all) or -1 (the compressor's top_n)")
        if not documents:
            return []
        texts = [_text_of(doc) for doc in documents]
        scores = self.reranker.score(query, texts)
        results = [{"index": i, "relevance_score": float(s)} for i, s in enumerate(scores)]
        if self.score_threshold is not None:
            results = [r for r in results if r["relevance_score"] >= self.score_threshold]
        results.sort(key=lambda r: -r["relevance_score"])  # stable: ties keep input order
        return results if limit is None else results[:limit]

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Optional[Callbacks] = None,
    ) -> Sequence[Document]:
        """Copies of the best ``top_n`` documents, best first, with ``metadata["relevance_score"]``."""
        documents = list(documents)
        compressed = []
        for result in self.rerank(documents, query):
            doc = documents[result["index"]]
            metadata = deepcopy(doc.metadata)
            metadata["relevance_score"] = result["relevance_score"]
            compressed.append(doc.model_copy(update={"metadata": metadata}))
        return compressed


def _text_of(doc: Any) -> str:
    if isinstance(doc, Document):
        return doc.page_content
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict) and isinstance(doc.get("text"), str):
        return doc["text"]
    raise TypeError(f"documents must be Documents, strings or {{'text': ...}} dicts, not {type(doc).__name__}")
