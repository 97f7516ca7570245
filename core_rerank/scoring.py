"""From per-token attention to document scores (method.md section 1)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


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

