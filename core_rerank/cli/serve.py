"""``core-rerank serve``: the rerank HTTP API (Cohere v1/v2, Jina, vLLM, TEI), on uvicorn or Ray Serve."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import InputError, MissingExtra
from .options import add_model_arguments, add_reranker_arguments, reranker_settings

API_KEY_ENV = "CORE_RERANK_API_KEY"


def register(commands: Any) -> None:
    p = commands.add_parser(
        "serve",
        help="serve the rerank API (Cohere, Jina, vLLM and TEI shapes) over HTTP",
        description="Serve POST /v1/rerank, /v2/rerank and /rerank (Cohere v1/v2, Jina, vLLM, TEI), "
        "GET /health, /v1/models and /metrics. One process with uvicorn by default; "
        "--replicas/--ray-address run the same app on Ray Serve.",
    )
    add_model_arguments(p)
    add_reranker_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    p.add_argument(
        "--api-key",
        help=f"require 'Authorization: Bearer KEY' on every route but /health (default: ${API_KEY_ENV} if set)",
    )
    p.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients may send as 'model' (repeatable; the first is reported); "
        "--model and the model's own ids are always accepted",
    )
    p.add_argument(
        "--max-documents",
        type=_positive_int,
        default=1000,
        help="most documents in one request (default: 1000, like Cohere)",
    )
    p.add_argument(
        "--max-body-bytes", type=_positive_int, default=8 * 1024 * 1024, help="largest request body (default: 8 MiB)"
    )
    p.add_argument(
        "--max-queue",
        type=_non_negative_int,
        default=64,
        help="requests that may wait for the model; beyond it: 503 with Retry-After (default: 64)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds a request may take, waiting included; then 504 (default: 120; 0: none)",
    )
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    ray = p.add_argument_group("scale out on Ray Serve (pip install 'core-rerank[ray]')")
    ray.add_argument(
        "--replicas",
        type=_positive_int,
        default=1,
        help="model replicas; more than 1 runs on Ray Serve (default: 1, uvicorn)",
    )
    ray.add_argument(
        "--threads-per-replica",
        type=_positive_int,
        help="torch threads (and Ray CPUs) of each replica (default: --threads, else 1)",
    )
    ray.add_argument(
        "--gpus-per-replica", type=float, default=0.0, help="GPUs of each replica (fractions allowed; default: 0)"
    )
    ray.add_argument(
        "--ray-address", help="join a running Ray cluster ('auto' or ray://host:port) instead of starting a local one"
    )
    ray.add_argument("--ray", action="store_true", help="use Ray Serve even with one replica")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise MissingExtra(
            f"core-rerank serve needs the serve extra: pip install 'core-rerank[serve]' ({exc})"
        ) from None
    if args.gpus_per_replica < 0:
        raise InputError("--gpus-per-replica must be >= 0")
    # OpenMP threads that spin while they wait (libgomp's default) take the cores from each other
    # and from every other process on a busy machine: 30 documents took 40-57 s with 2 spinning
    # threads on 2 shared cores, 7-12 s with passive waits (or one thread). Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    app_options = dict(
        model_names=_model_names(args),
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        max_documents=args.max_documents,
        max_queue=args.max_queue,
        timeout_s=args.timeout or None,
        max_body_bytes=args.max_body_bytes,
    )
    use_ray = args.replicas > 1 or args.ray_address or args.ray or args.gpus_per_replica > 0
    settings = reranker_settings(args)
    if use_ray:
        try:
            from ..serving.ray_serve import run_ray
        except ImportError as exc:
            raise MissingExtra(
                f"--replicas/--ray-address need the ray extra: pip install 'core-rerank[ray]' ({exc})"
            ) from None
        settings = settings.replace(threads=args.threads_per_replica or args.threads or 1)
        if args.gpus_per_replica > 0 and not settings.device:
            settings = settings.replace(device="cuda")
        return run_ray(
            settings,
            app_options,
            host=args.host,
            port=args.port,
            replicas=args.replicas,
            gpus_per_replica=args.gpus_per_replica,
            ray_address=args.ray_address,
            log=_log,
        )
    from ..serving import create_app
    from ..serving.server import run_uvicorn

    reranker = settings.replace(threads=args.threads or args.threads_per_replica).load()
    app = create_app(reranker, **app_options)
    _log(
        f"core-rerank: serving {reranker.model_id} at http://{args.host}:{args.port} "
        f"(auth: {'on' if app_options['api_key'] else 'off'}, torch threads: {_torch_threads()}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})"
    )
    return run_uvicorn(
        app, host=args.host, port=args.port, log_level=args.log_level, graceful_timeout_s=(args.timeout or 120.0) + 5
    )


def _model_names(args: argparse.Namespace) -> list[str]:
    """Names a request's ``model`` may use: --served-model-name, --model, and the model's own ids."""
    names = [*args.served_model_name, args.model]
    try:
        from ..loading import resolve_source

        names += list(resolve_source(args.model, fetch=False).model_ids)
    except (FileNotFoundError, ValueError, OSError):
        pass
    return list(dict.fromkeys(names))


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value
