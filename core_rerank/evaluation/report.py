"""The results table of ``core-rerank eval`` (plain text or Markdown), read from its JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..head_config import HeadConfig
from ..layers import layers_to_build
from .plan import METHOD_NAMES
from .results_file import upgrade_results


def format_table(results: Mapping[str, Any], markdown: bool = False) -> str:
    """One row per entry: nDCG@10, MRR@10, R@depth, time per query, peak memory, layers, heads."""
    results = upgrade_results(results)
    depth = results["settings"]["depth"]
    recall_key = f"recall@{depth}"
    rows = [("entry", "method", "nDCG@10", "MRR@10", f"R@{depth}", "time/q", "peak mem", "layers", "heads", "queries")]
    for label, entry in results["entries"].items():
        summary = entry.get("summary")
        if entry.get("skipped") or not summary:
            rows.append((label, entry["method"], "-", "-", "-", "-", "-", "-", "-", "skipped"))
            continue
        heads = entry.get("heads")
        mem = summary.get("peak_mem_mb")
        rows.append(
            (
                label,
                METHOD_NAMES.get(entry["method"], entry["method"]),
                f"{summary['ndcg@10']:.4f}",
                f"{summary['mrr@10']:.4f}",
                f"{summary[recall_key]:.4f}" if recall_key in summary else "-",
                (
                    f"{summary['time_per_query_s']:.3f}s" + ("*" if entry.get("one_pass") else "")
                    if entry["method"] != "first-stage"
                    else "-"
                ),
                f"{mem:.0f} MB" if mem else "-",
                str(layers_needed(entry, results["settings"]) or "-"),
                str(
                    len(heads["heads"])
                    if heads and heads.get("heads")
                    else ("all" if entry["method"] == "icr" else "-")
                ),
                f"{summary['queries']}/{summary['of_queries']}",
            )
        )
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
    if any(e.get("one_pass") for e in results["entries"].values()):
        lines.append(
            "* one shared all-heads pass per query (--one-pass): time and memory are the pass's, "
            "layers are those the entry's heads need."
        )
    data = results["data"]
    if data.get("queries_without_candidates"):
        lines.append(f"{len(data['queries_without_candidates'])} judged queries had no candidates (scored 0).")
    return "\n".join(lines)


def layers_needed(entry: Mapping[str, Any], settings: Mapping[str, Any]) -> int | None:
    """Layers the entry's model builds (for a one-pass entry: would build on its own, by the
    one rule, ``HeadConfig.layers_to_build``).

    ``entry`` in the current format version (see ``results_file.upgrade_results``)."""
    if not entry.get("one_pass"):
        return entry.get("num_layers_built")
    keep = (entry.get("fingerprint") or {}).get("num_layers_to_keep")
    heads = (entry.get("heads") or {}).get("heads") or []
    layers = settings.get("num_hidden_layers")
    if not layers or (not heads and entry.get("method") != "icr"):
        return layers
    config = HeadConfig(method=entry["method"], heads=[tuple(pair) for pair in heads])
    return layers_to_build(config, keep, layers)
