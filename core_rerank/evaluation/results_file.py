"""The results file of ``core-rerank eval``: its format, versions, writing and reading.

Format version 2 names the heads sweep as the rest of the package does (``num_heads``);
version 1 files (written before the rename) are read through :func:`upgrade_results`, which
only renames keys and never recomputes a number:

============================  ==============================  ===============================
what                          version 1                       version 2
============================  ==============================  ===============================
settings key                  ``sweep_k``                     ``sweep_num_heads``
entry group                   ``sweep-k``                     ``sweep-num-heads``
sweep entry label             ``core@k=4``                    ``core@num_heads=4``
fingerprint layers: the       ``"auto"``                      ``None``
heads' own need
fingerprint layers: every     ``None``                        ``"all"``
layer
============================  ==============================  ===============================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..utils import atomic_write
from ..utils import versions as package_versions

RESULTS_FORMAT = "core-rerank-eval"
RESULTS_VERSION = 2
SWEEP_GROUP = "sweep-num-heads"
WINDOW_GROUP = "sweep-window"
ORDER_GROUP = "sweep-order"
_V1_SWEEP_GROUP = "sweep-k"


def sweep_label(method: str, num_heads: Any) -> str:
    """The entry label of one heads-sweep level, e.g. ``core@num_heads=4``."""
    return f"{method}@num_heads={num_heads}"


def window_label(method: str, window_tokens: int | None) -> str:
    """The entry label of one window-sweep level, e.g. ``core@window=600`` or ``core@window=none``."""
    return f"{method}@window={'none' if window_tokens is None else window_tokens}"


def order_label(method: str, document_order: str) -> str:
    """The entry label of one order-sweep level, e.g. ``core@order=reversed``."""
    return f"{method}@order={document_order}"


def run_versions() -> dict[str, Any]:
    """Versions of the package and numeric stack, plus the CPU count (provenance of a run)."""
    found = package_versions()
    found["cpu_count"] = os.cpu_count()
    return found


def write_results(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON atomically (``utils.atomic_write``: a temporary file, fsync, a rename)."""
    atomic_write(path, [json.dumps(data, indent=1, ensure_ascii=False) + "\n"])


def read_results(path: str | Path) -> dict[str, Any]:
    """A results file, upgraded to the current format version (names only; no number changes)."""
    return upgrade_results(json.loads(Path(path).read_text(encoding="utf-8")))


def upgrade_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """``results`` in the current format version: a version-1 file's keys renamed (see the
    module docstring). The input is not modified; current files come back as a shallow copy."""
    upgraded = dict(results)
    if results.get("format") != RESULTS_FORMAT or results.get("format_version", 1) >= RESULTS_VERSION:
        return upgraded
    settings = results.get("settings")
    if isinstance(settings, Mapping):
        upgraded["settings"] = {
            ("sweep_num_heads" if key == "sweep_k" else key): value for key, value in settings.items()
        }
    entries = results.get("entries") or {}
    upgraded["entries"] = {_v1_label(label): _v1_entry(entry) for label, entry in entries.items()}
    upgraded["format_version"] = RESULTS_VERSION
    return upgraded


def _v1_label(label: str) -> str:
    method, sep, rest = label.partition("@k=")
    return sweep_label(method, rest) if sep else label


def _v1_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    upgraded = dict(entry)
    if entry.get("group") == _V1_SWEEP_GROUP:
        upgraded["group"] = SWEEP_GROUP
    if isinstance(entry.get("same_as"), str):
        upgraded["same_as"] = _v1_label(entry["same_as"])
    fingerprint = entry.get("fingerprint")
    if isinstance(fingerprint, Mapping) and "num_layers_to_keep" in fingerprint:
        keep = fingerprint["num_layers_to_keep"]
        upgraded["fingerprint"] = {
            **fingerprint,
            "num_layers_to_keep": None if keep == "auto" else "all" if keep is None else keep,
        }
    return upgraded
