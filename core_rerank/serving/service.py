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

from .errors import APIError
from .worker import ModelWorker, QueueFull, RequestTimeout


def relevance_scores(raw: Sequence[float]) -> list[float]:
    """Min-max over the finite raw scores of one list (see the module docstring)."""
    finite = [s for s in raw if math.isfinite(s)]
    if not finite:
        return [0.0] * len(raw)
    low, high = min(finite), max(finite)
    return [0.0 if not math.isfinite(s) else 1.0 if high == low else (s - low) / (high - low) for s in raw]


def json_score(value: float) -> "float | None":
    """A score JSON can carry (JSON has no -inf or NaN)."""
    return value if math.isfinite(value) else None


@dataclass
class Ranked:
    """One request's outcome: ``order`` best first, scores in input order."""

    order: list[int]
    raw: list[float]
    relevance: list[float]
    tokens: int


class RerankService:
    """The model, its names and limits, and the worker that runs it."""

    def __init__(
        self,
        reranker: Any,
        model_names: Sequence[str] | None = None,
        max_documents: int = 1000,
        max_queue: int = 64,
        timeout_s: float | None = 120.0,
    ):
        self.reranker = reranker
        own = str(getattr(reranker, "model_id", None) or "core-rerank")
        names = [n for n in (*(model_names or ()), own) if n]
        self.model_names = list(dict.fromkeys(names))
        self.model_name = self.model_names[0]
        self._accepted = {n.lower() for n in self.model_names}
        self.max_documents = max_documents
        self.worker = ModelWorker(lock=getattr(reranker, "lock", None), max_queue=max_queue, timeout_s=timeout_s)

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

    # ------------------------------------------------------------------ scoring
    async def rank(self, query: str, texts: list[str], max_tokens_per_doc: int | None = None) -> Ranked:
        self.check_documents(len(texts))
        try:
            return await self.worker.run(lambda: self._rank(query, texts, max_tokens_per_doc))
        except QueueFull as exc:
            raise APIError(503, str(exc), "server_busy", {"Retry-After": str(exc.retry_after)}) from None
        except RequestTimeout as exc:
            raise APIError(504, str(exc), "timeout") from None
        except (ValueError, TypeError) as exc:  # the reranker refused this input
            raise APIError(400, str(exc)) from None

    def _rank(self, query: str, texts: list[str], max_tokens_per_doc: int | None) -> Ranked:
        texts, tokens = self._cap_tokens([query, *texts], max_tokens_per_doc)
        results = self.reranker.rerank(query, texts[1:])
        raw = [0.0] * (len(texts) - 1)
        for result in results:
            raw[result.index] = float(result.score)
        return Ranked([r.index for r in results], raw, relevance_scores(raw), tokens)

    def _cap_tokens(self, texts: list[str], limit: int | None) -> tuple[list[str], int]:
        """Each document cut to ``limit`` tokens (the query is never cut); the token count."""
        tokenizer = getattr(self.reranker, "tokenizer", None)
        if tokenizer is None:
            return texts, 0
        fast = bool(getattr(tokenizer, "is_fast", False))
        encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=fast)
        out, total = [texts[0]], len(encoded["input_ids"][0])
        for i in range(1, len(texts)):
            ids = encoded["input_ids"][i]
            if limit is not None and len(ids) > limit:
                text = texts[i][: encoded["offset_mapping"][i][limit - 1][1]] if fast else tokenizer.decode(ids[:limit])
                out.append(text)
                total += limit
            else:
                out.append(texts[i])
                total += len(ids)
        return out, total

    # ------------------------------------------------------------------ responses
    def cohere_v1(
        self, ranked: Ranked, documents: list[Any], texts: list[str], top_n: int | None, return_documents: bool
    ) -> dict:
        results = []
        for i in _cut(ranked.order, top_n):
            item: dict[str, Any] = {
                "index": i,
                "relevance_score": ranked.relevance[i],
                "raw_score": json_score(ranked.raw[i]),
            }
            if return_documents:
                item["document"] = _returned_document(documents[i], texts[i])
            results.append(item)
        return {
            "id": str(uuid.uuid4()),
            "model": self.model_name,
            "results": results,
            "usage": {"prompt_tokens": ranked.tokens, "total_tokens": ranked.tokens},
            "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": math.ceil(len(texts) / 100)}},
        }

    def cohere_v2(
        self, ranked: Ranked, documents: list[Any], texts: list[str], top_n: int | None, return_documents: bool
    ) -> dict:
        body = self.cohere_v1(ranked, documents, texts, top_n, return_documents)
        body["meta"]["api_version"]["version"] = "2"
        return body

    def tei(self, ranked: Ranked, texts: list[str], raw_scores: bool, return_text: bool) -> list[dict]:
        results = []
        for i in ranked.order:
            item: dict[str, Any] = {
                "index": i,
                "score": json_score(ranked.raw[i]) if raw_scores else ranked.relevance[i],
            }
            if return_text:
                item["text"] = texts[i]
            results.append(item)
        return results


def _cut(order: list[int], top_n: int | None) -> list[int]:
    return order if not top_n else order[:top_n]


def _returned_document(document: Any, text: str) -> dict:
    if isinstance(document, dict):
        return document if isinstance(document.get("text"), str) else {**document, "text": text}
    return {"text": text}
