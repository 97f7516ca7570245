"""Command-line options shared by every command that loads a model, defined once."""

from __future__ import annotations

import argparse
from typing import Any

from ..head_config import METHODS
from ..pool import require_ray, uses_ray
from ..settings import RerankerSettings
from ..utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model --device --dtype --max-doc-words --threads``: which model, where, how documents are cut."""
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"registered offline name, hub id, local directory or .gguf file (default: {DEFAULT_MODEL})",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument(
        "--max-doc-words",
        type=_words,
        default=DEFAULT_MAX_DOC_WORDS,
        help=f"cut each document to its first N words, or 'none' for no cut (default: {DEFAULT_MAX_DOC_WORDS})",
    )
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (on a busy shared CPU, 1 avoids oversubscription)"
    )


def add_reranker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--heads --method --num-layers-to-keep --max-length``: which heads score, and how much is built."""
    parser.add_argument("--heads", help="head preset name or JSON file (default: the model's preset for --method)")
    parser.add_argument(
        "--method",
        choices=METHODS,
        help="core (CoRe heads), qr (QR heads) or icr (all heads); default: the --heads file's method, else core",
    )
    parser.add_argument(
        "--num-layers-to-keep",
        type=_layers,
        default=None,
        help="decoder layers to build: a number, or 'all'; default: only the layers the heads need",
    )
    parser.add_argument(
        "--max-length", type=int, help="token budget of one prompt (default: the model's context, capped at 32768)"
    )
    add_window_argument(parser)


def add_window_argument(parser: argparse.ArgumentParser) -> None:
    """``--window-tokens``: document tokens per prompt window; ``--document-order``: their order in it;
    ``--forward``: how the prompts run (every command that builds prompts, ``eval`` included)."""
    parser.add_argument(
        "--forward",
        choices=["auto", "packed", "sequential"],
        default="auto",
        help="how prompts run: packed (every window and N/A twin in one forward pass; the CPU default), "
        "sequential (one prompt at a time on a KV cache; the GPU default), or auto",
    )
    parser.add_argument(
        "--window-tokens",
        type=_window_tokens,
        default="auto",
        help="document tokens per prompt window: a number, 'none' (every candidate in one prompt) or "
        "'auto' (default: the heads' setting; the small offline models' presets use windows)",
    )
    parser.add_argument(
        "--document-order",
        type=_document_order,
        default="auto",
        help="order of the documents inside each prompt window: first_stage (strongest first, farthest "
        "from the query), reversed (strongest nearest the query), both (each window in both orders, "
        "scores averaged: twice the prompts), ends, or auto (default: the heads' setting)",
    )


def _document_order(text: str) -> str:
    from ..windows import parse_document_order

    try:
        return parse_document_order(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _window_tokens(text: str) -> "int | str | None":
    from ..windows import parse_window_tokens

    try:
        return parse_window_tokens(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _words(text: str) -> "int | None":
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of words or 'none', got {text!r}") from None


def _layers(text: str) -> "int | str":
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of layers or 'all', got {text!r}") from None


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` to torch (no-op when not given)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def reranker_settings(args: argparse.Namespace) -> RerankerSettings:
    """The parsed model and reranker options as one ``RerankerSettings`` (every value as given)."""
    return RerankerSettings(
        model=args.model,
        heads=args.heads,
        method=args.method,
        num_layers_to_keep=args.num_layers_to_keep,
        device=args.device,
        dtype=args.dtype,
        max_doc_words=args.max_doc_words,
        max_length=args.max_length,
        window_tokens=args.window_tokens,
        document_order=args.document_order,
        forward=getattr(args, "forward", "auto"),
        threads=getattr(args, "threads", None),
    )


def load_reranker(args: argparse.Namespace) -> Any:
    """A ``CoReReranker`` built from the parsed model and reranker options (threads applied first)."""
    return reranker_settings(args).load()


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers --threads-per-worker --gpus-per-worker --ray-address``: where the scoring runs."""
    parser.add_argument(
        "--workers", type=int, default=1, help="model replicas; 1 runs in this process, more run a Ray Data actor pool"
    )
    parser.add_argument(
        "--threads-per-worker", type=int, help="torch threads (and Ray CPUs) per worker (default: --threads, else 1)"
    )
    parser.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per Ray worker (e.g. 1 or 0.5)")
    parser.add_argument("--ray-address", help="an existing Ray cluster ('auto' finds the local one); implies Ray")


def check_ray_installed(args: argparse.Namespace) -> bool:
    """Whether the command runs on Ray (``pool.uses_ray``); if so and Ray is missing, say so early."""
    on_ray = uses_ray(args.workers, args.ray_address, args.gpus_per_worker, getattr(args, "ray", False))
    if on_ray:
        require_ray(f"--workers {args.workers}")
    return on_ray
