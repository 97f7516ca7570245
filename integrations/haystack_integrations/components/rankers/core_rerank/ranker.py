"""``CoReRanker``: a Haystack ranker component over ``core_rerank.CoReReranker``."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.errors import DeserializationError

from core_rerank import adapters
from core_rerank.adapters import first_stage_argument, given_reranker, handing_over, loaded_reranker
from core_rerank.head_config import HeadConfig
from core_rerank.spans import spans_argument, spans_within
from core_rerank.utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL

_OWN_SETTINGS = (
    "top_k",
    "score_threshold",
    "meta_fields_to_embed",
    "meta_data_separator",
    "relevant_spans",
    "use_first_stage_scores",
)


@component
class CoReRanker:
    """Ranks Documents by the attention CoRe heads of a local LLM pay them (arXiv 2510.02219).

    All candidate Documents go into one prompt with the query; the attention a few selected
    heads pay each Document is its score, written to ``Document.score`` of a *copy* of the
    Document (``dataclasses.replace``): the input Documents are never modified. The score is
    the core's raw listwise score (``CoReReranker.rerank``): relative within one call, not a
    probability, and ``-inf`` for a Document without text.

    The model is loaded once, by ``warm_up()`` (a Pipeline calls it; ``run()`` calls it when
    needed). To share one loaded model with other components or with answer generation, build
    a ``core_rerank.CoReReranker`` and wrap it: ``CoReRanker.from_reranker(reranker, top_k=5)``.

    Usage example::

        from haystack import Document
        from haystack_integrations.components.rankers.core_rerank import CoReRanker

        ranker = CoReRanker(model="smollm2-135m-instruct", top_k=2)
        docs = [Document(content="Paris is the capital of France."), Document(content="Bananas are yellow.")]
        result = ranker.run(query="What is the capital of France?", documents=docs)
        print(result["documents"][0].content)
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        heads: str | HeadConfig | None = None,
        method: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        num_layers_to_keep: int | str | None = None,
        max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
        window_tokens: int | str | None = "auto",
        top_k: int | None = 10,
        score_threshold: float | None = None,
        meta_fields_to_embed: list[str] | None = None,
        meta_data_separator: str = "\n",
        relevant_spans: bool | dict[str, Any] | None = None,
        use_first_stage_scores: bool = False,
        **loading_settings: Any,
    ) -> None:
        """
        Creates a CoReRanker. Nothing is loaded until ``warm_up()``.

        :param model: Model to rerank with: a registered offline name, a Hugging Face id, a local
            checkpoint directory or a ``.gguf`` file.
        :param heads: Head preset name, head-config JSON path or ``HeadConfig``; ``None`` picks the
            preset shipped for the model.
        :param method: ``"core"`` (CoRe heads), ``"qr"`` (QR heads) or ``"icr"`` (all heads); ``None``:
            the heads' method, else ``"core"``.
        :param device: Torch device; ``None`` picks cuda > mps > cpu.
        :param dtype: ``"auto"``, ``"bfloat16"``, ``"float16"`` or ``"float32"``.
        :param num_layers_to_keep: Decoder layers to build: ``None`` as many as the heads need;
            ``"all"`` every layer (to share the model with text generation); an int that many.
        :param max_doc_words: Each Document's text is cut to this many words.
        :param window_tokens: Document tokens per prompt window: ``"auto"`` the heads' setting,
            ``None`` every Document in one prompt, or a number.
        :param top_k: The maximum number of Documents to return; ``None`` returns all.
        :param score_threshold: Drop Documents scoring below this value (scores are relative
            within one call: pick it on your own validation queries).
        :param meta_fields_to_embed: Meta fields put before the content, joined with
            ``meta_data_separator``, in the text that is ranked.
        :param meta_data_separator: Separator between the meta fields and the content.
        :param relevant_spans: Evidence spans from the same forward pass (``core_rerank.spans``):
            ``True`` or settings (``threshold``, ``max_spans``, ``unit``) put
            ``meta["relevant_spans"]`` (``[{start, end, score}]`` best first, character offsets
            into ``content``) on each returned Document.
        :param use_first_stage_scores: Order the prompts by the retriever's ``Document.score``
            (higher is better) instead of the Documents' order (``core_rerank.first_stage``); they
            enter the score only with ``scoring.first_stage_weight`` > 0. When any Document has no
            score (``None``), the whole call keeps the heads' order, with a ``UserWarning``.
        :param loading_settings: Any further loading setting of ``core_rerank.adapters.LOADING_SETTINGS``
            (passed to ``CoReReranker.from_pretrained``; its default there when left out).
        :raises ValueError: If ``top_k`` is not > 0.
        :raises TypeError: For an argument that is neither a loading setting nor one of the above.
        """
        if "reranker" in loading_settings:
            raise TypeError(
                "CoReRanker(reranker=...) does not exist: use CoReRanker.from_reranker(reranker, top_k=...)"
            )
        explicit = dict(
            model=model,
            heads=heads,
            method=method,
            device=device,
            dtype=dtype,
            num_layers_to_keep=num_layers_to_keep,
            max_doc_words=max_doc_words,
            window_tokens=window_tokens,
        )
        adapters.assign_loading_settings(self, {**loading_settings, **explicit}, "CoReRanker")
        _check_top_k(top_k)
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.meta_data_separator = meta_data_separator
        self.relevant_spans = relevant_spans
        self.use_first_stage_scores = use_first_stage_scores
        # from_reranker hands an already-loaded reranker over; otherwise warm_up() loads one.
        self._reranker: Any = given_reranker()

    @classmethod
    def from_reranker(cls, reranker: Any, **settings: Any) -> CoReRanker:
        """A ranker around an already-built ``core_rerank.CoReReranker`` (nothing is loaded).

        ``settings`` are the ranker's own (``top_k``, ``score_threshold``, ``meta_fields_to_embed``,
        ``meta_data_separator``, ``relevant_spans``, ``use_first_stage_scores``); the loading settings are taken from the reranker
        (``CoReReranker.settings()``), so ``to_dict()`` describes what runs.
        """
        with handing_over(reranker, settings, "ranker") as described:
            return cls(**described, **settings)

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (loaded by ``warm_up()`` if needed)."""
        self.warm_up()
        return self._reranker

    def warm_up(self) -> None:
        """Load the model from the loading settings, once (a no-op when it is loaded)."""
        if self._reranker is None:
            loaded_reranker(self)

    async def warm_up_async(self) -> None:
        """``warm_up`` in a worker thread, so an async pipeline's event loop is not blocked."""
        await asyncio.to_thread(self.warm_up)

    def to_dict(self) -> dict[str, Any]:
        """Serializes the component (a ``HeadConfig`` in ``heads`` becomes its JSON dict)."""
        loading = {name: _serializable(name, getattr(self, name)) for name in adapters.LOADING_SETTINGS}
        own = {name: getattr(self, name) for name in _OWN_SETTINGS}
        return default_to_dict(self, **loading, **own)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CoReRanker:
        """Deserializes the component from a dictionary made by ``to_dict()``."""
        params = dict(data.get("init_parameters", {}))
        unknown = sorted(set(params) - set(adapters.LOADING_SETTINGS) - set(_OWN_SETTINGS))
        if unknown:  # checked here because **loading_settings hides the names from Haystack's own check
            raise DeserializationError(f"Refusing to deserialize unknown parameter(s) {unknown} for 'CoReRanker'")
        if isinstance(params.get("heads"), dict):
            params["heads"] = HeadConfig.from_dict(params["heads"])
        return default_from_dict(cls, {**data, "init_parameters": params})

    def _texts(self, documents: list[Document]) -> list[str]:
        """What is ranked: the selected meta fields, then the content (``""`` when missing)."""
        texts = []
        for doc in documents:
            meta = [str(doc.meta[key]) for key in self.meta_fields_to_embed if doc.meta.get(key) is not None]
            texts.append(self.meta_data_separator.join([*meta, doc.content or ""]))
        return texts

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """
        Returns copies of the Documents, best first, with ``score`` set to the CoRe score.

        :param query: The query.
        :param documents: The Documents to rank. One without text (no content and no embedded
            meta field) is kept, scored ``-inf`` and ranked last (dropped by any score threshold).
        :param top_k: The maximum number of Documents to return; ``None`` uses the component's ``top_k``.
        :param score_threshold: Drop Documents scoring below it; ``None`` uses the component's.
        :returns: ``{"documents": [...]}``, best first (ties keep the input order).
        :raises ValueError: If ``top_k`` is not > 0, or the query is empty.
        """
        top_k = self.top_k if top_k is None else top_k
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        _check_top_k(top_k)
        if not documents:
            return {"documents": []}
        self.warm_up()
        texts = self._texts(documents)
        first_stage = [doc.score for doc in documents] if self.use_first_stage_scores else None
        results = self._reranker.rerank(
            query,
            texts,
            top_k=top_k,
            score_threshold=score_threshold,
            **spans_argument(self.relevant_spans),
            **first_stage_argument(first_stage, "CoReRanker"),
        )
        return {"documents": [self._ranked(documents[r.index], r, texts[r.index]) for r in results]}

    def _ranked(self, document: Document, result: Any, text: str) -> Document:
        """A copy of ``document`` with its score (and its spans, as offsets into ``content``)."""
        if result.relevant_spans is None:
            return replace(document, score=result.score)
        spans = spans_within(result.relevant_spans, text, document.content or "")
        return replace(document, score=result.score, meta={**document.meta, "relevant_spans": spans})

    @component.output_types(documents=list[Document])
    async def run_async(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """``run`` in a worker thread (the core's lock serialises forward passes)."""
        return await asyncio.to_thread(
            self.run, query=query, documents=documents, top_k=top_k, score_threshold=score_threshold
        )


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and top_k <= 0:
        raise ValueError(f"top_k must be > 0 (or None for all documents), but got {top_k}")


def _serializable(name: str, value: Any) -> Any:
    """A loading setting as plain YAML/JSON data: a HeadConfig as its dict, a path or torch
    dtype/device as its name; anything else that is not plain data is refused."""
    if isinstance(value, HeadConfig):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "torch":  # torch.dtype, torch.device
        return str(value).removeprefix("torch.")
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"CoReRanker.to_dict(): {name}={value!r} cannot be serialized; pass a name, path or HeadConfig")
