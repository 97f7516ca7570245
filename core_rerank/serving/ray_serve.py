"""The same app on Ray Serve: a light ingress replica in front of the model replicas.

- ``RerankModel`` (``--replicas`` of them): each builds its reranker from the one
  ``RerankerSettings`` (every value as given, ``None`` included) and scores behind its own
  bounded queue (``service.LocalScorer``).
- ``RerankIngress`` (one, no CPU reserved): the FastAPI app of ``create_app`` (``@serve.ingress``;
  Ray builds it after the constructor through ``__serve_build_asgi_app__``), so routes, limits
  and errors are the uvicorn server's. It scores through :class:`HandleScorer`, which calls a
  model replica through a ``DeploymentHandle`` and, when that replica dies before answering,
  retries the request on another (a rerank is a pure function of its request), a bounded number
  of times within the request's deadline. When no replica can take it: 503 with
  ``Retry-After``, in the app's JSON error shape.

Local cluster on a small machine: the model replicas ask for ``threads_per_replica`` CPUs each
and the cluster gets one logical CPU more than they take (``pool.local_cluster_cpus``), so the
tasks Ray needs besides them are never starved.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from dataclasses import asdict
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError

from ..pool import local_cluster_cpus
from ..settings import RerankerSettings
from .app import create_app
from .errors import APIError
from .service import LocalScorer, Ranked

logger = logging.getLogger("core_rerank.serving")
REPLICA_GONE = (RayActorError, ReplicaUnavailableError, DeploymentUnavailableError)
RETRY_ATTEMPTS = 3  # tries of one request on model replicas (the first included)
RETRY_PAUSE_S = 0.5  # before a retry: lets the router drop the dead replica


@serve.deployment(name="core-rerank-model")
class RerankModel:
    """One model replica: a reranker behind its own bounded queue."""

    def __init__(self, settings: RerankerSettings, max_queue: int, timeout_s: float | None):
        self.scorer = LocalScorer(settings.load(), max_queue=max_queue, timeout_s=timeout_s)

    async def rank(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None,
        relevant_spans: Any = None,
        first_stage_scores: list[float] | None = None,
    ) -> dict[str, Any]:
        """``{"ranked": Ranked fields}`` or ``{"error": APIError fields}`` (errors travel as data,
        so the ingress tells a refused request from a dead replica)."""
        try:
            ranked = await self.scorer.rank(query, texts, max_tokens_per_doc, relevant_spans, first_stage_scores)
            return {"ranked": asdict(ranked)}
        except APIError as exc:
            return {"error": {"status": exc.status, "message": exc.message, "kind": exc.kind, "headers": exc.headers}}

    async def settings(self) -> dict[str, Any]:
        return await self.scorer.settings()


class HandleScorer:
    """``LocalScorer``'s interface over the model replicas, retrying a request whose replica died."""

    def __init__(self, handle: Any, timeout_s: float | None = 120.0, attempts: int = RETRY_ATTEMPTS):
        self.handle = handle
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.model_id = None
        self.queue_depth = 0  # per replica; the ingress itself queues nothing
        self.in_flight = 0
        self.retries = 0  # requests sent again after their replica died

    async def settings(self) -> dict[str, Any]:
        return await self._call("settings")

    async def rank(
        self,
        query: str,
        texts: list[str],
        max_tokens_per_doc: int | None = None,
        relevant_spans: Any = None,
        first_stage_scores: list[float] | None = None,
    ) -> Ranked:
        self.in_flight += 1
        try:
            out = await self._call("rank", query, texts, max_tokens_per_doc, relevant_spans, first_stage_scores)
        finally:
            self.in_flight -= 1
        if "error" in out:
            e = out["error"]
            raise APIError(e["status"], e["message"], e["kind"], e["headers"])
        return Ranked(**out["ranked"])

    async def _call(self, method: str, *args: Any) -> Any:
        deadline = time.monotonic() + self.timeout_s if self.timeout_s else float("inf")
        for attempt in range(1, self.attempts + 1):
            try:
                return await getattr(self.handle, method).remote(*args)
            except BackPressureError:
                raise APIError(
                    503, "every model replica's queue is full", "server_busy", {"Retry-After": "1"}
                ) from None
            except REPLICA_GONE as exc:
                left = deadline - time.monotonic()
                logger.warning("model replica gone on attempt %d of %s: %s", attempt, method, type(exc).__name__)
                if attempt == self.attempts or left <= RETRY_PAUSE_S:
                    break
                self.retries += 1
                await asyncio.sleep(RETRY_PAUSE_S)
        raise APIError(
            503,
            f"no model replica could answer after {self.attempts} tries; retry shortly",
            "server_busy",
            {"Retry-After": "2"},
        )

    def close(self) -> None:
        pass


@serve.deployment(name="core-rerank", ray_actor_options={"num_cpus": 0})
@serve.ingress()
class RerankIngress:
    """The HTTP app, scoring on the model replicas through a handle."""

    def __init__(self, model: Any, app_options: dict):
        self.scorer = HandleScorer(model, timeout_s=app_options.get("timeout_s"))
        self.app_options = {k: v for k, v in app_options.items() if k not in ("max_queue", "timeout_s")}

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(scorer=self.scorer, **self.app_options)


def run_ray(
    settings: RerankerSettings,
    app_options: dict,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    gpus_per_replica: float = 0.0,
    ray_address: str | None = None,
    log: Any = print,
) -> int:
    """Start (or join) Ray, deploy the ingress and ``replicas`` model replicas (each with
    ``settings.threads`` CPUs) behind Ray's HTTP proxy, and serve until SIGTERM or SIGINT; then
    drain, shut Serve down and return 0."""
    import ray

    threads = settings.threads or 1
    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=local_cluster_cpus(replicas, threads), include_dashboard=False, log_to_driver=False)
    max_queue = int(app_options.get("max_queue", 64))
    timeout_s = app_options.get("timeout_s") or 120.0
    model = RerankModel.options(  # type: ignore[attr-defined]
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads, "num_gpus": gpus_per_replica},
        max_ongoing_requests=max_queue + 1,
        max_queued_requests=max(1, max_queue * replicas),
        graceful_shutdown_timeout_s=timeout_s + 5,
    )
    ingress = RerankIngress.options(max_ongoing_requests=max(100, 2 * (max_queue + 1) * replicas))  # type: ignore[attr-defined]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        ingress.bind(model.bind(settings, max_queue, app_options.get("timeout_s")), app_options),
        name="core-rerank",
        route_prefix="/",
        blocking=False,
    )
    log(
        f"core-rerank: serving {replicas} replica(s) on Ray Serve at http://{host}:{port} "
        f"({threads} thread(s), {gpus_per_replica:g} GPU(s) each)"
    )
    while not stop.wait(0.5):
        pass
    log("core-rerank: stopping (finishing the requests in flight)")
    serve.shutdown()
    ray.shutdown()
    return 0
