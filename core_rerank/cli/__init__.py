"""The ``core-rerank`` command line: one module per command group, each with ``register(commands)``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import InputError, MissingExtra
from . import detect, evaluate, heads, models, rerank, rerank_run, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="core-rerank", description="Rerank documents with the attention of a few heads of an open LLM (CoRe)."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    rerank.register(commands)
    heads_group = heads.register(commands)
    detect.register(commands)
    detect.register_heads_actions(heads_group)
    evaluate.register(commands)
    rerank_run.register(commands)
    serve.register(commands)
    models.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (InputError, FileNotFoundError, MissingExtra) as exc:
        # Bad input, a missing file and a missing optional extra: one clear line. Anything else
        # is a bug of ours and keeps its traceback.
        print(f"core-rerank: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
