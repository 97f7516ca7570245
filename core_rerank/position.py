"""Position calibration: remove the score a document gets for *where* it sits in the prompt.

ICR's content-free query removes a per-token bias; the heads also favour documents near the
query. The head config's ``scoring.position_calibration`` picks a prior ``b_i`` per document slot,
and the score becomes ``s_i - position_weight * b_i`` (per prompt, before windows aggregate):

- ``"placeholder"`` (CapCal / found-in-the-middle style): a twin of each prompt with every
  document token replaced by one filler token (same length, same positions, same spans), run in
  the same forward call; its document scores, computed exactly as the real ones, are the prior.
- ``"curve"``: a stored per-token prior ``position_curve[k]`` for tokens whose distance from the
  query span's start falls in bucket ``k`` (``CURVE_BUCKET`` tokens each, the last bucket open);
  a document's prior is the sum over its tokens. No extra pass. :func:`fit_curve` makes one
  from placeholder twins' token scores.
- ``"none"``: no prior (the scores as before, bit for bit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .prompt import PreparedPrompt

CURVE_BUCKET = 32  # tokens per bucket of the stored curve
FILLER = "."  # the placeholder token (its first token id under the model's tokenizer)


def filler_id(tokenizer: Any, text: str = FILLER) -> int:
    """The token id that fills placeholder documents."""
    return int(tokenizer(text, add_special_tokens=False)["input_ids"][0])


def placeholder_twin(prepared: PreparedPrompt, token_id: int) -> PreparedPrompt:
    """``prepared`` with every document span's tokens replaced by ``token_id``, in both the query
    and the N/A prompt (they share the prefix): positions, lengths and spans stay the same."""

    def fill(ids: Sequence[int]) -> list[int]:
        out = list(ids)
        for start, end in prepared.document_spans:
            out[start:end] = [token_id] * (end - start)
        return out

    return dataclasses.replace(
        prepared, input_ids=fill(prepared.input_ids), null_input_ids=fill(prepared.null_input_ids)
    )


def distances(prepared: PreparedPrompt) -> np.ndarray:
    """Each prefix token's distance (in tokens) from the start of the query span."""
    return prepared.query_span[0] - np.arange(prepared.prefix_length)


def curve_prior(prepared: PreparedPrompt, curve: Sequence[float], bucket: int = CURVE_BUCKET) -> list[float]:
    """Each document's prior: the sum of ``curve`` at its tokens' distance buckets."""
    values = np.asarray(curve, dtype=np.float64)
    per_token = values[np.minimum(distances(prepared) // bucket, len(values) - 1)]
    return [float(per_token[start:end].sum()) for start, end in prepared.document_spans]


def fit_curve(
    samples: Sequence[tuple[PreparedPrompt, np.ndarray]], bucket: int = CURVE_BUCKET, max_distance: int = 4096
) -> list[float]:
    """The mean token score per distance bucket over document tokens of ``(prompt, token_scores)``
    pairs (placeholder twins' calibrated token scores). Empty buckets take the nearest filled one."""
    size = max_distance // bucket
    total, count = np.zeros(size), np.zeros(size)
    for prepared, scores in samples:
        far = distances(prepared)
        for start, end in prepared.document_spans:
            buckets = np.minimum(far[start:end] // bucket, size - 1)
            np.add.at(total, buckets, np.asarray(scores[start:end], dtype=np.float64))
            np.add.at(count, buckets, 1)
    filled = np.flatnonzero(count)
    if not filled.size:
        raise ValueError("no document tokens to fit a curve on")
    size = int(filled[-1]) + 1
    means = np.where(count[:size] > 0, total[:size] / np.maximum(count[:size], 1), np.nan)
    for k in range(size):  # fill gaps from the nearest filled bucket
        if np.isnan(means[k]):
            means[k] = means[filled[np.argmin(np.abs(filled - k))]]
    return [float(v) for v in means]


class PositionPrior:
    """The reranker's position calibration, read from the head config's scoring settings."""

    def __init__(self, scoring: Any, tokenizer: Any):
        self.scoring = scoring
        self.token_id = filler_id(tokenizer)
        if scoring.position_calibration == "curve" and not scoring.position_curve:
            raise ValueError('position_calibration="curve" needs scoring.position_curve')

    @property
    def mode(self) -> str:
        return self.scoring.position_calibration

    def twins(self, prompts: Sequence[PreparedPrompt]) -> list[PreparedPrompt]:
        """The extra prompts to run with ``prompts`` (placeholder twins, or none)."""
        if self.mode != "placeholder":
            return []
        return [placeholder_twin(prepared, self.token_id) for prepared in prompts]

    def adjust(
        self,
        scores: dict[Any, list[float]],
        prepared: PreparedPrompt,
        twin_rows: Any,
        score_rows: Callable[[Any], Mapping[Any, list[float]]],
    ) -> dict[Any, list[float]]:
        """``scores - weight * prior`` per subset name (``score_rows(twin_rows)`` scores the twin)."""
        if self.mode == "none":
            return scores
        weight = self.scoring.position_weight
        if self.mode == "placeholder":
            priors = score_rows(twin_rows)
        else:
            prior = curve_prior(prepared, self.scoring.position_curve)
            priors = {name: prior for name in scores}
        return {name: [s - weight * b for s, b in zip(values, priors[name])] for name, values in scores.items()}
