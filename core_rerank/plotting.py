"""Plots: ``pyplot()`` (matplotlib, headless, or a clear ImportError) and the head-detection
figures: the layer x head score heatmap (the CoRe paper's Figure 2) and nDCG@10 against the
number of top heads (Figure 1). Needs the ``plot`` extra (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MissingExtra


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend; an ImportError naming the extra."""
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra('plotting needs matplotlib: pip install "core-rerank[plot]"') from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_head_heatmap(
    scores: np.ndarray,
    path: "str | Path",
    selected: Sequence[tuple[int, int]] = (),
    title: str | None = None,
    colorbar_label: str = "score",
) -> Path:
    """``scores[layer, head]`` as a heatmap (layers across, heads down); ``selected`` heads boxed
    and numbered by rank (1 = best)."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    values = np.asarray(scores, dtype=float)
    layers, heads = values.shape
    width = min(max(6.0, 0.32 * layers + 2.5), 24.0)
    height = min(max(3.0, 0.3 * heads + 1.6), 14.0)
    fig, ax = plt.subplots(figsize=(width, height))
    image = ax.imshow(
        np.ma.masked_invalid(values.T), aspect="auto", origin="lower", cmap="viridis", interpolation="nearest"
    )
    ax.set_xlabel("layer")
    ax.set_ylabel("head")
    step_x = max(1, layers // 16)
    step_y = max(1, heads // 16)
    ax.set_xticks(range(0, layers, step_x))
    ax.set_yticks(range(0, heads, step_y))
    for rank, (layer, head) in enumerate(selected, start=1):
        ax.add_patch(Rectangle((layer - 0.5, head - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        if layers <= 48 and heads <= 48:
            ax.text(layer, head, str(rank), ha="center", va="center", color="white", fontsize=7, fontweight="bold")
    fig.colorbar(image, ax=ax, label=colorbar_label, fraction=0.04, pad=0.02)
    return _save(plt, fig, ax, path, title)


def plot_ndcg_vs_num_heads(
    points: Mapping[int, float],
    path: "str | Path",
    references: Mapping[str, float] | None = None,
    title: str | None = None,
    series: Mapping[str, Mapping[int, float]] | None = None,
) -> Path:
    """nDCG@10 of the top heads against their number (``points``: num_heads -> nDCG@10; log-scaled
    x axis); ``references`` are flat lines (e.g. all heads, BM25); ``series`` adds more curves
    (e.g. QR heads)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    curves = {"top heads": points}
    curves.update(series or {})
    for label, curve in curves.items():
        xs = sorted(curve)
        ax.plot(xs, [curve[n] for n in xs], marker="o", label=label)
    styles = ["--", ":", "-."]
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, linestyle=styles[i % len(styles)], color=f"C{len(curves) + i}", label=label)
    counts = sorted({n for curve in curves.values() for n in curve})
    if counts and counts[-1] / max(counts[0], 1) >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(n) for n in counts])
    ax.set_xlabel("number of top heads")
    ax.set_ylabel("nDCG@10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, ax, path, title)


def _save(plt: Any, fig: Any, ax: Any, path: "str | Path", title: str | None) -> Path:
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
