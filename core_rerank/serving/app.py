"""The HTTP app: one FastAPI app, served by uvicorn or by Ray Serve (``@serve.ingress``).

Routes: ``POST /v1/rerank`` and ``POST /rerank`` (Cohere v1 = Jina = vLLM; TEI on ``/rerank``
when the body has ``texts``), ``POST /v2/rerank`` (Cohere v2), ``GET /health``,
``GET /v1/models``, ``GET /metrics``. Every bad request is a 4xx whose ``message`` says what is
wrong; with an API key every route but ``/health`` needs ``Authorization: Bearer KEY``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import APIError
from .metrics import Metrics
from .schemas import RerankRequest, RerankRequestV2, TEIRerankRequest, describe_validation_error, document_text
from .service import RerankService

logger = logging.getLogger("core_rerank.serving")
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
RERANK_ROUTES = ("/v1/rerank", "/v2/rerank", "/rerank")
KNOWN_ROUTES = (*RERANK_ROUTES, "/health", "/v1/models", "/metrics")


def create_app(
    reranker: Any = None,
    *,
    factory: "Callable[[], Any] | None" = None,
    model_names: "list[str] | None" = None,
    api_key: str | None = None,
    max_documents: int = 1000,
    max_queue: int = 64,
    timeout_s: float | None = 120.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The app around ``reranker`` (a ``CoReReranker``), or around ``factory()``, called once
    at startup (before the port answers)."""
    if (reranker is None) == (factory is None):
        raise ValueError("give create_app a reranker or a factory, not both")
    state: dict[str, Any] = {}
    metrics = Metrics(
        {
            "core_rerank_queue_depth": (
                "Requests waiting for the model.",
                lambda: state["service"].worker.queue_depth if "service" in state else 0,
            ),
            "core_rerank_in_flight": (
                "Requests waiting or running.",
                lambda: state["service"].worker.in_flight if "service" in state else 0,
            ),
        }
    )

    def build_service(model: Any) -> RerankService:
        return RerankService(model, model_names, max_documents=max_documents, max_queue=max_queue, timeout_s=timeout_s)

    if reranker is not None:
        state["service"] = build_service(reranker)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if "service" not in state and factory is not None:
            state["service"] = build_service(factory())
        yield
        state["service"].worker.close()

    app = FastAPI(
        title="core-rerank",
        summary="CoRe attention-head reranking, in the rerank APIs clients already speak",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.core_rerank = state

    def service() -> RerankService:
        return state["service"]

    # ------------------------------------------------------------------ errors
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no such route; this server answers {', '.join(KNOWN_ROUTES)}"
        return JSONResponse(
            {"message": message, "type": "invalid_request_error", "code": exc.status_code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    # ------------------------------------------------------------------ auth, limits, metrics
    expected = api_key.encode() if api_key else None

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        start = time.perf_counter()
        path = request.url.path
        if expected is not None and path != "/health":
            scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
                response = JSONResponse(
                    {
                        "message": "missing or wrong API key: send 'Authorization: Bearer KEY'",
                        "type": "authentication_error",
                        "code": 401,
                    },
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                metrics.observe(_route(path), 401, time.perf_counter() - start)
                return response
        try:
            response = await call_next(request)
        except Exception as exc:  # a bug, not a bad request: say so, log it, keep serving
            logger.exception("error while answering %s", path)
            response = JSONResponse(
                {"message": f"internal error: {type(exc).__name__}: {exc}", "type": "internal_error", "code": 500},
                status_code=500,
            )
        if path != "/metrics":
            metrics.observe(
                _route(path),
                response.status_code,
                time.perf_counter() - start,
                getattr(request.state, "documents", 0) if response.status_code < 400 else 0,
            )
        return response

    async def read_json(request: Request) -> dict:
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
        except ValueError as exc:
            raise APIError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise APIError(400, f"the body must be a JSON object, not a JSON {type(body).__name__}")
        return body

    def parse(model: "type[BaseModel]", body: dict) -> Any:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise APIError(400, f"invalid request: {describe_validation_error(exc)}") from None

    # ------------------------------------------------------------------ rerank routes
    async def cohere(request: Request, version: int, body: "dict | None" = None) -> dict:
        body = await read_json(request) if body is None else body
        req = parse(RerankRequestV2 if version == 2 else RerankRequest, body)
        svc = service()
        svc.check_model(req.model)
        svc.check_documents(len(req.documents))
        rank_fields = getattr(req, "rank_fields", None)
        try:
            texts = [document_text(d, i, rank_fields) for i, d in enumerate(req.documents)]
        except ValueError as exc:
            raise APIError(400, f"invalid request: {exc}") from None
        request.state.documents = len(texts)
        ranked = await svc.rank(req.query, texts, req.max_tokens_per_doc)
        if version == 2:
            return svc.cohere_v2(ranked, req.documents, texts, req.top_n, bool(req.return_documents))
        return_documents = True if req.return_documents is None else req.return_documents
        return svc.cohere_v1(ranked, req.documents, texts, req.top_n, return_documents)

    schema = {
        name: {
            "requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}
        }
        for name, model in (("v1", RerankRequest), ("v2", RerankRequestV2), ("tei", TEIRerankRequest))
    }

    @app.post("/v1/rerank", openapi_extra=schema["v1"], summary="Cohere v1 / Jina / vLLM rerank")
    async def rerank_v1(request: Request) -> Any:
        return await cohere(request, 1)

    @app.post("/v2/rerank", openapi_extra=schema["v2"], summary="Cohere v2 rerank")
    async def rerank_v2(request: Request) -> Any:
        return await cohere(request, 2)

    @app.post("/rerank", openapi_extra=schema["v1"], summary="Jina / vLLM rerank; TEI rerank when the body has 'texts'")
    async def rerank(request: Request) -> Any:
        body = await read_json(request)
        if "texts" not in body or "documents" in body:
            return await cohere(request, 1, body)
        req = parse(TEIRerankRequest, body)
        svc = service()
        svc.check_documents(len(req.texts))
        request.state.documents = len(req.texts)
        ranked = await svc.rank(req.query, req.texts)
        return svc.tei(ranked, req.texts, req.raw_scores, req.return_text)

    # ------------------------------------------------------------------ the rest
    @app.get("/health")
    async def health() -> dict:
        svc = service()
        return {"status": "ok", "model": svc.model_name, "queue_depth": svc.worker.queue_depth}

    @app.get("/v1/models")
    async def models() -> dict:
        svc = service()
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "owned_by": "core-rerank", "root": svc.model_name}
                for name in svc.model_names
            ],
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def _route(path: str) -> str:
    return path if path in KNOWN_ROUTES else "other"
