"""Packed forward: every prompt of a ``score()`` call, and its N/A twin, in one forward pass.

The sequential path runs each window as three small forward passes (the document prefix,
then the query suffix and the N/A suffix on its key/value cache). On a CPU each of those
passes pays for small, slow matrix products and for per-op overhead, layer after layer. Here
all of them go into one packed sequence::

    [prefix 1][query suffix 1][N/A suffix 1][prefix 2][query suffix 2][N/A suffix 2] ...

with position ids restarting for each prompt (the N/A suffix takes the positions of the query
suffix it replaces). Every linear layer, norm and rotary embedding then runs once over all
tokens, as full-size matrix products. Only attention is done per segment: a prompt attends
causally to itself, and its N/A suffix to the prompt's document prefix and to itself, so the
result equals the sequential path's (the same keys, queries and positions), without a KV cache.
Attention runs per prompt as blocked matrix products (``_block_attention``), with no padding
and no gathers: measured faster than the fused CPU kernel over the padded batch
(docs/design-notes.md "Packed forward on the CPU").

The selected heads' rows are captured as in ``capture``: softmax of post-RoPE ``q . K^T *
scale`` for the query-span rows only, averaged over the rows, in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .prompt import PreparedPrompt


@dataclass(frozen=True)
class Segment:
    """Where one prompt and its N/A suffix sit in the packed sequence (token offsets)."""

    start: int  # the prompt's first token
    length: int  # the prompt's tokens (prefix + query suffix)
    prefix: int  # tokens shared with the N/A twin
    rows: tuple[int, int]  # the query span, in prompt positions
    null_start: int | None  # the N/A suffix's first token (None: no calibration)
    null_length: int
    null_rows: tuple[int, int]  # the N/A query span, in N/A prompt positions


@dataclass
class PackedRequest:
    """The packed sequence of several prompts, and what its forward pass captures.

    ``rows[i][layer]`` gets prompt i's query-span attention of that layer's selected heads on
    its prefix ([heads, prefix], float32), ``null_rows[i][layer]`` the same for the N/A twin.
    """

    segments: list[Segment]
    heads_by_layer: dict[int, list[int]]
    stop_after_layer: int | None
    logit_scale: float | None
    rows: list[dict[int, torch.Tensor]] = field(default_factory=list)
    null_rows: list[dict[int, torch.Tensor]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rows = [{} for _ in self.segments]
        self.null_rows = [{} for _ in self.segments]


def pack(prompts: Sequence[PreparedPrompt], calibrate: bool) -> tuple[list[int], list[int], list[Segment]]:
    """Token ids, position ids and segments of ``prompts`` packed into one sequence."""
    ids: list[int] = []
    positions: list[int] = []
    segments = []
    for prepared in prompts:
        start, length, prefix = len(ids), len(prepared.input_ids), prepared.prefix_length
        ids += prepared.input_ids
        positions += range(length)
        null_start, null_length = None, 0
        if calibrate:
            null_start, null_suffix = len(ids), prepared.null_input_ids[prefix:]
            null_length = len(null_suffix)
            ids += null_suffix
            positions += range(prefix, prefix + null_length)
        segments.append(
            Segment(start, length, prefix, prepared.query_span, null_start, null_length, prepared.null_query_span)
        )
    return ids, positions, segments


def packed_tokens(prepared: PreparedPrompt, calibrate: bool) -> int:
    """Tokens ``prepared`` takes in a packed sequence (its N/A suffix included)."""
    return len(prepared.input_ids) + (len(prepared.null_input_ids) - prepared.prefix_length if calibrate else 0)


def packed_groups(prompts: Sequence[PreparedPrompt], budget: int, calibrate: bool) -> list[Sequence[PreparedPrompt]]:
    """``prompts`` in order, split into runs of at most ``budget`` packed tokens each (a prompt
    longer than the budget runs alone)."""
    groups: list[Sequence[PreparedPrompt]] = []
    start, used = 0, 0
    for index, prepared in enumerate(prompts):
        size = packed_tokens(prepared, calibrate)
        if index > start and used + size > budget:
            groups.append(prompts[start:index])
            start, used = index, 0
        used += size
    if start < len(prompts):
        groups.append(prompts[start:])
    return groups


def attend(
    request: PackedRequest, module: Any, query, key, value, scaling: float | None, capture_only: bool = False
) -> torch.Tensor:
    """One layer's attention over the packed sequence ([1, T, heads, dim]).

    ``query`` is [1, heads, T, dim], ``key`` and ``value`` [1, kv heads, T, dim], post-RoPE.
    Selected layers also capture their rows into ``request``; with ``capture_only`` (the last
    layer needed) only the capture is computed.
    """
    layer: int = getattr(module, "layer_idx", -1)
    window = getattr(module, "sliding_window", None)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    heads = request.heads_by_layer.get(layer)
    if heads:
        capture_scale = request.logit_scale if request.logit_scale is not None else scale
        _capture(request, layer, heads, query, key, capture_scale, window)
    if capture_only:
        return query.new_empty((1, query.shape[2], query.shape[1], query.shape[3]))
    return _packed_attention(request.segments, query, key, value, scale, window)


def _capture(request: PackedRequest, layer: int, heads: list[int], query, key, scale: float, window) -> None:
    """Each segment's selected-head rows, for its prompt and its N/A suffix."""
    for index, segment in enumerate(request.segments):
        main = slice(segment.start, segment.start + segment.length)
        positions = torch.arange(segment.length, device=query.device)
        request.rows[index][layer] = _mean_rows(
            query[:, :, main], key[:, :, main], heads, segment.rows, positions, scale, window, segment.prefix
        )
        if segment.null_start is None:
            continue
        null = slice(segment.null_start, segment.null_start + segment.null_length)
        prefix = slice(segment.start, segment.start + segment.prefix)
        keys = torch.cat([key[:, :, prefix], key[:, :, null]], dim=2)
        query_positions = torch.arange(segment.prefix, segment.prefix + segment.null_length, device=query.device)
        rows = (segment.null_rows[0] - segment.prefix, segment.null_rows[1] - segment.prefix)
        request.null_rows[index][layer] = _mean_rows(
            query[:, :, null], keys, heads, rows, query_positions, scale, window, segment.prefix
        )


# Query rows per attention block: the scores of one block ([heads, rows, keys], float32) stay in
# the CPU caches, and keys past the block's last row are never computed (causal).
ATTENTION_BLOCK = 128


def _block_attention(query, key, value, scale: float, window: int | None) -> torch.Tensor:
    """Causal attention of ``query`` [heads, R, d] on ``key``/``value`` [kv heads, K, d] (K >= R:
    query row i sits at key position K - R + i and sees the keys up to it, within ``window``).

    Returns [R, heads, d] in ``query``'s dtype. Done as matrix products over blocks of
    ``ATTENTION_BLOCK`` rows, softmax in float32: on the CPU as fast as the fused kernel for one
    560-token prompt, faster at larger heads, and it needs no padding (docs/design-notes.md).
    """
    heads, rows, dim = query.shape
    kv_heads, keys = key.shape[0], key.shape[1]
    groups, offset = heads // kv_heads, keys - rows
    grouped = query.view(kv_heads, groups, rows, dim)  # GQA: a KV head's query heads share a product
    output = query.new_empty((rows, heads, dim))
    for first in range(0, rows, ATTENTION_BLOCK):
        last = min(rows, first + ATTENTION_BLOCK)
        seen = offset + last  # keys this block's rows may see
        block = grouped[:, :, first:last].reshape(kv_heads, groups * (last - first), dim)
        scores = torch.matmul(block, key[:, :seen].transpose(-1, -2)).view(kv_heads, groups, last - first, seen)
        scores = scores.float() * scale
        positions = torch.arange(offset + first, seen, device=query.device)
        if window:
            scores.masked_fill_(blocked(positions, torch.arange(seen, device=query.device), window), float("-inf"))
        else:  # only the block's own trailing keys can lie in a row's future
            own = scores[..., offset + first :]
            own.masked_fill_(blocked(positions, positions, None), float("-inf"))
        weights = torch.softmax(scores, dim=-1).to(value.dtype).view(kv_heads, groups * (last - first), seen)
        values = torch.matmul(weights, value[:, :seen]).view(heads, last - first, dim)
        output[first:last] = values.transpose(0, 1)
    return output


def _packed_attention(segments: Sequence[Segment], query, key, value, scale: float, window: int | None):
    """Attention of every prompt on itself, and of every N/A suffix on its prompt's prefix and
    itself ([1, T, heads, dim]); ``query`` [1, heads, T, dim], ``key``/``value`` [1, kv heads, T, dim]."""
    q, k, v = query[0], key[0], value[0]
    output = query.new_empty((query.shape[2], query.shape[1], query.shape[3]))
    for segment in segments:
        own = slice(segment.start, segment.start + segment.length)
        output[own] = _block_attention(q[:, own], k[:, own], v[:, own], scale, window)
        if segment.null_start is None:
            continue
        null = slice(segment.null_start, segment.null_start + segment.null_length)
        prefix = slice(segment.start, segment.start + segment.prefix)
        keys, values = torch.cat([k[:, prefix], k[:, null]], dim=1), torch.cat([v[:, prefix], v[:, null]], dim=1)
        output[null] = _block_attention(q[:, null], keys, values, scale, window)
    return output.unsqueeze(0)


def head_logits(query, key, head_index: torch.Tensor, start: int, end: int, scale: float) -> torch.Tensor:
    """[H, R, K] float32 logits of the selected query heads' rows ``start:end`` against every key
    (GQA: query head h reads KV head h // groups). ``capture`` uses it too."""
    groups = query.shape[1] // key.shape[1]
    q_rows = query[0, head_index, start:end].float()  # [H, R, d]
    keys = key[0, head_index // groups].float()  # [H, K, d]
    return torch.matmul(q_rows, keys.transpose(-1, -2)) * scale


def blocked(query_positions, key_positions, window: int | None) -> torch.Tensor:
    """[Q, K] True where a query may not see a key (the future, or past a sliding window)."""
    hidden = key_positions.unsqueeze(0) > query_positions.unsqueeze(1)
    if window:
        hidden |= key_positions.unsqueeze(0) <= query_positions.unsqueeze(1) - window
    return hidden


def _mean_rows(q, k, heads, rows, positions, scale, window, prefix) -> torch.Tensor:
    """Selected heads' attention of the ``rows`` queries, averaged over them, on the first
    ``prefix`` keys ([heads, prefix], float32). ``rows`` index the queries of ``q``;
    ``positions`` are those queries' positions (keys sit at 0..K-1)."""
    start, end = rows
    logits = head_logits(q, k, torch.tensor(heads, device=q.device), start, end, scale)
    key_positions = torch.arange(k.shape[2], device=q.device)
    logits = logits.masked_fill(blocked(positions[start:end], key_positions, window), float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=1)[:, :prefix]
