"""The wire formats that are not Cohere, Jina, vLLM rerank or TEI: Voyage, Weaviate's
reranker-transformers, NVIDIA NIM ranking and vLLM's score API (field by field in the shared
notes, ``databases.md`` section 3).

- **Voyage** (``POST /v1/rerank`` when the body has ``top_k`` or ``truncation``, which no Cohere or
  Jina client sends): ``{object: "list", data: [{index, relevance_score, document?}], model,
  usage: {total_tokens}}``, best first, cut to ``top_k``; errors also carry ``detail``, the field
  the voyageai SDK reads.
- **Weaviate** (``POST /rerank {query, documents}``): the Jina/vLLM reply plus ``query`` and
  ``scores: [{document, score}]`` in input order. Weaviate sends at most 32 documents a request,
  and each request is scored on its own: scores of two chunks are not comparable.
- **NVIDIA NIM** (``POST /v1/ranking``, and the hosted path ``/v1/retrieval/{model}/reranking``):
  ``{rankings: [{index, logit}]}`` best first. ``logit`` is the server's ``relevance_score`` in
  [0, 1] (CoRe has no cross-encoder logit; the listwise raw score is in ``raw_score``).
- **vLLM score** (``POST /score``, ``/v1/score``): one ``text_1`` broadcast over ``text_2``;
  ``data`` in input order. CoRe ranks one query's list, so pairs of different queries are refused.

Every score is the server's ``relevance_score`` (``core_rerank.serving.service``).
``truncation`` / ``truncate`` are accepted but change nothing: documents are always cut to the
server's ``--max-doc-words`` and long lists are split into windows, so no request fails for length.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import InputError
from ..utils import json_float
from .errors import APIError
from .schemas import FIRST_STAGE_FIELD, check_query
from .service import Ranked

VOYAGE_KEYS = ("top_k", "truncation")


def is_voyage(body: dict) -> bool:
    """A ``/v1/rerank`` body from a Voyage client (``top_k`` or ``truncation``, never sent by Cohere or Jina)."""
    return any(key in body for key in VOYAGE_KEYS)


class VoyageAPIError(APIError):
    """An error answered to a Voyage client: the usual body plus ``detail``, which the SDK shows."""

    def body(self) -> dict:
        return {**super().body(), "detail": self.message}


def as_voyage_error(exc: APIError) -> VoyageAPIError:
    return VoyageAPIError(exc.status, exc.message, exc.kind, exc.headers)


# ---------------------------------------------------------------------- requests
class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class VoyageRerankRequest(_Strict):
    """Voyage (``POST /v1/rerank`` with ``top_k`` or ``truncation``)."""

    model: str | None = None
    query: str
    documents: list[str]
    top_k: int | None = Field(default=None, gt=0, description="documents returned; absent: all")
    truncation: bool = True
    return_documents: bool = False
    first_stage_scores: Any = FIRST_STAGE_FIELD

    _query_has_text = field_validator("query")(check_query)


class NIMText(_Strict):
    text: str


class NIMRankingRequest(_Strict):
    """NVIDIA NIM (``POST /v1/ranking``): ``{model, query: {text}, passages: [{text}], truncate}``."""

    model: str | None = None
    query: NIMText
    passages: list[NIMText]
    truncate: Literal["NONE", "END"] = "END"
    top_k: int | None = Field(default=None, gt=0, description="sent by LiteLLM's legacy NIM route")
    first_stage_scores: Any = FIRST_STAGE_FIELD

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, value: NIMText) -> NIMText:
        check_query(value.text)
        return value


class ScoreRequest(_Strict):
    """vLLM score (``POST /score``, ``/v1/score``): ``text_1`` (one query) against each ``text_2``."""

    model: str | None = None
    text_1: str | list[str]
    text_2: str | list[str]
    truncate_prompt_tokens: int | None = None  # accepted; documents are cut to --max-doc-words

    def pair_inputs(self) -> tuple[str, list[str]]:
        """(the one query, the documents): a single ``text_1`` (or the same one repeated) is broadcast."""
        documents = [self.text_2] if isinstance(self.text_2, str) else self.text_2
        queries = [self.text_1] if isinstance(self.text_1, str) else self.text_1
        if not queries:
            raise InputError("text_1 is empty: send the query as text_1")
        if len(set(queries)) > 1:
            raise InputError(
                "CoRe ranks one query's list of documents: send one text_1 (broadcast over text_2), "
                "not pairs of different queries"
            )
        if len(queries) > 1 and len(queries) != len(documents):
            raise InputError(f"text_1 has {len(queries)} entries and text_2 {len(documents)}: send one text_1")
        return check_query(queries[0]), documents


# ---------------------------------------------------------------------- responses
class VoyageResult(BaseModel):
    index: int
    relevance_score: float
    document: str | None = None


class VoyageUsage(BaseModel):
    total_tokens: int


class VoyageResponse(BaseModel):
    object: str = "list"
    data: list[VoyageResult]
    model: str
    usage: VoyageUsage


class NIMRanking(BaseModel):
    index: int
    logit: float
    raw_score: float | None = None


class NIMResponse(BaseModel):
    id: str
    rankings: list[NIMRanking]
    usage: dict[str, int]


class ScoreData(BaseModel):
    index: int
    object: str = "score"
    score: float


class ScoreResponse(BaseModel):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: dict[str, int]


def voyage_body(ranked: Ranked, texts: list[str], model: str, top_k: int | None, return_documents: bool) -> dict:
    data = []
    for i in ranked.order[:top_k] if top_k else ranked.order:
        item: dict[str, Any] = {"index": i, "relevance_score": ranked.relevance[i]}
        if return_documents:
            item["document"] = texts[i]
        data.append(item)
    return {"object": "list", "data": data, "model": model, "usage": {"total_tokens": ranked.total_tokens}}


def weaviate_fields(query: str, ranked: Ranked, texts: list[str]) -> dict:
    """What Weaviate's reranker-transformers client reads: ``query`` and the scores in input order."""
    return {"query": query, "scores": [{"document": t, "score": ranked.relevance[i]} for i, t in enumerate(texts)]}


def _usage(ranked: Ranked) -> dict[str, int]:
    return {"prompt_tokens": ranked.prompt_tokens, "total_tokens": ranked.total_tokens}


def nim_body(ranked: Ranked, top_k: int | None) -> dict:
    rankings = [
        {"index": i, "logit": ranked.relevance[i], "raw_score": json_float(ranked.raw[i])}
        for i in (ranked.order[:top_k] if top_k else ranked.order)
    ]
    return {"id": str(uuid.uuid4()), "rankings": rankings, "usage": _usage(ranked)}


def score_body(ranked: Ranked, model: str) -> dict:
    return {
        "id": f"score-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(ranked.relevance)],
        "usage": {**_usage(ranked), "completion_tokens": 0},
    }
