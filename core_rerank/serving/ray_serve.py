"""The same app on Ray Serve: ``@serve.ingress`` on ``create_app``'s app, one model per replica.

Each replica loads its own reranker, sets its torch threads, and builds the app around it
(``__serve_build_asgi_app__``: Ray builds the ingress app after the constructor), so the
routes, limits and errors are the uvicorn server's. Ray's proxy spreads requests over the
replicas; ``max_ongoing_requests`` is a replica's queue plus the request it runs, and
``max_queued_requests`` bounds what waits in the proxy (503 beyond it).

Local cluster on a small machine: the replicas ask for ``threads_per_replica`` CPUs each and the
cluster is started with one logical CPU more than they take, so a task that Ray needs besides
the replicas is never starved (the deadlock trap of ``ray.init(num_cpus=2)`` with two 1-CPU
actors).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from ray import serve

from .app import create_app


@serve.deployment(name="core-rerank")
@serve.ingress()
class CoReRerankDeployment:
    """One replica: a reranker and the app around it."""

    def __init__(self, settings: dict, app_options: dict, threads: int | None = None):
        import torch

        from ..reranker import CoReReranker

        if threads:
            torch.set_num_threads(threads)
        self.reranker = CoReReranker.from_pretrained(**settings)
        self.app_options = app_options

    def __serve_build_asgi_app__(self) -> Any:
        return create_app(self.reranker, **self.app_options)


def run_ray(
    settings: dict,
    app_options: dict,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    threads_per_replica: int = 1,
    gpus_per_replica: float = 0.0,
    ray_address: str | None = None,
    max_queue: int = 64,
    log: Any = print,
) -> int:
    """Start (or join) Ray, deploy ``replicas`` replicas behind Ray's HTTP proxy, and serve until
    SIGTERM or SIGINT; then drain, shut Serve down and return 0."""
    import ray

    if ray_address:
        ray.init(address=ray_address, log_to_driver=False)
    else:
        cpus = max(os.cpu_count() or 1, replicas * threads_per_replica) + 1
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    timeout_s = app_options.get("timeout_s") or 120.0
    deployment = CoReRerankDeployment.options(  # type: ignore[attr-defined]
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads_per_replica, "num_gpus": gpus_per_replica},
        max_ongoing_requests=max_queue + 1,
        max_queued_requests=max(1, max_queue * replicas),
        graceful_shutdown_timeout_s=timeout_s + 5,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        deployment.bind(settings, app_options, threads_per_replica),
        name="core-rerank",
        route_prefix="/",
        blocking=False,
    )
    log(
        f"core-rerank: serving {replicas} replica(s) on Ray Serve at http://{host}:{port} "
        f"({threads_per_replica} thread(s), {gpus_per_replica:g} GPU(s) each)"
    )
    while not stop.wait(0.5):
        pass
    log("core-rerank: stopping (finishing the requests in flight)")
    serve.shutdown()
    ray.shutdown()
    return 0
