"""Splitting a candidate list into prompt windows of balanced size.

A list is split when it does not fit one prompt (``max_length``), or into windows of
``window_tokens`` document tokens when that is set (the shipped small-model presets set it:
those models rank better in short prompts, docs/results.md "Prompt windows").

Attention scores are listwise: a document's calibrated mass depends on what else shares its
prompt. To keep scores comparable across windows, the windows are made alike: about the same
number of document tokens each (so attention is spread over the same amount of text), and
filled by dealing documents in first-stage order to the emptiest window (so every window gets
a similar mix of strong and weak candidates, not rank 1-20 in one and 81-100 in another).
Inside a window, documents keep their first-stage order unless ``document_order`` says
otherwise (below). Raw scores from different windows are compared as they are (standardising
them per window measured worse for CoRe-R and no better for QR-R, docs/results.md "Prompt
windows").

The deal is also why windows help a first-stage-ordered list: every window gets one of the
strongest first-stage candidates, which carries some of the first stage's order into the
result. A list in no particular order does not get that.

**Order inside a window** (``document_order``, the heads' ``scoring.document_order``). The
documents come before the query in the prompt, and the heads pay more attention to documents
near the query, so where a document sits moves its score (docs/results.md "Prompt order"):

- ``"first_stage"``: the first stage's order, strongest first (farthest from the query); the
  paper's order and what every release before this setting ran;
- ``"reversed"``: strongest last (nearest the query);
- ``"ends"``: the strongest nearest the query, the second first, the weakest in the middle;
- ``"both"``: each window scored in first-stage and in reversed order, and a document's score
  is the **mean** of its two raw scores (permutation self-consistency). The mean ranks exactly
  as the sum does, and keeps a score on the same scale as one order's, so raw scores, score
  thresholds and the min-max ``relevance_score`` read the same as with one order. It runs
  twice the prompts.

The order is applied inside each window after the round-robin deal (which documents share a
window is the same under every order). The presets keep ``"first_stage"`` (in SmolLM2's
windows it measured best, though in one prompt ``"reversed"`` and ``"both"`` did much better),
except Gemma 3 270M's QR heads, which take ``"ends"`` (docs/results.md "Prompt order").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError

MIN_WINDOW_TOKENS = 32

# Tokens a document costs beyond its own text: "[document 123] " and the blank line after it.
MARKER_TOKENS = 8

DOCUMENT_ORDERS: tuple[str, ...] = ("first_stage", "reversed", "both", "ends")


def check_document_order(value: Any) -> str:
    """``value`` if it is one of ``DOCUMENT_ORDERS``."""
    if value not in DOCUMENT_ORDERS:
        raise InputError(f"document_order must be 'auto' or one of {', '.join(DOCUMENT_ORDERS)}, got {value!r}")
    return str(value)


def parse_document_order(text: str) -> str:
    """``--document-order``: ``"auto"`` or one of ``DOCUMENT_ORDERS`` (``-`` may stand for ``_``)."""
    text = text.strip().lower().replace("-", "_")
    return text if text == "auto" else check_document_order(text)


def window_orders(window: Sequence[int], document_order: str) -> list[list[int]]:
    """The prompt orders a window is scored in; ``window`` lists its slots in first-stage order."""
    window = list(window)
    if document_order == "first_stage":
        return [window]
    if document_order == "reversed":
        return [window[::-1]]
    if document_order == "both":
        return [window, window[::-1]]
    if document_order == "ends":  # ranks 2, 4, 6, ... from the start, then ..., 5, 3, 1 to the query
        return [window[1::2] + window[0::2][::-1]]
    raise InputError(f"unknown document_order {document_order!r}")


def score_plan(
    plan: "WindowPlan",
    num_documents: int,
    names: Sequence[Any],
    document_order: str,
    score_prompt: Callable[[list[int]], Mapping[Any, Sequence[float]]],
) -> dict[Any, list[float]]:
    """Scores per input index (``-inf`` for a document in no window) for each of ``names``.

    ``score_prompt(slots)`` scores one prompt holding ``slots`` in that order and returns
    ``{name: one value per slot}``. Each window is scored in each of its ``window_orders`` and
    a slot's score is the mean over them (with one order, its value as it is).
    """
    scores = {name: [float("-inf")] * num_documents for name in names}
    for window in plan.windows:
        orders = window_orders(window, document_order)
        totals: dict[Any, dict[int, float]] = {name: {} for name in names}
        for order in orders:
            for name, values in score_prompt(order).items():
                for slot, value in zip(order, values):
                    totals[name][slot] = totals[name].get(slot, 0.0) + value
        for name, by_slot in totals.items():
            for slot, total in by_slot.items():
                for index in plan.indices[slot]:
                    scores[name][index] = total / len(orders) if len(orders) > 1 else total
    return scores


def plan_windows(doc_tokens: Sequence[int], capacity: int) -> list[list[int]]:
    """Group document indices into windows whose token cost stays within ``capacity``.

    ``capacity`` is the prompt budget minus the tokens the template, instruction and query
    take. Every document must fit on its own (the caller truncates longer ones).
    """
    costs = [count + MARKER_TOKENS for count in doc_tokens]
    if not costs:
        return []
    too_long = [i for i, cost in enumerate(costs) if cost > capacity]
    if too_long:
        raise InputError(f"documents {too_long} do not fit the token budget on their own")
    groups: list[list[int]] = [[] for _ in range(max(1, math.ceil(sum(costs) / capacity)))]
    loads = [0] * len(groups)
    for index, cost in enumerate(costs):
        fitting = [w for w in range(len(groups)) if loads[w] + cost <= capacity]
        if not fitting:  # a long document late in the list: give it a window of its own
            groups.append([])
            loads.append(0)
            fitting = [len(groups) - 1]
        target = min(fitting, key=lambda w: (loads[w], w))
        groups[target].append(index)
        loads[target] += cost
    return [group for group in groups if group]


def check_window_tokens(value: Any) -> int | None:
    """``value`` if it is ``None`` or a whole number of tokens >= ``MIN_WINDOW_TOKENS``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_WINDOW_TOKENS:
        raise InputError(
            f"window_tokens must be 'auto', None or a number of tokens >= {MIN_WINDOW_TOKENS}, got {value!r}"
        )
    return value


def parse_window_tokens(text: str) -> int | str | None:
    """``"auto"`` -> ``"auto"``, ``"none"`` -> ``None``, ``"600"`` -> ``600`` (``--window-tokens``)."""
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    if text == "none":
        return None
    try:
        return check_window_tokens(int(text))
    except ValueError as exc:
        raise InputError(f"window size: expected a number of tokens, 'none' or 'auto', got {text!r} ({exc})") from None


@dataclass
class WindowPlan:
    """The prompts one candidate list is scored in."""

    indices: list[list[int]]  # per slot (distinct non-empty text), the input indices holding it
    slots: list[str]  # the distinct texts as prompted (cut by tokens if one alone would not fit)
    windows: list[list[int]]  # per prompt window, its slots in first-stage order

    def input_windows(self) -> list[list[int]]:
        """Per window, the input indices it scores (ascending)."""
        return [sorted(i for slot in window for i in self.indices[slot]) for window in self.windows]


def plan_prompt_windows(
    builder: Any,
    query: str,
    texts: Sequence[str],
    max_length: int,
    window_tokens: int | None,
    order: Sequence[int] | None = None,
) -> WindowPlan:
    """Windows for ``texts`` (already cut to words) next to ``query``.

    ``builder`` is the reranker's ``PromptBuilder``. Every window's prompt fits ``max_length``;
    with ``window_tokens`` the windows also hold at most that many document tokens, except that
    a window always holds at least its largest document. ``order``: the input indices in
    first-stage order (``core_rerank.first_stage``; ``None``: the input order).
    """
    by_text: dict[str, list[int]] = {}
    for index in range(len(texts)) if order is None else order:
        text = texts[index]
        if text:
            by_text.setdefault(text, []).append(index)
    if not by_text:
        return WindowPlan([], [], [])
    limit = max_length - builder.overhead_tokens(query)
    if limit < MARKER_TOKENS + 16:
        raise InputError(f"max_length={max_length} leaves no room for documents next to this query")
    slots = _fit_long_documents(builder, list(by_text), limit)
    counts = builder.count_tokens(slots)
    capacity = limit
    if window_tokens is not None:
        capacity = min(limit, max(window_tokens, max(counts) + MARKER_TOKENS))
    return WindowPlan(list(by_text.values()), slots, plan_windows(counts, capacity))


def _fit_long_documents(builder: Any, texts: list[str], capacity: int) -> list[str]:
    """Cut (by tokens) any document that cannot fit a prompt even on its own."""
    limit = capacity - MARKER_TOKENS - 8
    fitted = []
    for text, count in zip(texts, builder.count_tokens(texts)):
        if count > limit:
            offsets = builder.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            text = text[: offsets[limit - 1][1]]
        fitted.append(text)
    return fitted
