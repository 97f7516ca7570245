"""Figures of an evaluation run: nDCG@10 against the number of heads, nDCG / time / memory
against the fraction of layers pruned, and nDCG / time against the prompt window size. Needs
the ``plot`` extra (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..plotting import pyplot
from .plan import METHOD_NAMES
from .report import layers_needed
from .results_file import SWEEP_GROUP, WINDOW_GROUP, upgrade_results


def plot_results(results: Mapping[str, Any], path: str | Path) -> list[str]:
    """nDCG@10 vs number of heads (heads sweep), nDCG / time / memory vs pruning, and nDCG /
    time vs window size (window sweep)."""
    plt = pyplot()
    results = upgrade_results(results)
    entries = results["entries"]
    sweep = [(label, e) for label, e in entries.items() if e.get("group") == SWEEP_GROUP and e.get("summary")]
    prune = [(label, e) for label, e in entries.items() if e.get("group") == "prune" and e.get("summary")]
    # One shared pass (--one-pass) has one time and memory for every entry: plot nDCG only.
    prune_panels: tuple[tuple[str, str], ...] = (
        (("ndcg@10", "nDCG@10"),)
        if any(e.get("one_pass") for _, e in prune)
        else (("ndcg@10", "nDCG@10"), ("time_per_query_s", "seconds / query"), ("peak_mem_mb", "peak memory (MB)"))
    )
    windows = [(label, e) for label, e in entries.items() if e.get("group") == WINDOW_GROUP and e.get("summary")]
    panels = (1 if sweep else 0) + (len(prune_panels) if prune else 0) + (2 if windows else 0)
    if not panels:
        raise InputError("nothing to plot: run with --sweep-num-heads, --prune and/or --sweep-window")
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    settings = results["settings"]
    title = f"{settings['model']} on {Path(settings['data_dir']).name} (depth {settings['depth']})"
    if sweep:
        ax = axes.pop(0)
        for method in ("core", "qr"):
            points = []
            for label, e in sweep:
                if not label.startswith(method + "@"):
                    continue
                num_heads = e["param"]
                if num_heads == "all":
                    num_heads = _all_heads(results)
                points.append((num_heads, e["summary"]["ndcg@10"], e["param"] == "all"))
            if points:
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=METHOD_NAMES[method])
        for label, style in (("first-stage", ":"), ("icr", "--")):
            if label in entries and entries[label].get("summary"):
                ax.axhline(
                    entries[label]["summary"]["ndcg@10"], linestyle=style, color="gray", label=METHOD_NAMES[label]
                )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of heads (rightmost: all = ICR)")
        ax.set_ylabel("nDCG@10")
        ax.set_title("heads sweep", fontsize=9)
        ax.legend(fontsize=7)
    if prune:
        for key, ylabel in prune_panels:
            ax = axes.pop(0)
            for method in ("core", "qr", "icr"):
                levels: list[tuple[float, float]] = [
                    (e["param"], e["summary"].get(key))
                    for label, e in prune
                    if label.startswith(method + "@") and e["summary"].get(key) is not None
                ]
                base = entries.get(method)
                total = settings.get("num_hidden_layers")
                if (
                    levels
                    and base
                    and base.get("summary")
                    and base.get("num_layers_built")
                    and total
                    and base["summary"].get(key) is not None
                    and all(p > 0 for p, _ in levels)
                ):
                    # the unpruned config: the engine builds only the layers its heads need
                    levels.append((1 - layers_needed(base, settings) / total, base["summary"][key]))
                levels.sort()
                if levels:
                    ax.plot(
                        [100 * p for p, _ in levels], [v for _, v in levels], marker="o", label=METHOD_NAMES[method]
                    )
            ax.set_xlabel("% of final layers dropped")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)
    if windows:
        _plot_windows(axes, entries, windows)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [str(path)]


def _plot_windows(axes: list[Any], entries: Mapping[str, Any], windows: list[tuple[str, Any]]) -> None:
    """Two panels: nDCG@10 and seconds per query against the window size ("one prompt" last)."""
    levels = sorted({e["param"] for _, e in windows}, key=lambda p: (p == "none", p if p != "none" else 0))
    names = ["one prompt" if p == "none" else str(p) for p in levels]
    for key, ylabel in (("ndcg@10", "nDCG@10"), ("time_per_query_s", "seconds / query")):
        ax = axes.pop(0)
        for method in ("core", "qr", "icr"):
            by_level = {e["param"]: e["summary"][key] for label, e in windows if label.startswith(method + "@")}
            if by_level:
                xs = [i for i, p in enumerate(levels) if p in by_level]
                ax.plot(xs, [by_level[levels[i]] for i in xs], marker="o", label=METHOD_NAMES[method])
        if key == "ndcg@10" and entries.get("first-stage", {}).get("summary"):
            ax.axhline(entries["first-stage"]["summary"]["ndcg@10"], linestyle=":", color="gray", label="first stage")
        ax.set_xticks(range(len(levels)), names)
        ax.set_xlabel("document tokens per prompt window")
        ax.set_ylabel(ylabel)
        ax.set_title(
            "window sweep" + (" (shared pass)" if any(e.get("one_pass") for _, e in windows) else ""), fontsize=9
        )
        ax.legend(fontsize=7)


def _all_heads(results: Mapping[str, Any]) -> int:
    settings = results["settings"]
    if settings.get("num_attention_heads") and settings.get("num_hidden_layers"):
        return int(settings["num_attention_heads"] * settings["num_hidden_layers"])
    for entry in results["entries"].values():
        heads = entry.get("heads") or {}
        arch = heads.get("architecture") or {}
        if arch.get("num_attention_heads") and arch.get("num_hidden_layers"):
            return int(arch["num_attention_heads"] * arch["num_hidden_layers"])
    return 1024
