"""``core-rerank rerank``: rerank documents for one query."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..settings import built_settings
from ..utils import join_title, json_float
from .options import add_model_arguments, add_reranker_arguments, load_reranker


def register(commands: Any) -> None:
    p = commands.add_parser("rerank", help="rerank documents for a query")
    add_model_arguments(p)
    add_reranker_arguments(p)
    p.add_argument("--query", required=True)
    p.add_argument("--doc", action="append", default=[], help="a document (repeatable)")
    p.add_argument("--docs-file", help="JSONL ({'text', optional 'title', 'id'/'_id'}) or plain text, one per line")
    p.add_argument("--top-k", type=int, help="print only the best K documents")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON: {'reranker': the settings it ran with (dtype, layers, windows, ...), 'results': [{index, doc_id, text, raw_score, relevance_score}]}",
    )
    p.set_defaults(func=run)


def read_docs_file(path: str) -> tuple[list[str], list[str | None]]:
    """Documents from JSONL (text, optional title and id) or plain text (one per line)."""
    texts: list[str] = []
    ids: list[str | None] = []
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
            raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{path}:{number}: each line needs a 'text' string")
        texts.append(join_title(record.get("title"), record["text"]))
        ids.append(record.get("id", record.get("_id")))
    return texts, ids


def run(args: argparse.Namespace) -> int:
    docs = list(args.doc)
    ids: list[Any] = [None] * len(docs)
    if args.docs_file:
        file_docs, file_ids = read_docs_file(args.docs_file)
        docs += file_docs
        ids += file_ids
    if not docs:
        raise InputError("no documents: give --doc TEXT (repeatable) or --docs-file FILE")
    reranker = load_reranker(args)
    results = reranker.rerank(args.query, docs, top_k=args.top_k, doc_ids=ids)
    if args.json:
        rows = [{**r.to_dict(), "raw_score": json_float(r.score)} for r in results]
        print(json.dumps({"reranker": built_settings(reranker), "results": rows}, indent=2, ensure_ascii=False))
        return 0
    print(
        f"model {reranker.model_id}  dtype {built_settings(reranker)['dtype']}  method {reranker.method}  heads {len(reranker.heads.heads) or 'all'}"
        f"  layers built {reranker.model.config.num_hidden_layers}"
    )
    for position, r in enumerate(results, start=1):
        label = f" [{r.doc_id}]" if r.doc_id is not None else ""
        preview = r.text if len(r.text) <= 90 else r.text[:87] + "..."
        print(f"{position:>3}. {r.score:+.6f}  #{r.index}{label}  {preview}")
    return 0
