"""``CoReReranker``: listwise attention reranking with CoRe, QR or all (ICR) heads."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InputError
from .first_stage import check_first_stage_scores, first_stage_permutation, fuse
from .forward import PromptRunner, resolve_forward
from .head_config import METHODS, HeadConfig, HeadConfigError, resolve_heads
from .layers import layers_to_build
from .position import PositionPrior
from .prompt import PreparedPrompt, PromptBuilder, check_documents, check_query, document_texts, truncate_words
from .rerank_result import RerankResult
from .scoring import relevance_scores, sum_heads
from .spans import SpanCollector, span_settings
from .utils import DEFAULT_MAX_DOC_WORDS, text_config
from .windows import (
    WindowPlan,
    check_document_order,
    check_window_tokens,
    plan_prompt_windows,
    score_plan,
    window_orders,
)

__all__ = ["DEFAULT_MAX_DOC_WORDS", "METHODS", "CoReReranker", "RerankResult", "resolve_heads"]

MAX_LENGTH_CAP = 32768  # default prompt budget: min(model context, this)


class CoReReranker:
    """Reranks documents by the attention a few heads of a decoder LLM pay them.

    All candidates and the query share one prompt; the selected heads' attention from the
    query span to each document, calibrated against a content-free query, is the document's
    score. Scores are relative within one call (listwise), not probabilities.

    Build it with :meth:`from_pretrained`, or around a model you already loaded::

        CoReReranker(model=model, tokenizer=tokenizer, heads="llama-3.1-8b-instruct")

    A shared, unpruned model still only runs up to the deepest selected layer.

    The arguments are those of :meth:`from_pretrained` (``method``, ``window_tokens``,
    ``document_order``, ``forward``: see there); ``window_tokens`` and ``document_order`` may be
    changed between calls. A method that contradicts the given heads is a ``ValueError``.
    ``lock`` is the re-entrant lock held for every forward pass: hold it to run something else
    on the shared model (e.g. generation) without interleaving with reranking.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        heads: "str | HeadConfig | None" = None,
        method: str | None = None,
        max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
        max_length: int | None = None,
        model_id: str | None = None,
        window_tokens: "int | str | None" = "auto",
        document_order: str = "auto",
        forward: str = "auto",
    ):
        from . import capture

        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id or getattr(model.config, "_name_or_path", None) or "model"
        self.heads = resolve_heads(heads, method, [self.model_id])
        self.method = self.heads.method
        self.heads.validate_for(model.config)
        decoder_config = text_config(model.config)
        self._num_layers = decoder_config.num_hidden_layers
        needed = self.heads.num_layers_needed(self._num_layers)
        if needed > self._num_layers:
            raise HeadConfigError(f"the heads need {needed} layers but the loaded model has only {self._num_layers}")
        self._heads_by_layer = self.heads.heads_by_layer(needed, decoder_config.num_attention_heads)
        self._stop_after = needed - 1
        if max_doc_words is not None and max_doc_words < 1:
            raise InputError("max_doc_words must be a positive number of words, or None")
        self.max_doc_words = max_doc_words
        context = getattr(decoder_config, "max_position_embeddings", None) or MAX_LENGTH_CAP
        self.max_length = int(max_length) if max_length else min(context, MAX_LENGTH_CAP)
        self.window_tokens = check_window_tokens(
            self.heads.scoring.window_tokens if window_tokens == "auto" else window_tokens
        )
        order = self.heads.scoring.document_order if document_order == "auto" else document_order
        self.document_order = check_document_order(order)
        self.builder = PromptBuilder(tokenizer, null_query=self.heads.scoring.null_query)
        self.forward = resolve_forward(forward, model)
        capture.install(model)
        self._runner = PromptRunner(model, self._heads_by_layer, self._stop_after, self.heads.scoring)
        self._prior = PositionPrior(self.heads.scoring, tokenizer)  # core_rerank.position
        self.lock = threading.RLock()
        # Tokens of every prompt the last score()/rerank() ran (both orders' with "both"): {"prompts",
        # "prompt_tokens", "total_tokens"} (total adds the N/A twins' query parts). Read it under ``lock``.
        self.last_usage: dict[str, int] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str,
        heads: "str | HeadConfig | None" = None,
        method: str | None = None,
        num_layers_to_keep: "int | str | None" = None,
        device: Any = None,
        dtype: Any = "auto",
        device_map: Any = None,
        max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
        max_length: int | None = None,
        window_tokens: "int | str | None" = "auto",
        document_order: str = "auto",
        forward: str = "auto",
        revision: str | None = None,
        cache_dir: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: Mapping[str, Any] | None = None,
        tokenizer_kwargs: Mapping[str, Any] | None = None,
    ) -> "CoReReranker":
        """Load a model for reranking.

        ``model_name_or_path``: a registered offline name (``"smollm2-135m-instruct"``), a hub
        id, a local checkpoint directory or a ``.gguf`` file. ``heads``: a preset name, a JSON
        path or a ``HeadConfig``; ``None`` picks the shipped preset for the model and method.
        ``method``: ``None`` takes the heads' method (``"core"`` without heads).
        ``num_layers_to_keep``: how many leading decoder layers to build. ``None`` builds as
        many as the heads need (the config's own ``num_layers_to_keep`` if set, else the deepest
        selected layer + 1; every layer for ICR); ``"all"`` builds every layer (needed to also
        generate text with the model: only then is the LM head built too); an int builds that
        many. ``window_tokens``: document tokens per prompt window (``core_rerank.windows``),
        ``"auto"`` (the heads' setting, measured on training data) or ``None`` (every candidate in
        one prompt while it fits ``max_length``: the paper's setting). ``document_order``: the
        order inside each window, ``"auto"`` (the heads'), ``"first_stage"`` (the paper's),
        ``"reversed"``, ``"both"`` or ``"ends"``. ``forward``: ``"auto"``, ``"packed"`` or
        ``"sequential"`` (``core_rerank.forward``). The heads' ``scoring.order_by`` says which
        order counts as the first stage's (``core_rerank.first_stage``).
        """
        from . import loading

        source = loading.resolve_source(model_name_or_path)
        hub = {
            k: v
            for k, v in dict(revision=revision, cache_dir=cache_dir, trust_remote_code=trust_remote_code).items()
            if v
        }
        if local_files_only:
            hub["local_files_only"] = True
        config = loading.load_config(source, **hub)
        head_config = resolve_heads(heads, method, list(source.model_ids))
        head_config.validate_for(config)
        full_layers = text_config(config).num_hidden_layers
        keep = layers_to_build(head_config, num_layers_to_keep, full_layers)
        torch_device = loading.resolve_device(device)
        torch_dtype = loading.resolve_dtype(dtype, torch_device)
        tokenizer = loading.load_tokenizer(source, **hub, **(tokenizer_kwargs or {}))
        # Only "all" builds the LM head too: the layers and the head a model needs to generate.
        with_head = isinstance(num_layers_to_keep, str) and num_layers_to_keep.strip().lower() == "all"
        model = loading.load_model(
            source, keep, full_layers, torch_device, torch_dtype, device_map, with_head, **hub, **(model_kwargs or {})
        )
        return cls(
            model,
            tokenizer,
            heads=head_config,
            method=head_config.method,
            max_doc_words=max_doc_words,
            max_length=max_length,
            model_id=source.model_ids[0],
            window_tokens=window_tokens,
            document_order=document_order,
            forward=forward,
        )

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def settings(self) -> dict[str, Any]:
        """The ``from_pretrained`` arguments that describe this reranker: ``model`` (its model
        id), ``heads`` (the ``HeadConfig``), ``method``, ``device``, ``dtype``,
        ``num_layers_to_keep`` (the decoder layers built), ``max_doc_words``, ``max_length``,
        ``window_tokens``, ``document_order`` and ``forward``."""
        dtype = getattr(self.model, "dtype", None)
        return {
            "model": self.model_id,
            "heads": self.heads,
            "method": self.method,
            "device": str(self.device),
            "dtype": str(dtype).removeprefix("torch.") if dtype is not None else None,
            "num_layers_to_keep": self._num_layers,
            "max_doc_words": self.max_doc_words,
            "max_length": self.max_length,
            "window_tokens": self.window_tokens,
            "document_order": self.document_order,
            "forward": self.forward,
        }

    # ------------------------------------------------------------------ prompts
    def prepare(self, query: str, documents: Sequence[Any]) -> PreparedPrompt:
        """The exact prompt of these documents, in this order (cut to ``max_doc_words``): token
        ids and spans. A ``ValueError`` if a document is empty or the prompt exceeds ``max_length``."""
        query = check_query(query)
        texts = [truncate_words(t, self.max_doc_words) for t in document_texts(documents)]
        empty = [i for i, t in enumerate(texts) if not t]
        if empty:
            raise InputError(f"documents {empty} are empty; prepare() needs text in every document")
        prepared = self.builder.prepare(query, texts)
        if len(prepared) > self.max_length:
            raise InputError(
                f"the prompt has {len(prepared)} tokens, over max_length={self.max_length}; "
                "score()/rerank() split such lists into windows"
            )
        return prepared

    # ------------------------------------------------------------------ scoring
    def score(
        self, query: str, documents: Sequence[Any], first_stage_scores: Sequence[float] | None = None
    ) -> list[float]:
        """One score per document, in input order (higher is more relevant).

        Identical texts share one slot in the prompt and get the same score. An empty (or
        whitespace-only) document gets ``-inf`` and is not put in the prompt. The candidates
        are split into windows of ``window_tokens`` document tokens (and any list that does not
        fit ``max_length``), each scored as its own prompt (see ``windows`` and
        ``core_rerank.windows``). ``first_stage_scores`` (one per document) order the prompts
        instead of the heads' ``scoring.order_by`` (``core_rerank.first_stage``).
        """
        return self._score(query, documents, {None: None}, first_stage_scores=first_stage_scores)[None]

    def score_head_subsets(
        self, query: str, documents: Sequence[Any], subsets: Mapping[Any, "Sequence[Sequence[int]] | None"]
    ) -> dict[Any, list[float]]:
        """Scores of several subsets of this reranker's heads, from one forward pass.

        ``subsets`` maps a name to a list of ``(layer, head)`` pairs (``None``: every head of
        this reranker). Each subset gets what ``score`` of a reranker built with just those
        heads (and this one's scoring settings) gives, up to float rounding: a layer never
        depends on later layers, so one pass through the deepest needed layer serves all.
        ``core-rerank eval --one-pass`` uses it to score ICR, CoRe-R, QR-R and the sweeps with
        a single all-heads pass per query.
        """
        for name, subset in subsets.items():
            if subset is None:
                continue
            outside = [(layer, head) for layer, head in subset if head not in self._heads_by_layer.get(layer, ())]
            if outside or not subset:
                raise InputError(
                    f"head subset {name!r}: "
                    + (f"heads {outside[:5]} are not among this reranker's heads" if outside else "no heads")
                )
        return self._score(query, documents, subsets)

    def windows(self, query: str, documents: Sequence[Any], first_stage_scores: Any = None) -> list[list[int]]:
        """The prompt windows ``score`` would run: lists of input indices (ascending). Empty
        documents are in none; identical texts share a slot."""
        return self._plan(check_query(query), documents, first_stage_scores).input_windows()

    def _plan(self, query: str, documents: Sequence[Any], first_stage_scores: Any = None) -> WindowPlan:
        texts = [truncate_words(t, self.max_doc_words) for t in document_texts(documents)]
        scores = check_first_stage_scores(first_stage_scores, len(texts))
        order = first_stage_permutation(query, texts, self.heads.scoring.order_by, scores)
        return plan_prompt_windows(self.builder, query, texts, self.max_length, self.window_tokens, order)

    def _score(
        self,
        query: str,
        documents: Sequence[Any],
        subsets: Mapping[Any, Any],
        token_hook: "Callable[[WindowPlan, list[int], PreparedPrompt, Any], None] | None" = None,
        first_stage_scores: Any = None,
    ) -> dict[Any, list[float]]:
        """Scores per subset name. ``token_hook(plan, slots, prepared, token_scores)`` (optional)
        sees every prompt scored: the plan, the slots in prompt order, the prompt, and the
        calibrated token scores of all this reranker's heads (float64 numpy over the prefix)."""
        query = check_query(query)
        plan = self._plan(query, documents, first_stage_scores)
        usage = {"prompts": 0, "prompt_tokens": 0, "total_tokens": 0}
        with self.lock:
            orders = dict.fromkeys(
                tuple(o) for window in plan.windows for o in window_orders(window, self.document_order)
            )
            prompts = {slots: self.builder.prepare(query, [plan.slots[i] for i in slots]) for slots in orders}
            real = list(prompts.values())  # the placeholder twins (if any) run in the same pass
            rows, results = self._runner.rows(real + self._prior.twins(real), self.forward), {}
            for n, (slots, prepared) in enumerate(prompts.items()):
                own = functools.partial(self._score_rows, prepared=prepared, subsets=subsets)
                raw = own(rows[n], on_tokens=token_hook and functools.partial(token_hook, plan, list(slots), prepared))
                twin_rows = rows[len(real) + n] if len(rows) > len(real) else None
                results[slots] = self._prior.adjust(raw, prepared, twin_rows, own)

            def score_prompt(slots: list[int]) -> dict[Any, list[float]]:
                prepared = prompts[tuple(slots)]
                usage["prompts"] += 1
                usage["prompt_tokens"] += len(prepared)
                usage["total_tokens"] += len(prepared) + self._null_tokens(prepared)
                return results[tuple(slots)]

            scores = score_plan(plan, len(documents), list(subsets), self.document_order, score_prompt)
            self.last_usage = usage
        return fuse(scores, first_stage_scores, self.heads.scoring.first_stage_weight)

    def _null_tokens(self, prepared: PreparedPrompt) -> int:
        """Tokens the N/A twin runs beyond the shared document prefix (0 without calibration)."""
        return 0 if self.heads.scoring.calibration == "none" else len(prepared.null_input_ids) - prepared.prefix_length

    def rerank(
        self,
        query: str,
        documents: Sequence[Any],
        top_k: int | None = None,
        doc_ids: Sequence[Any] | None = None,
        score_threshold: float | None = None,
        relevant_spans: Any = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> list[RerankResult]:
        """Documents sorted best first (ties keep input order).

        Results scoring below ``score_threshold`` are dropped (an empty document, scored
        ``-inf``, falls below any threshold), then the list is cut to ``top_k``. Scores are
        relative within one call, so pick a threshold on your own validation queries.
        ``relevant_spans``: ``True`` or settings (``threshold``, ``max_spans``, ``unit``) give each
        result its evidence spans from the same forward pass (``core_rerank.spans``).
        ``first_stage_scores``: the first stage's score of each document, to order the prompts by
        (``core_rerank.first_stage``); they do not enter the score.
        """
        documents = list(check_documents(documents))
        wanted = span_settings(relevant_spans)
        if doc_ids is not None and len(doc_ids) != len(documents):
            raise InputError(f"got {len(doc_ids)} doc_ids for {len(documents)} documents")
        if top_k is not None and top_k < 0:
            raise InputError("top_k must be >= 0 or None")
        texts = document_texts(documents)
        collector = SpanCollector(texts, query, wanted) if wanted else None
        hook = collector.hook if collector else None
        scores = self._score(query, documents, {None: None}, hook, first_stage_scores)[None] if documents else []
        spans = collector.spans() if collector else [None] * len(documents)
        order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
        if score_threshold is not None:
            order = [i for i in order if scores[i] >= score_threshold]
        if top_k is not None:
            order = order[:top_k]
        relevance = relevance_scores(scores)
        return [
            RerankResult(i, scores[i], texts[i], doc_ids[i] if doc_ids is not None else None, relevance[i], spans[i])
            for i in order
        ]

    def rank(
        self,
        query: str,
        documents: Sequence[Any],
        top_k: int | None = None,
        return_documents: bool = False,
    ) -> list[dict[str, Any]]:
        """Like sentence-transformers' ``CrossEncoder.rank``: ``[{"corpus_id", "score"}]`` best
        first (with ``"text"`` too when ``return_documents``), cut to ``top_k``."""
        return [
            {"corpus_id": r.index, "score": r.score, **({"text": r.text} if return_documents else {})}
            for r in self.rerank(query, documents, top_k=top_k)
        ]

    def rerank_batch(
        self,
        queries: Sequence[str],
        documents_per_query: Sequence[Sequence[Any]],
        top_k: int | None = None,
        doc_ids_per_query: Sequence[Sequence[Any]] | None = None,
        score_threshold: float | None = None,
        relevant_spans: Any = None,
        first_stage_scores_per_query: Sequence[Sequence[float]] | None = None,
    ) -> list[list[RerankResult]]:
        """``rerank`` for each query with its own candidates (and doc ids, first-stage scores)."""
        if isinstance(queries, str):
            raise InputError("queries must be a list of strings, not one string")
        given = (documents_per_query, doc_ids_per_query, first_stage_scores_per_query)
        per_query: list[Sequence[Any]] = [[None] * len(queries) if g is None else g for g in given]
        for name, lists in zip(("document", "doc_ids", "first_stage_scores"), per_query):
            if len(lists) != len(queries):
                raise InputError(f"got {len(lists)} {name} lists for {len(queries)} queries")
        with self.lock:
            return [
                self.rerank(q, d, top_k, i, score_threshold, relevant_spans, f)
                for q, d, i, f in zip(queries, *per_query)
            ]

    async def arerank(
        self,
        query: str,
        documents: Sequence[Any],
        top_k: int | None = None,
        doc_ids: Sequence[Any] | None = None,
        score_threshold: float | None = None,
        relevant_spans: Any = None,
        first_stage_scores: Sequence[float] | None = None,
    ) -> list[RerankResult]:
        """``rerank`` in a worker thread (the model lock serialises forward passes)."""
        return await asyncio.to_thread(
            self.rerank, query, documents, top_k, doc_ids, score_threshold, relevant_spans, first_stage_scores
        )

    async def ascore(self, query: str, documents: Sequence[Any]) -> list[float]:
        return await asyncio.to_thread(self.score, query, documents)

    # ------------------------------------------------------------------ internals
    def token_scores(self, prepared: PreparedPrompt) -> Any:
        """Calibrated per-token scores ``c_j`` (a float64 numpy array over the shared prefix)."""
        with self.lock:
            return sum_heads(self._runner.rows([prepared], self.forward)[0], None).numpy()

    def _score_rows(
        self,
        rows: dict[int, Any],
        prepared: PreparedPrompt,
        subsets: Mapping[Any, Any],
        on_tokens: "Callable[[Any], Any] | None" = None,
    ) -> dict[Any, list[float]]:
        from .scoring import document_scores, subset_positions

        if on_tokens is not None:
            on_tokens(sum_heads(rows, None).numpy())
        outlier_std = self.heads.scoring.outlier_std
        return {
            name: document_scores(
                sum_heads(rows, subset_positions(self._heads_by_layer, subset)).numpy(),
                prepared.document_spans,
                outlier_std,
            )
            for name, subset in subsets.items()
        }
