"""The HTTP app: one FastAPI app, served by uvicorn or, on Ray Serve, by the ingress replica.

Routes: ``POST /v1/rerank`` and ``POST /rerank`` (Cohere v1 = Jina = vLLM; TEI on ``/rerank``
when the body has ``texts``), ``POST /v2/rerank`` (Cohere v2), ``GET /health``,
``GET /v1/models``, ``GET /metrics``. Every bad request is a 4xx whose ``message`` says what is
wrong; a bug of ours is a 500 in the same JSON shape with an ``error_id`` that is also in the
log. With an API key every route but ``/health`` needs ``Authorization: Bearer KEY``.

The app scores through a *scorer*: ``service.LocalScorer`` (the model in this process) or, on
Ray Serve, ``ray_serve.HandleScorer`` (model replicas behind a handle, with retries).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import InputError
from ..first_stage import check_first_stage_scores
from . import dialects
from .errors import APIError
from .metrics import Metrics
from .schemas import (
    Health,
    ModelList,
    RerankRequest,
    RerankRequestV2,
    RerankResponse,
    TEIRerankRequest,
    TEIResult,
    describe_validation_error,
    document_text,
    span_options,
)
from .service import LocalScorer, RerankService

logger = logging.getLogger("core_rerank.serving")
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_JSON_DEPTH = 64  # deeper bodies are refused (400) before anything walks them recursively
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
DIALECT_ROUTES = ("/v1/ranking", "/score", "/v1/score", "/.well-known/ready", "/.well-known/live", "/meta")
OPEN_ROUTES = ("/health", "/.well-known/ready", "/.well-known/live")  # probes answer without the API key
KNOWN_ROUTES = (*RERANK_ROUTES, "/health", "/v1/models", "/metrics", *DIALECT_ROUTES)


def create_app(
    reranker: Any = None,
    *,
    factory: "Callable[[], Any] | None" = None,
    scorer: Any = None,
    model_names: "list[str] | None" = None,
    api_key: str | None = None,
    max_documents: int = 1000,
    max_queue: int = 64,
    timeout_s: float | None = 120.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The app around one of: ``reranker`` (a ``CoReReranker``), ``factory()`` (called once at
    startup, before the port answers) or ``scorer`` (anything with ``LocalScorer``'s interface)."""
    if sum(x is not None for x in (reranker, factory, scorer)) != 1:
        raise ValueError("give create_app exactly one of reranker, factory or scorer")
    state: dict[str, Any] = {}

    def build_service(model: Any = None) -> RerankService:
        backend = scorer if scorer is not None else LocalScorer(model, max_queue=max_queue, timeout_s=timeout_s)
        return RerankService(backend, model_names, max_documents=max_documents)

    if factory is None:
        state["service"] = build_service(reranker)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if "service" not in state and factory is not None:
            state["service"] = build_service(factory())
        yield
        state["service"].scorer.close()

    app = FastAPI(
        title="core-rerank",
        summary="CoRe attention-head reranking, in the rerank APIs clients already speak",
        lifespan=lifespan,
    )
    app.state.core_rerank = state
    app.state.metrics = Metrics(
        {
            "core_rerank_queue_depth": ("Requests waiting for the model.", lambda: _gauge(state, "queue_depth")),
            "core_rerank_in_flight": ("Requests waiting or running.", lambda: _gauge(state, "in_flight")),
            "core_rerank_replica_retries": (
                "Requests sent again after their model replica died (Ray Serve).",
                lambda: _gauge(state, "retries"),
            ),
        }
    )
    _install_error_handlers(app)
    _install_guard(app, api_key)
    _add_rerank_routes(app, lambda: state["service"], max_body_bytes)
    _add_dialect_routes(app, lambda: state["service"], max_body_bytes)
    _add_info_routes(app, lambda: state["service"])
    return app


def _gauge(state: dict[str, Any], name: str) -> float:
    return getattr(state["service"].scorer, name, 0) if "service" in state else 0


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    return {"message": message, "type": kind, "code": status}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no such route; this server answers {', '.join(KNOWN_ROUTES)}"
        return JSONResponse(
            error_body(exc.status_code, message, "invalid_request_error"),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )


def _install_guard(app: FastAPI, api_key: str | None) -> None:
    """Auth on every route but ``/health``, a JSON 500 (with an error id in the log) for our
    bugs, and per-route metrics."""
    expected = api_key.encode() if api_key else None
    metrics: Metrics = app.state.metrics

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        if expected is not None and path not in OPEN_ROUTES and not _authorized(request, expected):
            metrics.observe(_route(path), 401, time.perf_counter() - start)
            return JSONResponse(
                error_body(401, "missing or wrong API key: send 'Authorization: Bearer KEY'", "authentication_error"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            response = await call_next(request)
        except Exception as exc:  # a bug, not a bad request: say so, log it with an id, keep serving
            error_id = uuid.uuid4().hex[:12]
            logger.exception("internal error %s while answering %s", error_id, path)
            body = error_body(500, f"internal error {error_id}: {type(exc).__name__}: {exc}", "internal_error")
            response = JSONResponse({**body, "error_id": error_id}, status_code=500)
        if path != "/metrics":
            documents = getattr(request.state, "documents", 0) if response.status_code < 400 else 0
            metrics.observe(_route(path), response.status_code, time.perf_counter() - start, documents)
        return response


def _authorized(request: Request, expected: bytes) -> bool:
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


async def read_json(request: Request, max_body_bytes: int) -> dict:
    """The body as a JSON object, or a 4xx saying why not (too large, empty, not JSON, too deep)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body_bytes:
        raise APIError(
            413,
            f"the body has {length} bytes, over the limit of {max_body_bytes} (--max-body-bytes)",
            "request_too_large",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise APIError(
                413, f"the body is over the limit of {max_body_bytes} bytes (--max-body-bytes)", "request_too_large"
            )
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise APIError(400, "the body is empty: send a JSON object")
    try:
        body = json.loads(raw)
    except RecursionError:
        raise APIError(400, f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    except ValueError as exc:  # not JSON, or a number Python will not convert (e.g. 5000 digits)
        raise APIError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise APIError(400, f"the body must be a JSON object, not a JSON {type(body).__name__}")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise APIError(400, f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
    return body


def json_depth(value: Any) -> int:
    """Nesting depth of parsed JSON, walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def parse(model: "type[BaseModel]", body: dict) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise APIError(400, f"invalid request: {describe_validation_error(exc)}") from None


def first_stage(value: Any, count: int) -> list[float] | None:
    """A request's checked ``first_stage_scores`` (``None`` when absent); a bad value is 422, as
    a bad ``relevant_spans`` is."""
    try:
        return check_first_stage_scores(value, count)
    except InputError as exc:
        raise APIError(422, f"invalid request: first_stage_scores: {exc}") from None


def _schema(model: "type[BaseModel]") -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


def _add_rerank_routes(app: FastAPI, service: Callable[[], RerankService], max_body_bytes: int) -> None:
    async def cohere(request: Request, version: int, body: "dict | None" = None, weaviate: bool = False) -> dict:
        body = await read_json(request, max_body_bytes) if body is None else body
        req = parse(RerankRequestV2 if version == 2 else RerankRequest, body)
        svc = service()
        svc.check_model(req.model)
        svc.check_documents(len(req.documents))
        try:
            texts = [document_text(d, i, getattr(req, "rank_fields", None)) for i, d in enumerate(req.documents)]
        except ValueError as exc:
            raise APIError(400, f"invalid request: {exc}") from None
        request.state.documents = len(texts)
        try:
            spans = span_options(getattr(req, "relevant_spans", None))
        except InputError as exc:
            raise APIError(422, f"invalid request: relevant_spans: {exc}") from None
        firsts = first_stage(req.first_stage_scores, len(texts))
        ranked = await svc.rank(req.query, texts, req.max_tokens_per_doc, spans, firsts)
        return_documents = req.return_documents if req.return_documents is not None else version == 1
        reply = svc.cohere(ranked, req.documents, texts, req.top_n, return_documents, version)
        return {**reply, **dialects.weaviate_fields(req.query, ranked, texts)} if weaviate else reply

    options: dict[str, Any] = {"response_model_exclude_unset": True}

    @app.post(
        "/v1/rerank",
        openapi_extra=_schema(RerankRequest),
        response_model=RerankResponse | dialects.VoyageResponse,
        summary="Cohere v1 / Jina / vLLM rerank; Voyage rerank when the body has 'top_k' or 'truncation'",
        **options,
    )
    async def rerank_v1(request: Request) -> Any:
        body = await read_json(request, max_body_bytes)
        if not dialects.is_voyage(body):
            return await cohere(request, 1, body)
        try:
            return await voyage(request, body)
        except APIError as exc:
            raise dialects.as_voyage_error(exc) from None

    async def voyage(request: Request, body: dict) -> dict:
        req = parse(dialects.VoyageRerankRequest, body)
        svc = service()
        svc.check_model(req.model)
        request.state.documents = len(req.documents)
        firsts = first_stage(req.first_stage_scores, len(req.documents))
        ranked = await svc.rank(req.query, req.documents, first_stage_scores=firsts)
        return dialects.voyage_body(ranked, req.documents, svc.model_name, req.top_k, req.return_documents)

    @app.post(
        "/v2/rerank",
        openapi_extra=_schema(RerankRequestV2),
        response_model=RerankResponse,
        summary="Cohere v2 rerank",
        **options,
    )
    async def rerank_v2(request: Request) -> Any:
        return await cohere(request, 2)

    @app.post(
        "/rerank",
        openapi_extra=_schema(RerankRequest),
        response_model=RerankResponse | list[TEIResult],
        summary="Jina / vLLM / Weaviate rerank (+ query, scores); TEI rerank when the body has 'texts'",
        **options,
    )
    async def rerank(request: Request) -> Any:
        body = await read_json(request, max_body_bytes)
        if "texts" not in body or "documents" in body:
            return await cohere(request, 1, body, weaviate=True)
        req = parse(TEIRerankRequest, body)
        svc = service()
        request.state.documents = len(req.texts)
        firsts = first_stage(req.first_stage_scores, len(req.texts))
        ranked = await svc.rank(req.query, req.texts, first_stage_scores=firsts)
        return svc.tei(ranked, req.texts, req.raw_scores, req.return_text)


def _add_dialect_routes(app: FastAPI, service: Callable[[], RerankService], max_body_bytes: int) -> None:
    """NVIDIA NIM ranking, vLLM score, and Weaviate's readiness and meta (``dialects``)."""

    async def ranked_for(request: Request, model: str | None, query: str, texts: list[str], firsts: Any = None) -> Any:
        svc = service()
        svc.check_model(model)
        request.state.documents = len(texts)
        return svc, await svc.rank(query, texts, first_stage_scores=first_stage(firsts, len(texts)))

    async def nim(request: Request) -> Any:
        req = parse(dialects.NIMRankingRequest, await read_json(request, max_body_bytes))
        passages = [p.text for p in req.passages]
        _, ranked = await ranked_for(request, req.model, req.query.text, passages, req.first_stage_scores)
        return dialects.nim_body(ranked, req.top_k)

    nim_route: dict[str, Any] = {
        "openapi_extra": _schema(dialects.NIMRankingRequest),
        "response_model": dialects.NIMResponse,
    }
    app.post("/v1/ranking", summary="NVIDIA NIM ranking", **nim_route)(nim)
    app.post("/v1/retrieval/{model_path:path}/reranking", summary="NVIDIA NIM (hosted path)", **nim_route)(nim)

    async def score(request: Request) -> Any:
        req = parse(dialects.ScoreRequest, await read_json(request, max_body_bytes))
        try:
            query, texts = req.pair_inputs()
        except ValueError as exc:
            raise APIError(400, f"invalid request: {exc}") from None
        svc, ranked = await ranked_for(request, req.model, query, texts)
        return dialects.score_body(ranked, svc.model_name)

    for path in ("/score", "/v1/score"):
        app.post(
            path,
            openapi_extra=_schema(dialects.ScoreRequest),
            response_model=dialects.ScoreResponse,
            summary="vLLM score: one text_1 against each text_2",
        )(score)

    @app.get("/.well-known/ready", status_code=204, summary="readiness (Weaviate)")
    @app.get("/.well-known/live", status_code=204, summary="liveness (Weaviate)")
    async def ready() -> Response:
        try:
            service()
        except KeyError:
            raise APIError(503, "the model is still loading", "server_busy") from None
        return Response(status_code=204)

    @app.get("/meta", summary="the served model and its settings (Weaviate)")
    async def meta() -> dict:
        svc = service()
        return {"model": {"name": svc.model_name, "names": svc.model_names, **(await svc.scorer.settings())}}


def _add_info_routes(app: FastAPI, service: Callable[[], RerankService]) -> None:
    @app.get("/health", response_model=Health)
    async def health() -> dict:
        svc = service()
        return {"status": "ok", "model": svc.model_name, "queue_depth": getattr(svc.scorer, "queue_depth", 0)}

    @app.get("/v1/models", response_model=ModelList)
    async def models() -> dict:
        svc = service()
        settings = await svc.scorer.settings()
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "core-rerank", "root": svc.model_name, "settings": settings}
                for name in svc.model_names
            ],
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def _route(path: str) -> str:
    return path if path in KNOWN_ROUTES else "other"
