"""From per-token attention to document scores (method.md section 1)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def relevance_scores(raw: Sequence[float]) -> list[float]:
    """Raw listwise scores of one list mapped to [0, 1] by min-max: ``(raw - min) / (max - min)``.

    Monotone (it orders exactly as the raw score): the list's best gets 1.0, its worst 0.0, a
    list of one (or all tied) 1.0, and an empty document (raw ``-inf``) 0.0. It is relative to
    the list, not a probability: a list with no relevant document still has one at 1.0.
    """
    finite = [s for s in raw if math.isfinite(s)]
    if not finite:
        return [0.0] * len(raw)
    low, high = min(finite), max(finite)
    return [0.0 if not math.isfinite(s) else 1.0 if high == low else (s - low) / (high - low) for s in raw]


def document_scores(
    token_scores: np.ndarray, spans: Sequence[tuple[int, int]], outlier_std: float | None = 2.0
) -> list[float]:
    """Sum of each document's calibrated token scores, low outliers dropped.

    Within a document, tokens with ``c_j <= mean(c) - outlier_std * std(c)`` (sample std over
    that document's tokens) are dropped before summing. ``outlier_std=None`` keeps every token.
    """
    scores = []
    for start, end in spans:
        values = np.asarray(token_scores[start:end], dtype=np.float64)
        if outlier_std is not None and values.size > 1:
            threshold = values.mean() - outlier_std * values.std(ddof=1)
            values = values[values > threshold]
        scores.append(float(values.sum()))
    return scores


def sum_heads(rows: Mapping[int, Any], positions: Mapping[int, Sequence[int]] | None = None) -> Any:
    """Sum of captured attention rows over layers and heads, as a float64 CPU tensor.

    ``rows`` maps a layer to its ``[heads, context]`` tensor; ``positions`` (optional) keeps
    only those rows of each layer, and skips layers it does not name.
    """
    total: Any = None
    for layer, values in rows.items():
        if positions is not None:
            if layer not in positions:
                continue
            values = values[positions[layer]]
        layer_sum = values.sum(dim=0)
        total = layer_sum if total is None else total + layer_sum
    return total.cpu().double()


def subset_positions(
    heads_by_layer: Mapping[int, Sequence[int]], subset: "Sequence[Sequence[int]] | None"
) -> dict[int, list[int]] | None:
    """Row positions of a ``(layer, head)`` subset inside each layer's captured rows (``None``: all)."""
    if subset is None:
        return None
    positions: dict[int, list[int]] = {}
    for layer, head in subset:
        positions.setdefault(layer, []).append(list(heads_by_layer[layer]).index(head))
    return positions
