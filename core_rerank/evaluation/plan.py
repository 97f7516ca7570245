"""Planning an evaluation run: which entries (method, heads, layers built) it scores.

An entry is one row of the comparison: the first stage, ICR, QR-R or CoRe-R with a head set
and a number of layers built. Besides the main methods, a run can plan

- a **heads sweep** (``--sweep-num-heads``): the best ``num_heads`` heads of a per-head score
  table (or the first ``num_heads`` of the given config), ``"all"`` meaning every head (ICR);
- a **pruning sweep** (``--prune``): a fraction of the final layers dropped, and the heads
  re-selected inside the kept layers from the score table (pruning-aware selection);
- a **window sweep** (``--sweep-window``): each method with prompt windows of N document
  tokens (``None``: one prompt), see ``core_rerank.windows``;
- an **order sweep** (``--sweep-order``): each method with the documents of each window in
  another prompt order (``first_stage``, ``reversed``, ``both``, ``ends``).

Every entry carries the window size it is scored with (``window_tokens``): the sweep's level,
else the run's ``--window-tokens``, else its heads' ``scoring.window_tokens`` (one prompt for ICR);
and likewise its ``document_order`` (``first_stage`` for ICR).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..head_config import HeadConfig, is_score_table
from ..windows import parse_document_order, parse_window_tokens
from .results_file import ORDER_GROUP, SWEEP_GROUP, WINDOW_GROUP, order_label, sweep_label, window_label

METHOD_NAMES = {"first-stage": "first stage", "icr": "ICR", "qr": "QR-R", "core": "CoRe-R"}
ALL_METHODS = ("first-stage", "icr", "qr", "core")


@dataclass
class EntrySpec:
    """One row of the comparison: a method with a head set and a number of layers built.

    ``num_layers_to_keep`` as ``CoReReranker.from_pretrained`` takes it: ``None`` builds as
    many layers as the heads need, ``"all"`` every layer, an int that many.
    """

    label: str
    method: str  # first-stage | icr | qr | core
    group: str = "main"  # main | sweep-num-heads | prune | sweep-window | sweep-order
    param: Any = None  # the number of heads, the pruning fraction, the window size or the order
    heads: HeadConfig | None = None  # None for the first stage and ICR
    num_layers_to_keep: int | str | None = None
    note: str | None = None
    same_as: str | None = None  # reuse another entry's results (identical config)
    window_tokens: int | None = None  # document tokens per prompt window (None: one prompt)
    document_order: str = "first_stage"  # the order inside each window (core_rerank.windows)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a stored entry to be resumed (format version 2 encoding; the
        window size only when there is one and the order only when not first-stage, so entries
        of older files still match)."""
        fingerprint: dict[str, Any] = {
            "method": self.method,
            "heads": [list(h) for h in self.heads.heads] if self.heads is not None else None,
            "num_layers_to_keep": self.num_layers_to_keep,
        }
        if self.window_tokens is not None:
            fingerprint["window_tokens"] = self.window_tokens
        if self.document_order != "first_stage":
            fingerprint["document_order"] = self.document_order
        return fingerprint


def entry_window_tokens(heads: HeadConfig | None, window_tokens: int | str | None) -> int | None:
    """An entry's window size: ``window_tokens`` unless ``"auto"``, else its heads' own setting
    (one prompt without heads, i.e. ICR)."""
    if window_tokens != "auto":
        return window_tokens  # type: ignore[return-value]
    return heads.scoring.window_tokens if heads is not None else None


def entry_document_order(heads: HeadConfig | None, document_order: str) -> str:
    """An entry's order inside each window: ``document_order`` unless ``"auto"``, else its
    heads' own setting (first-stage order without heads, i.e. ICR)."""
    if document_order != "auto":
        return document_order
    return heads.scoring.document_order if heads is not None else "first_stage"


def parse_sweep_order(text: str | None) -> list[str]:
    """``"first_stage,reversed,both"`` -> that list (the ``--sweep-order`` levels)."""
    levels: list[str] = []
    for part in (text or "").split(","):
        if part.strip():
            level = parse_document_order(part)
            if level == "auto":
                raise InputError("--sweep-order levels are orders (first_stage, reversed, both, ends), not 'auto'")
            if level in levels:
                raise InputError(f"--sweep-order lists {part.strip()!r} twice")
            levels.append(level)
    return levels


def parse_sweep_window(text: str | None) -> list[int | None]:
    """``"300,600,none"`` -> ``[300, 600, None]`` (the ``--sweep-window`` levels; none = one prompt)."""
    levels = []
    for part in (text or "").split(","):
        if part.strip():
            level = parse_window_tokens(part)
            if level == "auto":
                raise InputError("--sweep-window levels are numbers of tokens or 'none', not 'auto'")
            if level in levels:
                raise InputError(f"--sweep-window lists {part.strip()!r} twice")
            levels.append(level)
    return levels  # type: ignore[return-value]


def parse_sweep_num_heads(text: str | None) -> list[Any]:
    """``"1,2,4,all"`` -> ``[1, 2, 4, "all"]`` (the ``--sweep-num-heads`` levels)."""
    if not text:
        return []
    values: list[Any] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            values.append("all")
        else:
            num_heads = int(part)
            if num_heads < 1:
                raise InputError(f"--sweep-num-heads values must be >= 1 or 'all', got {num_heads}")
            values.append(num_heads)
    return values


def parse_prune(text: str | None) -> list[float]:
    """``"0,0.5"`` -> ``[0.0, 0.5]``: fractions of the final layers dropped, each in [0, 1)."""
    if not text:
        return []
    levels = [float(p) for p in text.split(",") if p.strip()]
    for p in levels:
        if not 0 <= p < 1:
            raise InputError(f"--prune levels are fractions of final layers dropped, in [0, 1); got {p}")
    return levels


def layers_after_pruning(num_layers: int, fraction: float) -> int:
    """Layers kept when dropping ``fraction`` of the final layers (rounded to nearest, >= 1)."""
    return max(1, num_layers - math.floor(fraction * num_layers + 0.5))


def _scored_config(
    base: HeadConfig, table: Mapping[str, float], num_heads: int, num_layers_to_keep: int | None, **extra: Any
) -> HeadConfig:
    provenance = base.provenance.model_copy(update={"num_heads": num_heads, **extra})
    return HeadConfig.from_scores(
        table,
        num_heads=num_heads,
        num_layers_to_keep=num_layers_to_keep,
        method=base.method,
        name=base.name,
        model_ids=list(base.model_ids),
        architecture=base.architecture,
        scoring=base.scoring,
        provenance=provenance,
    )


def plan_entries(
    methods: Sequence[str],
    heads: Mapping[str, HeadConfig],
    num_layers: int,
    sweep_num_heads: Sequence[Any] = (),
    prune: Sequence[float] = (),
    head_scores: Mapping[str, Mapping[str, float]] | None = None,
    sweep_window: Sequence[int | None] = (),
    window_tokens: int | str | None = "auto",
    sweep_order: Sequence[str] = (),
    document_order: str = "auto",
) -> list[EntrySpec]:
    """The entries of one evaluation run.

    ``heads``: ``{"core": HeadConfig, "qr": HeadConfig}`` for the methods that need them.
    ``head_scores``: per-head score tables (``"layer-head" -> score``) by method, used for the
    heads sweep (the best ``num_heads`` of the table) and pruning-aware re-selection.
    ``window_tokens`` / ``document_order``: every entry's window size and order inside each
    window (``"auto"``: its heads' own setting).
    """
    head_scores = head_scores or {}
    entries: list[EntrySpec] = []
    for method in methods:
        if method == "first-stage":
            entries.append(EntrySpec("first-stage", "first-stage", num_layers_to_keep="all"))
        elif method == "icr":
            entries.append(EntrySpec("icr", "icr", num_layers_to_keep="all"))
        else:
            entries.append(EntrySpec(method, method, heads=heads[method]))
    head_methods = [m for m in methods if m in ("core", "qr")]
    for method in head_methods:
        entries.extend(
            _sweep_entries(method, heads[method], head_scores.get(method), sweep_num_heads, "icr" in methods)
        )
    for method in head_methods:  # ICR stays the unpruned reference
        for fraction in prune:
            entries.append(_prune_entry(method, heads[method], head_scores.get(method), num_layers, fraction))
    for spec in entries:
        spec.window_tokens = entry_window_tokens(spec.heads, window_tokens)
        spec.document_order = entry_document_order(spec.heads, document_order)
    main = {spec.label: spec for spec in entries if spec.group == "main" and spec.method != "first-stage"}
    for method, spec in main.items():
        for level in sweep_window:
            entries.append(
                EntrySpec(
                    window_label(method, level),
                    method,
                    WINDOW_GROUP,
                    "none" if level is None else level,
                    heads=spec.heads,
                    num_layers_to_keep=spec.num_layers_to_keep,
                    window_tokens=level,
                    document_order=spec.document_order,
                    same_as=method if level == spec.window_tokens else None,
                )
            )
    for method, spec in main.items():
        for order in sweep_order:
            entries.append(
                EntrySpec(
                    order_label(method, order),
                    method,
                    ORDER_GROUP,
                    order,
                    heads=spec.heads,
                    num_layers_to_keep=spec.num_layers_to_keep,
                    window_tokens=spec.window_tokens,
                    document_order=order,
                    same_as=method if order == spec.document_order else None,
                )
            )
    return entries


def _sweep_entries(
    method: str, base: HeadConfig, table: Mapping[str, float] | None, levels: Sequence[Any], icr_planned: bool
) -> list[EntrySpec]:
    entries = []
    for num_heads in levels:
        label = sweep_label(method, num_heads)
        if num_heads == "all":
            entries.append(
                EntrySpec(
                    label,
                    "icr",
                    SWEEP_GROUP,
                    "all",
                    num_layers_to_keep="all",
                    note="every head of every layer (ICR)",
                    same_as="icr" if icr_planned else None,
                )
            )
            continue
        if table is not None:
            config = _scored_config(base, table, num_heads, None)
            note = None if len(config.heads) == num_heads else f"the score table has only {len(config.heads)} heads"
        else:
            config = base.top_heads(num_heads)
            note = (
                None
                if num_heads <= len(base.heads)
                else (
                    f"only {len(base.heads)} heads in the config (no --head-scores): "
                    f"same as num_heads={len(base.heads)}"
                )
            )
        same = method if [tuple(h) for h in config.heads] == [tuple(h) for h in base.heads] else None
        entries.append(EntrySpec(label, method, SWEEP_GROUP, num_heads, heads=config, note=note, same_as=same))
    return entries


def _prune_entry(
    method: str, base: HeadConfig, table: Mapping[str, float] | None, num_layers: int, fraction: float
) -> EntrySpec:
    label = f"{method}@prune={fraction:g}"
    keep = layers_after_pruning(num_layers, fraction)
    num_heads = len(base.heads)
    if fraction == 0:
        return EntrySpec(
            label,
            method,
            "prune",
            fraction,
            heads=base,
            num_layers_to_keep="all",
            note=f"every layer built ({num_layers}); heads as given",
        )
    if table is not None:
        config = _scored_config(base, table, num_heads, keep, pruned_to_layers=keep)
        note = f"top-{num_heads} heads re-selected inside the first {keep} layers (score table)"
    else:
        kept = [h for h in base.heads if h[0] < keep]
        if not kept:
            return EntrySpec(
                label,
                method,
                "prune",
                fraction,
                num_layers_to_keep=keep,
                note=f"skipped: no given head lies in the first {keep} layers "
                "and no --head-scores table to re-select from",
            )
        config = base.with_heads(kept)
        note = (
            f"{len(kept)} of {num_heads} given heads lie in the first {keep} layers "
            "(no --head-scores table: not re-selected)"
        )
    return EntrySpec(label, method, "prune", fraction, heads=config, num_layers_to_keep=keep, note=note)


def load_score_table(
    path: str | Path | None, config: HeadConfig | None = None
) -> tuple[dict[str, float] | None, str | None]:
    """A ``{"layer-head": score}`` table for sweeps and pruning-aware re-selection.

    ``path``: an official flat score file, a score table written by ``core-rerank detect``
    (its table for the config's ``provenance.score`` key, else its default ``scores``), or a
    detected head config (``provenance.head_scores``). Without ``path``, the table embedded in
    ``config.provenance.head_scores`` (written by detection) is used when there is one.
    Returns ``(table, where it came from)``; ``(None, None)`` when there is none.
    """
    provenance = config.provenance.model_dump() if config is not None else {}
    if path is None:
        table = provenance.get("head_scores")
        return (dict(table), "provenance.head_scores of the head config") if table else (None, None)
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if is_score_table(data):
        return data, str(path)
    tables = data.get("tables") or {}
    key = provenance.get("score")
    if key in tables:
        return tables[key], f"{path} (table {key!r})"
    if isinstance(data.get("scores"), dict):
        return data["scores"], f"{path} (default scores)"
    embedded = (data.get("provenance") or {}).get("head_scores")
    if embedded:
        return embedded, f"{path} (provenance.head_scores)"
    raise InputError(f"{path}: not a per-head score table ('layer-head' -> score)")
