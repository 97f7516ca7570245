"""Choosing the number of heads and the CoRe temperature of a detection run on held-out data.

Detection (``core_rerank.detection``) scores every head; which ``num_heads`` and temperature
to ship is decided here, by nDCG@10 of the selected heads on a BEIR split (``detect
--select-on``). Detection never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..detection import HeadScoreTable
from ..head_config import HeadConfig
from ..utils import DEFAULT_MAX_DOC_WORDS


def evaluate_configs(
    model: Any,
    tokenizer: Any,
    configs: Sequence[HeadConfig],
    data_dir: str,
    split: str = "test",
    depth: int = 20,
    max_queries: int | None = None,
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
    model_id: str | None = None,
) -> list[float]:
    """nDCG@10 of each head config (sharing one loaded model), via ``evaluation.evaluate_heads``."""
    from ..reranker import CoReReranker
    from . import evaluate_heads

    results = []
    for config in configs:
        method = config.method
        heads = None if method == "icr" else config
        reranker = CoReReranker(
            model, tokenizer, heads=heads, method=method, max_doc_words=max_doc_words, model_id=model_id
        )
        results.append(float(evaluate_heads(reranker, data_dir, split=split, depth=depth, max_queries=max_queries)))
    return results


def sweep(
    table: HeadScoreTable,
    model: Any,
    tokenizer: Any,
    data_dir: str,
    temperatures: Sequence[float] | None = None,
    num_heads: Sequence[int] = (8,),
    num_layers_to_keep: int | None = None,
    split: str = "test",
    depth: int = 20,
    max_queries: int | None = None,
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Pick the temperature (CoRe) and the number of heads by nDCG@10 of the selected heads on
    held-out data.

    Returns ``{"temperature", "num_heads", "ndcg@10", "results": [...], "data", ...}`` (ties:
    the first in the order given). Temperatures that select the same heads are evaluated once.
    """
    method = table.method
    temps: list[float | None] = list(temperatures or table.temperatures) if method == "core" else [None]
    grid = [(t, n) for t in temps for n in num_heads]
    configs = [table.top_heads(n, num_layers_to_keep=num_layers_to_keep, method=method, temperature=t) for t, n in grid]
    results: list[dict[str, Any]] = []
    seen: dict[tuple[tuple[int, int], ...], float] = {}
    for (t, n), config in zip(grid, configs):
        heads = tuple(config.heads)
        if heads not in seen:
            seen[heads] = evaluate_configs(
                model,
                tokenizer,
                [config],
                data_dir,
                split,
                depth,
                max_queries,
                max_doc_words,
                table.model_ids[0] if table.model_ids else None,
            )[0]
        value = seen[heads]
        log(f"  t={t if t is not None else '-'} num_heads={n}: nDCG@10 {value:.4f}  heads {config.to_qrhead_string()}")
        results.append({"temperature": t, "num_heads": n, "ndcg@10": round(value, 5)})
    best = max(range(len(results)), key=lambda i: (results[i]["ndcg@10"], -i))
    return {
        "temperature": results[best]["temperature"],
        "num_heads": results[best]["num_heads"],
        "ndcg@10": results[best]["ndcg@10"],
        "data": str(data_dir),
        "split": split,
        "depth": depth,
        "max_queries": max_queries,
        "max_doc_words": max_doc_words,
        "results": results,
    }
