"""What a rerank route does, whatever its dialect: check, score on the model worker, map scores.

``relevance_score`` is CoRe's listwise raw score mapped to [0, 1] by min-max over the request's
list: ``(raw - min) / (max - min)``. It is monotone (it orders exactly as the raw score), the
best document of a request gets 1.0, the worst 0.0, a list of one (or all tied) 1.0, and an
empty document 0.0. A threshold ``t`` keeps documents at least a fraction ``t`` of the way from
the list's worst to its best: relative to the list, not a probability (a list with no relevant
document still has one at 1.0). The raw score itself is in ``raw_score`` (``null`` for an empty
document, whose raw score is -inf).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..scoring import relevance_scores
from ..settings import built_settings
from ..spans import spans_argument
from ..utils import json_float
from .errors import APIError
from .worker import ModelWorker, OverDeadline, QueueFull, RequestTimeout


@dataclass
class Ranked:
    """One request's outcome: ``order`` best first, scores in input order, and token usage:
    ``prompt_tokens`` in the prompts that ran (every window), ``total_tokens`` adding the query
    part of each window's N/A twin (its documents are the prompt's, run once and reused)."""

    order: list[int]
    raw: list[float]
    relevance: list[float]
    prompt_tokens: int = 0
    total_tokens: int = 0
    spans: list[list[dict[str, Any]]] | None = None  # per input document, with relevant_spans


class LocalScorer:
    """A reranker in this process behind a :class:`ModelWorker` (one model thread, bounded queue)."""

    def __init__(self, reranker: Any, max_queue: int = 64, timeout_s: float | None = 120.0):
        self.reranker = reranker
        self.model_id = getattr(reranker, "model_id", None)
        self.worker = ModelWorker(lock=getattr(reranker, "lock", None), max_queue=max_queue, timeout_s=timeout_s)

    @property
    def queue_depth(self) -> int:
        return self.worker.queue_depth

    @property
    def in_flight(self) -> int:
        return self.worker.in_flight

    async def settings(self) -> dict[str, Any]:
        """The built reranker's settings (``core_rerank.settings.built_settings``)."""
        if not callable(getattr(self.reranker, "settings", None)):
            return {}
        return built_settings(self.reranker)

    async def rank(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None = None,
        relevant_spans: Any = None,
        first_stage_scores: list[float] | None = None,
    ) -> Ranked:
        """Score on the model thread; a full queue, or a request that would not finish in time at
        the recent pace (``ModelWorker``), is 503 with Retry-After; a timeout 504, bad input 400."""
        try:
            return await self.worker.run(
                lambda: self._rank(query, texts, max_tokens_per_doc, relevant_spans, first_stage_scores),
                cost=len(texts),
            )
        except QueueFull as exc:
            raise APIError(503, str(exc), "server_busy", {"Retry-After": str(exc.retry_after)}) from None
        except OverDeadline as exc:
            raise APIError(503, str(exc), "deadline_exceeded", {"Retry-After": str(exc.retry_after)}) from None
        except RequestTimeout as exc:
            raise APIError(504, str(exc), "timeout") from None
        except InputError as exc:  # the reranker refused this input; anything else is a bug (500)
            raise APIError(400, str(exc)) from None

    def _rank(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None,
        relevant_spans: Any = None,
        first_stage_scores: list[float] | None = None,
    ) -> Ranked:
        texts = self._cap_tokens(texts, max_tokens_per_doc)  # a prefix of each text: span offsets hold
        first_stage = {} if first_stage_scores is None else {"first_stage_scores": first_stage_scores}
        results = self.reranker.rerank(query, texts, **spans_argument(relevant_spans), **first_stage)
        raw = [0.0] * len(texts)
        spans: list[list[dict[str, Any]]] | None = [[] for _ in texts] if relevant_spans else None
        for result in results:
            raw[result.index] = float(result.score)
            if spans is not None:
                spans[result.index] = list(result.relevant_spans or [])
        usage = getattr(self.reranker, "last_usage", None) or {}
        return Ranked(
            [r.index for r in results],
            raw,
            relevance_scores(raw),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("total_tokens", 0)),
            spans,
        )

    def _cap_tokens(self, texts: list[str], limit: int | None) -> list[str]:
        """Each document cut to ``limit`` tokens (``max_tokens_per_doc``; the query is never cut)."""
        tokenizer = getattr(self.reranker, "tokenizer", None)
        if tokenizer is None or limit is None or not texts:
            return texts
        fast = bool(getattr(tokenizer, "is_fast", False))
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=fast)
        out = []
        for i, text in enumerate(texts):
            ids = encoded["input_ids"][i]
            if len(ids) > limit:
                text = text[: encoded["offset_mapping"][i][limit - 1][1]] if fast else tokenizer.decode(ids[:limit])
            out.append(text)
        return out

    def close(self) -> None:
        self.worker.close()


class RerankService:
    """What every rerank route does, whatever its dialect: the model's names and limits, the
    checks, the scorer (in process, or Ray Serve model replicas), and the response shapes."""

    def __init__(self, scorer: Any, model_names: Sequence[str] | None = None, max_documents: int = 1000):
        self.scorer = scorer
        own = str(getattr(scorer, "model_id", None) or "")
        names = [n for n in (*(model_names or ()), own) if n] or ["core-rerank"]
        self.model_names = list(dict.fromkeys(names))
        self.model_name = self.model_names[0]
        self._accepted = {n.lower() for n in self.model_names}
        self.max_documents = max_documents

    # ------------------------------------------------------------------ checks
    def check_model(self, model: str | None) -> None:
        if model is not None and model.lower() not in self._accepted:
            raise APIError(
                404,
                f"model {model!r} is not served here; this server serves "
                f"{', '.join(repr(n) for n in self.model_names)}",
                "model_not_found",
            )

    def check_documents(self, count: int) -> None:
        if count == 0:
            raise APIError(400, "documents is empty: send at least one document to rerank")
        if count > self.max_documents:
            raise APIError(
                400, f"too many documents: {count} sent, at most {self.max_documents} a request (--max-documents)"
            )

    async def rank(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None = None,
        relevant_spans: Any = None,
        first_stage_scores: list[float] | None = None,
    ) -> Ranked:
        """``relevant_spans`` (``rerank``'s span settings, v2) and ``first_stage_scores`` (checked,
        one per document) are passed on only when set: a request without them runs as before."""
        self.check_documents(len(texts))
        extra: dict[str, Any] = {}
        if relevant_spans:
            extra["relevant_spans"] = relevant_spans
        if first_stage_scores is not None:
            extra["first_stage_scores"] = first_stage_scores
        return await self.scorer.rank(query, texts, max_tokens_per_doc, **extra)

    # ------------------------------------------------------------------ responses
    def cohere(
        self,
        ranked: Ranked,
        documents: list[Any],
        texts: list[str],
        top_n: int | None,
        return_documents: bool,
        version: int = 1,
    ) -> dict:
        """Cohere v1 (= Jina = vLLM) or v2 body. ``top_n`` 0 or absent: every document."""
        results = []
        for i in ranked.order[:top_n] if top_n else ranked.order:
            item: dict[str, Any] = {
                "index": i,
                "relevance_score": ranked.relevance[i],
                "raw_score": json_float(ranked.raw[i]),
            }
            if return_documents:
                item["document"] = _returned_document(documents[i], texts[i])
            if ranked.spans is not None:
                item["relevant_spans"] = ranked.spans[i]
            results.append(item)
        return {
            "id": str(uuid.uuid4()),
            "model": self.model_name,
            "results": results,
            "usage": {"prompt_tokens": ranked.prompt_tokens, "total_tokens": ranked.total_tokens},
            "meta": {
                "api_version": {"version": str(version)},
                "billed_units": {"search_units": math.ceil(len(texts) / 100)},
            },
        }

    def tei(self, ranked: Ranked, texts: list[str], raw_scores: bool, return_text: bool) -> list[dict]:
        results = []
        for i in ranked.order:
            item: dict[str, Any] = {
                "index": i,
                "score": json_float(ranked.raw[i]) if raw_scores else ranked.relevance[i],
            }
            if return_text:
                item["text"] = texts[i]
            results.append(item)
        return results


def _returned_document(document: Any, text: str) -> dict:
    if isinstance(document, dict):
        return document if isinstance(document.get("text"), str) else {**document, "text": text}
    return {"text": text}
