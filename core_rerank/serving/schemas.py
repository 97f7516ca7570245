"""Request and response bodies of the rerank dialects the server speaks.

Field names follow the services they imitate (``docs/serving.md`` in the shared notes):
Cohere v1 = Jina = vLLM on ``/v1/rerank`` and ``/rerank``, Cohere v2 on ``/v2/rerank``, and
Hugging Face TEI on ``/rerank`` when the body has ``texts``. Requests are validated strictly
(``"3"`` is not a number, ``1.5`` is not an integer); fields a client sends that no dialect here
uses are ignored, so that every client's extras pass.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import InputError


def check_query(value: str) -> str:
    if not value.strip():
        raise InputError("query is empty: reranking needs a query with some text")
    return value


FIRST_STAGE_FIELD = Field(
    default=None,
    description=(
        "optional: the first stage's score of each document (numbers, one per document, higher is better); "
        "the prompts are built in this order instead of the documents' order (mixed into the scores only "
        "when the heads' scoring.first_stage_weight is above 0)"
    ),
    json_schema_extra={"anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]},
)


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    model: str | None = None
    query: str
    top_n: int | None = Field(default=None, description="documents returned; 0 or absent: all")
    first_stage_scores: Any = FIRST_STAGE_FIELD

    _query_has_text = field_validator("query")(check_query)

    @field_validator("top_n")
    @classmethod
    def _top_n_not_negative(cls, value: int | None) -> int | None:
        if value is not None and value < 0:
            raise InputError("top_n must be >= 0 (0 or absent returns every document)")
        return value


class RerankRequest(_Request):
    """Cohere v1, Jina and vLLM (``POST /v1/rerank``, ``POST /rerank``)."""

    documents: list[str | dict[str, Any]]
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None  # accepted for Cohere v1 clients; no chunking here
    max_tokens_per_doc: int | None = Field(default=None, gt=0)


class RerankRequestV2(_Request):
    """Cohere v2 (``POST /v2/rerank``)."""

    documents: list[str | dict[str, Any]]
    max_tokens_per_doc: int | None = Field(default=4096, gt=0)
    return_documents: bool | None = None
    relevant_spans: Any = Field(
        default=None, description='{mode: "enabled"|"disabled", threshold (0.1), max_spans}: checked by span_options'
    )


class RelevantSpansRequest(BaseModel):
    """Cohere v2 ``relevant_spans``. An object without ``mode`` asks for spans."""

    model_config = ConfigDict(strict=True, extra="ignore")
    mode: Literal["enabled", "disabled"] = "enabled"
    threshold: float = Field(default=0.1, ge=0.0, le=1.0)
    max_spans: int | None = Field(default=None, ge=1)


def span_options(value: Any) -> dict[str, Any] | None:
    """``rerank(relevant_spans=...)`` settings from a v2 request's field (``None``: no spans);
    a bad value is an ``InputError`` (the route answers 422)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError('relevant_spans must be an object {mode: "enabled"|"disabled", threshold, max_spans}')
    try:
        options = RelevantSpansRequest.model_validate(value)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc)) from None
    if options.mode == "disabled":
        return None
    return {"threshold": options.threshold, "max_spans": options.max_spans}


class TEIRerankRequest(BaseModel):
    """Hugging Face text-embeddings-inference (``POST /rerank`` with ``texts``).

    ``truncate``: documents are always cut from the right to the server's ``--max-doc-words``
    (and a rerank never fails for length: long lists are split into windows), so ``true`` and
    ``false`` behave alike; ``truncation_direction: "left"`` is refused, as nothing here cuts
    from the left.
    """

    model_config = ConfigDict(strict=True, extra="ignore")
    query: str
    texts: list[str]
    truncate: bool | None = False
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    raw_scores: bool = False
    return_text: bool = False
    first_stage_scores: Any = FIRST_STAGE_FIELD

    _query_has_text = field_validator("query")(check_query)

    @field_validator("truncation_direction")
    @classmethod
    def _right_only(cls, value: str) -> str:
        if value.lower() != "right":
            raise InputError(
                "truncation_direction 'left' is not supported: documents are cut from the right "
                "(to the server's --max-doc-words words)"
            )
        return value


def document_text(doc: Any, index: int, rank_fields: list[str] | None = None) -> str:
    """The text scored for one request document (a string, or an object's ``text`` or
    ``rank_fields``, Cohere v1's way of ranking structured documents: ``"field: value"`` lines)."""
    if isinstance(doc, str):
        return doc
    if rank_fields:
        missing = [f for f in rank_fields if f not in doc]
        if missing:
            raise InputError(f"documents.{index}: has no field {missing[0]!r} named in rank_fields")
        return "\n".join(f"{f}: {_field_text(doc[f])}" for f in rank_fields)
    text = doc.get("text")
    if not isinstance(text, str):
        raise InputError(
            f'documents.{index}: a document object needs a "text" string (or name its fields in rank_fields)'
        )
    return text


def _field_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


_UNION_MEMBERS = ("str", "dict[str,any]")


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per problem: ``documents.3: Input should be a valid string``."""
    lines = []
    for item in error.errors(include_url=False):
        loc = item.get("loc", ())
        location = ".".join(str(p) for p in loc if p not in _UNION_MEMBERS)
        message = item.get("msg", "invalid value")
        if loc and loc[-1] in _UNION_MEMBERS:
            message = 'a document must be a string or an object with a "text" string'
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if item.get("type") == "missing":
            message = "field required"
        lines.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(lines))


# ---------------------------------------------------------------------- responses
class RerankResultItem(BaseModel):
    """One ranked document: ``relevance_score`` in [0, 1] (min-max over the request's list),
    ``raw_score`` the listwise score (``null`` for an empty document)."""

    index: int
    relevance_score: float
    raw_score: float | None
    document: dict[str, Any] | None = Field(default=None, description="present when return_documents")
    relevant_spans: list[dict[str, Any]] | None = Field(
        default=None, description="v2 with relevant_spans enabled: [{start, end, score}] best first"
    )


class Usage(BaseModel):
    prompt_tokens: int = Field(description="tokens of the prompts that ran (every window)")
    total_tokens: int = Field(description="prompt_tokens plus the query part of each window's N/A twin")


class RerankResponse(BaseModel):
    """Cohere v1 / v2, Jina and vLLM rerank response."""

    id: str
    model: str
    results: list[RerankResultItem]
    usage: Usage
    meta: dict[str, Any]
    query: str | None = Field(default=None, description="POST /rerank only: the query (Weaviate reads it)")
    scores: list[dict[str, Any]] | None = Field(
        default=None, description="POST /rerank only: [{document, score}] in input order (Weaviate)"
    )


class TEIResult(BaseModel):
    index: int
    score: float | None = Field(description="relevance_score, or the raw score with raw_scores: true")
    text: str | None = Field(default=None, description="present when return_text")


class Health(BaseModel):
    status: str
    model: str
    queue_depth: int


class ModelCard(BaseModel):
    id: str
    object: str = "model"
    owned_by: str = "core-rerank"
    root: str
    settings: dict[str, Any] = Field(
        default_factory=dict, description="the reranker actually built: dtype, layers, window_tokens, heads, ..."
    )


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelCard]
