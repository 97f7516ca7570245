"""Batched capture of per-document attention masses ``s[layer, head, doc]`` (method.md section 2).

The reranker's own capture (``core_rerank.capture``) hands each prompt's query-span attention,
averaged over the rows, to a callback that reduces it at once to the mass on each document
span; no attention matrix is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..utils import text_config


def document_masses(
    model: Any,
    sequences: Sequence[Sequence[int]],
    rows: Sequence[tuple[int, int]],
    spans: Sequence[Sequence[tuple[int, int]]],
    num_layers: int | None = None,
    logit_scale: float | None = None,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """Per-document attention masses ``[layers, heads, docs]`` for a batch of prompts.

    ``sequences``: token ids (right-padded here: the captured rows are real tokens and, with a
    causal mask, never see the padding after them). ``rows``: each prompt's query span;
    ``spans``: its document spans. Runs the first ``num_layers`` layers (default all) and stops.
    The working memory of the capture is :func:`capture_bytes`.
    """
    import torch

    from .. import capture
    from ..capture import CaptureRequest

    config = text_config(model.config)
    num_layers = num_layers or config.num_hidden_layers
    device = next(model.parameters()).device
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long, device=device)
    for b, seq in enumerate(sequences):
        ids[b, : len(seq)] = torch.tensor(list(seq), dtype=torch.long, device=device)
    starts = [torch.tensor([s for s, _ in sp], device=device) for sp in spans]
    ends = [torch.tensor([e for _, e in sp], device=device) for sp in spans]
    masses: list[list[Any]] = [[None] * num_layers for _ in rows]  # per item, per layer: [heads, docs]

    def reduce_to_masses(layer: int, item: int, probs: torch.Tensor) -> None:  # [heads, context] -> [heads, docs]
        cumulative = torch.nn.functional.pad(probs.double().cumsum(dim=-1), (1, 0))
        masses[item][layer] = cumulative[:, ends[item]] - cumulative[:, starts[item]]

    all_heads = {layer: list(range(config.num_attention_heads)) for layer in range(num_layers)}
    request = CaptureRequest(
        all_heads, None, num_layers - 1, logit_scale, item_rows=list(rows), on_rows=reduce_to_masses
    )
    capture.install(model)
    with torch.inference_mode(), capture.capture(request):
        try:
            model.base_model(input_ids=ids, use_cache=False)
        except capture.StopForward:
            pass
    out = []
    for per_layer in masses:
        if any(m is None for m in per_layer):
            raise RuntimeError(
                "the detection capture saw fewer layers than expected; "
                "does this model use transformers' AttentionInterface?"
            )
        out.append(torch.stack(per_layer).cpu().numpy())
    return out


def capture_bytes(num_attention_heads: int, rows: Sequence[tuple[int, int]], length: int) -> int:
    """Peak working memory of :func:`document_masses` for one layer of a batch padded to
    ``length`` tokens: float32 logits, mask and softmax for every head x the largest query span
    x the context, one prompt at a time (freed before the next)."""
    return max((3 * num_attention_heads * (end - start) * length * 4 for start, end in rows), default=0)
