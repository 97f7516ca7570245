"""Order sensitivity in ``core-rerank eval``: how much the prompt order decides the ranking.

When a run scored the same method, heads and window size in first-stage order and in reversed
order (``--sweep-order first_stage,reversed``), the reversed entry gets ``order_sensitivity``:
per query, Kendall's tau-b between the two score lists (1: the order changes nothing, 0: the
two rankings are unrelated), and their mean over the queries both entries scored.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from typing import Any

from .metrics import kendall_tau


def _config(entry: Mapping[str, Any]) -> dict[str, Any]:
    fingerprint = dict(entry.get("fingerprint") or {})
    fingerprint.pop("document_order", None)
    return fingerprint


def add_order_sensitivity(entries: Mapping[str, dict[str, Any]]) -> None:
    """Set ``order_sensitivity`` (and each query's ``kendall_tau_vs_first_stage``) on every
    reversed-order entry that has a first-stage-order twin with scores."""
    scored = {label: e for label, e in entries.items() if e.get("per_query") and e.get("method") != "first-stage"}
    for entry in scored.values():
        if entry.get("document_order") != "reversed":
            continue
        twin = next(
            (
                other_label
                for other_label, other in scored.items()
                if other.get("document_order") == "first_stage" and _config(other) == _config(entry)
            ),
            None,
        )
        if twin is None:
            continue
        taus = {}
        for qid, record in entry["per_query"].items():
            other = scored[twin]["per_query"].get(qid) or {}
            if record.get("scores") and other.get("scores") and len(record["scores"]) == len(other["scores"]):
                taus[qid] = kendall_tau(other["scores"], record["scores"])
        finite = [t for t in taus.values() if not math.isnan(t)]
        if not finite:
            continue
        for qid, tau in taus.items():
            entry["per_query"][qid]["kendall_tau_vs_first_stage"] = None if math.isnan(tau) else round(tau, 6)
        entry["order_sensitivity"] = {
            "first_stage_entry": twin,
            "mean_kendall_tau": round(statistics.fmean(finite), 5),
            "queries": len(finite),
        }
