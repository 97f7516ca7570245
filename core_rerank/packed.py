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

The selected heads' rows are captured as in ``capture``: softmax of post-RoPE ``q . K^T *
scale`` for the query-span rows only, averaged over the rows, in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

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
    """One layer's attention over the packed sequence, segment by segment ([1, T, heads, dim]).

    ``query`` is [1, heads, T, dim], ``key`` and ``value`` [1, kv heads, T, dim], post-RoPE.
    Selected layers also capture their rows into ``request``; with ``capture_only`` (the last
    layer needed) only the capture is computed.
    """
    layer: int = getattr(module, "layer_idx", -1)
    window = getattr(module, "sliding_window", None)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    capture_scale = request.logit_scale if request.logit_scale is not None else scale
    heads = request.heads_by_layer.get(layer)
    output = query.new_empty((1, query.shape[2], query.shape[1], query.shape[3]))
    for index, segment in enumerate(request.segments):
        main = slice(segment.start, segment.start + segment.length)
        q, k, v = query[:, :, main], key[:, :, main], value[:, :, main]
        positions = torch.arange(segment.length, device=query.device)
        if not capture_only:
            output[0, main] = _attention(q, k, v, positions, positions, scale, window)[0].transpose(0, 1)
        if heads:
            request.rows[index][layer] = _mean_rows(
                q, k, heads, segment.rows, positions, capture_scale, window, segment.prefix
            )
        if segment.null_start is None:
            continue
        null = slice(segment.null_start, segment.null_start + segment.null_length)
        prefix = slice(segment.start, segment.start + segment.prefix)
        qn = query[:, :, null]
        kn = torch.cat([key[:, :, prefix], key[:, :, null]], dim=2)
        vn = torch.cat([value[:, :, prefix], value[:, :, null]], dim=2)
        key_positions = torch.arange(segment.prefix + segment.null_length, device=query.device)
        query_positions = key_positions[segment.prefix :]
        if not capture_only:
            output[0, null] = _attention(qn, kn, vn, query_positions, key_positions, scale, window)[0].transpose(0, 1)
        if heads:
            rows = (segment.null_rows[0] - segment.prefix, segment.null_rows[1] - segment.prefix)
            request.null_rows[index][layer] = _mean_rows(
                qn, kn, heads, rows, query_positions, capture_scale, window, segment.prefix
            )
    return output


def _blocked(query_positions, key_positions, window: int | None) -> torch.Tensor:
    """[Q, K] True where a query may not see a key (the future, or past a sliding window)."""
    blocked = key_positions.unsqueeze(0) > query_positions.unsqueeze(1)
    if window:
        blocked |= key_positions.unsqueeze(0) <= query_positions.unsqueeze(1) - window
    return blocked


def _attention(q, k, v, query_positions, key_positions, scale: float, window: int | None) -> torch.Tensor:
    """sdpa of one segment; plain causal when the queries are the keys and no window applies."""
    gqa = q.shape[1] != k.shape[1]  # each KV head serves several query heads (no copies made)
    if not window and q.shape[2] == k.shape[2]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)
    allowed = ~_blocked(query_positions, key_positions, window)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=gqa)


def _mean_rows(q, k, heads, rows, positions, scale, window, prefix) -> torch.Tensor:
    """Selected heads' attention of the ``rows`` queries, averaged over them, on the first
    ``prefix`` keys ([heads, prefix], float32). ``rows`` index the queries of ``q``;
    ``positions`` are those queries' positions (keys sit at 0..K-1)."""
    start, end = rows
    head_index = torch.tensor(heads, device=q.device)
    groups = q.shape[1] // k.shape[1]
    q_rows = q[0, head_index, start:end].float()  # [H, R, d]
    keys = k[0, head_index // groups].float()  # [H, K, d]
    logits = torch.matmul(q_rows, keys.transpose(-1, -2)) * scale
    key_positions = torch.arange(keys.shape[1], device=q.device)
    blocked = _blocked(positions[start:end], key_positions, window)
    logits = logits.masked_fill(blocked, float("-inf"))
    return torch.softmax(logits, dim=-1).mean(dim=1)[:, :prefix]
