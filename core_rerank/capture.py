"""Selected-head attention capture on top of the fast attention kernel.

Every layer keeps running its fast kernel (sdpa or flash). For the layers that hold selected
heads, the wrapper below also recomputes, for those heads only and for the query-span rows
only, softmax(q_t . K^T * scale) over the causal context, from the post-RoPE queries and keys
the layer just produced (GQA: query head h reads KV head h // groups). The rows are averaged
at once, so what is kept per layer is a [selected heads, context] tensor, never an attention
matrix. After the deepest layer that is needed, the forward pass stops (``StopForward``): a
shared, unpruned model still computes only the layers the heads need.

The wrapper is registered through transformers' ``AttentionInterface`` (no patched modeling
files). Outside a ``capture`` block it is a plain pass-through to the base kernel, so a model
switched to it still generates text as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from . import packed
from .packed import PackedRequest

_PREFIX = "core_rerank_"
_state = threading.local()


class StopForward(Exception):
    """Raised after the deepest needed layer: the rest of the model is never run."""


@dataclass
class CaptureRequest:
    """What to capture during one forward pass.

    ``heads_by_layer`` maps a layer to its selected query heads; ``rows`` is the end-exclusive
    range of query-span positions *within this forward chunk*; ``stop_after_layer`` ends the
    pass once that layer's keys and values are cached (and its rows captured).
    ``results[layer]`` gets a float32 [len(heads), context] tensor: the attention of each head
    averaged over the rows, over every position of the context (``past_length`` + this chunk;
    positions a sliding-window layer no longer holds get 0).
    """

    heads_by_layer: dict[int, list[int]]
    rows: tuple[int, int] | None
    stop_after_layer: int | None
    logit_scale: float | None = None
    past_length: int = 0  # tokens already in the KV cache before this forward chunk
    # Batches: one rows range per batch item, each item's [heads, context] handed to
    # ``on_rows(layer, item, tensor)`` at once instead of being stored in ``results``.
    item_rows: list[tuple[int, int]] | None = None
    on_rows: Callable[[int, int, torch.Tensor], None] | None = None
    results: dict[int, torch.Tensor] = field(default_factory=dict)
    _head_index: dict[Any, torch.Tensor] = field(default_factory=dict, repr=False)

    def head_index(self, layer: int, device: torch.device) -> torch.Tensor:
        key = (layer, device)
        if key not in self._head_index:
            self._head_index[key] = torch.tensor(self.heads_by_layer[layer], device=device)
        return self._head_index[key]


@contextlib.contextmanager
def capture(request: "CaptureRequest | PackedRequest") -> Iterator["CaptureRequest | PackedRequest"]:
    """Capture for forward passes run in this thread inside the block."""
    previous = getattr(_state, "request", None)
    _state.request = request
    try:
        yield request
    finally:
        _state.request = previous


def install(model: Any) -> None:
    """Switch ``model`` to the capturing wrapper of its current kernel (idempotent)."""
    config = model.config
    current = config._attn_implementation
    if isinstance(current, str) and current.startswith(_PREFIX):
        return
    base = current if current in ALL_ATTENTION_FUNCTIONS and current != "eager" else "sdpa"
    name = _PREFIX + base
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_wrapper(base))
        AttentionMaskInterface.register(name, _make_mask_wrapper(ALL_MASK_ATTENTION_FUNCTIONS[base]))
    model.set_attn_implementation(name)


def _make_mask_wrapper(base_mask: Callable) -> Callable:
    """The base kernel's mask builder, except in a packed pass: there each segment's attention
    builds its own mask, so no [tokens, tokens] mask is made at all."""

    def mask(*args, **kwargs):
        if isinstance(getattr(_state, "request", None), PackedRequest):
            return None
        return base_mask(*args, **kwargs)

    return mask


def _make_wrapper(base: str):
    def attention(module, query, key, value, attention_mask, scaling=None, **kwargs):
        request: CaptureRequest | PackedRequest | None = getattr(_state, "request", None)
        layer = getattr(module, "layer_idx", None)
        if isinstance(request, PackedRequest):
            last = request.stop_after_layer is not None and layer is not None and layer >= request.stop_after_layer
            output = packed.attend(request, module, query, key, value, scaling, capture_only=last)
            if last:
                raise StopForward
            return output, None
        if request is not None and layer is not None:
            if layer in request.heads_by_layer:
                scale = request.logit_scale if request.logit_scale is not None else scaling
                if scale is None:
                    scale = query.shape[-1] ** -0.5
                softcap = kwargs.get("softcap")
                if request.item_rows is not None:
                    per_item_mask = isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4
                    for item, rows in enumerate(request.item_rows):
                        mask = attention_mask[item : item + 1] if per_item_mask else attention_mask
                        request.on_rows(
                            layer,
                            item,
                            _mean_rows(
                                module,
                                query[item : item + 1],
                                key[item : item + 1],
                                mask,
                                scale,
                                rows,
                                request,
                                layer,
                                softcap,
                            ),
                        )
                elif request.rows is not None:
                    request.results[layer] = _mean_rows(
                        module, query, key, attention_mask, scale, request.rows, request, layer, softcap
                    )
            if request.stop_after_layer is not None and layer >= request.stop_after_layer:
                raise StopForward
        return ALL_ATTENTION_FUNCTIONS[base](module, query, key, value, attention_mask, scaling=scaling, **kwargs)

    return attention


def _mean_rows(module, query, key, attention_mask, scale, rows, request, layer, softcap) -> torch.Tensor:
    """Attention of the selected heads, query-span rows only, averaged over those rows."""
    start, end = rows
    logits = packed.head_logits(query, key, request.head_index(layer, query.device), start, end, scale)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    # A sliding-window cache returns only its last keys: they end at the current position.
    total = request.past_length + query.shape[2]
    key_offset = total - key.shape[2]
    logits = logits + _row_mask(
        module, attention_mask, request.past_length, key_offset, key.shape[2], start, end, query.device
    )
    probs = torch.softmax(logits, dim=-1).mean(dim=1)
    if key_offset == 0:
        return probs
    full = probs.new_zeros((probs.shape[0], total))
    full[:, key_offset:] = probs
    return full


def _row_mask(module, attention_mask, past, key_offset, key_len, start, end, device) -> torch.Tensor:
    """Additive [R, K] mask for the captured rows, from the mask the layer itself uses."""
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 4:
        rows = attention_mask[0, 0, start:end, -key_len:]
        if rows.dtype == torch.bool:
            return torch.zeros(rows.shape, device=device).masked_fill(~rows.to(device), float("-inf"))
        return rows.float().to(device)
    # No mask tensor: plain causal attention (plus the layer's sliding window, if any).
    q_pos = torch.arange(start, end, device=device) + past
    k_pos = torch.arange(key_len, device=device) + key_offset
    hidden = packed.blocked(q_pos, k_pos, getattr(module, "sliding_window", None))
    return torch.zeros(hidden.shape, device=device).masked_fill(hidden, float("-inf"))
