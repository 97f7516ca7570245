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
The prompts' attention is one batched sdpa call (each prompt a row of the batch, padded to the
longest: under the causal mask real rows never see the padding), the N/A suffixes' another
(``Layout`` holds the gather indices, built once per pass).

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
        self._layouts: dict[Any, Layout] = {}

    def layout(self, device: torch.device) -> "Layout":
        """The batch layout of the segments (built once, on ``device``)."""
        if device not in self._layouts:
            self._layouts[device] = build_layout(self.segments, device)
        return self._layouts[device]


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
    return _batched_attention(request.layout(query.device), query, key, value, scale, window)


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


@dataclass
class Layout:
    """Gather indices that lay the packed segments out as one padded batch per kind of part.

    Prompts: ``prompt_index`` [n, L] (each row a prompt's tokens, padded by repeating its last
    token: under a causal mask the real rows never see the padding). N/A suffixes: queries
    ``null_query_index`` [n, N], keys ``null_key_index`` [n, P + N] (the prompt's prefix, then
    the suffix), ``null_positions`` / ``null_key_positions`` their positions (padding: -1).
    ``*_rows`` pick the real rows of the flattened batch, ``*_targets`` their packed positions.
    """

    prompt_index: torch.Tensor
    prompt_rows: torch.Tensor
    prompt_targets: torch.Tensor
    null_query_index: torch.Tensor | None = None
    null_key_index: torch.Tensor | None = None
    null_positions: torch.Tensor | None = None
    null_key_positions: torch.Tensor | None = None
    null_rows: torch.Tensor | None = None
    null_targets: torch.Tensor | None = None


def _padded(parts: list[list[int]], pad_with_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[n, max length] of ``parts`` padded (with each part's last value, or -1), the flat row
    numbers of the real entries and those entries' values."""
    width = max(len(part) for part in parts)
    table = [part + [part[-1] if pad_with_last else -1] * (width - len(part)) for part in parts]
    rows = [i * width + j for i, part in enumerate(parts) for j in range(len(part))]
    values = [value for part in parts for value in part]
    return torch.tensor(table), torch.tensor(rows), torch.tensor(values)


def build_layout(segments: Sequence[Segment], device: torch.device) -> Layout:
    prompts = [list(range(s.start, s.start + s.length)) for s in segments]
    index, rows, targets = _padded(prompts, pad_with_last=True)
    layout = Layout(index.to(device), rows.to(device), targets.to(device))
    if segments and segments[0].null_start is not None:
        queries = [list(range(s.null_start or 0, (s.null_start or 0) + s.null_length)) for s in segments]
        keys = [list(range(s.start, s.start + s.prefix)) + q for s, q in zip(segments, queries)]
        query_index, null_rows, null_targets = _padded(queries, pad_with_last=True)
        key_index = _padded(keys, pad_with_last=True)[0]
        query_positions = _padded([list(range(s.prefix, s.prefix + s.null_length)) for s in segments], False)[0]
        key_positions = _padded([list(range(s.prefix + s.null_length)) for s in segments], False)[0]
        layout.null_query_index, layout.null_key_index = query_index.to(device), key_index.to(device)
        layout.null_positions, layout.null_key_positions = query_positions.to(device), key_positions.to(device)
        layout.null_rows, layout.null_targets = null_rows.to(device), null_targets.to(device)
    return layout


def _batched_attention(layout: Layout, query, key, value, scale: float, window: int | None) -> torch.Tensor:
    """Attention of every prompt, then of every N/A suffix, each kind as one sdpa call."""
    heads, dim = query.shape[1], query.shape[3]
    output = query.new_empty((query.shape[2], heads, dim))
    q, k, v = query[0], key[0], value[0]  # [heads, T, dim]
    gqa = q.shape[0] != k.shape[0]  # each KV head serves several query heads (no copies made)
    index = layout.prompt_index
    mask = None
    if window:  # sliding window: causal within the window
        positions = torch.arange(index.shape[1], device=q.device)
        mask = ~blocked(positions, positions, window)
    batch = F.scaled_dot_product_attention(
        q[:, index].transpose(0, 1),
        k[:, index].transpose(0, 1),
        v[:, index].transpose(0, 1),
        attn_mask=mask,
        is_causal=mask is None,
        scale=scale,
        enable_gqa=gqa,
    )  # [n, heads, L, dim]
    output[layout.prompt_targets] = batch.transpose(1, 2).reshape(-1, heads, dim)[layout.prompt_rows]
    if layout.null_query_index is not None:
        assert layout.null_positions is not None and layout.null_key_positions is not None
        query_positions, key_positions = layout.null_positions, layout.null_key_positions
        allowed = (key_positions.unsqueeze(1) <= query_positions.unsqueeze(2)) & (key_positions.unsqueeze(1) >= 0)
        if window:
            allowed &= key_positions.unsqueeze(1) > query_positions.unsqueeze(2) - window
        allowed[:, :, 0] |= query_positions < 0  # padding rows see one key (no empty softmax)
        batch = F.scaled_dot_product_attention(
            q[:, layout.null_query_index].transpose(0, 1),
            k[:, layout.null_key_index].transpose(0, 1),
            v[:, layout.null_key_index].transpose(0, 1),
            attn_mask=allowed.unsqueeze(1),
            scale=scale,
            enable_gqa=gqa,
        )
        output[layout.null_targets] = batch.transpose(1, 2).reshape(-1, heads, dim)[layout.null_rows]
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
