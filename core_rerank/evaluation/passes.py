"""Scoring the queries of evaluation entries: one reranker per entry (timed, memory metered),
or one shared forward pass per query for every entry (``--one-pass``)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..datasets import EvalData
from ..errors import InputError
from ..head_config import HeadConfig
from ..settings import built_settings
from ..utils import json_float
from .loop import score_queries, score_queries_by_subsets
from .memory import MemoryMeter
from .plan import EntrySpec
from .settings import EvalSettings
from .workers import score_queries_on_workers, uses_workers

ONE_PASS_NOTE = "[one shared pass: time and memory are the pass's]"


def build_reranker(settings: EvalSettings, spec: EntrySpec) -> Any:
    """The reranker of one entry, built in this process."""
    return settings.reranker_settings(spec).load()


def score_entry(
    settings: EvalSettings,
    spec: EntrySpec,
    entry: dict[str, Any],
    data: EvalData,
    todo: Sequence[str],
    meter_device: str,
    save: Callable[[], None],
) -> None:
    """Score the ``todo`` queries of one entry with its own reranker, metering its peak memory
    (or on a pool of workers, ``settings.workers > 1``: no memory figure then)."""
    if uses_workers(settings):
        entry["workers"] = settings.workers
        entry["memory_measure"] = "not measured: scored on Ray workers"
        built: dict[str, Any] = {}
        for qid, _, scores, seconds in score_queries_on_workers(settings, spec, data, todo, built):
            entry["per_query"][qid] = {"time_s": round(seconds, 4), "scores": [json_float(s) for s in scores]}
            if built and "reranker" not in entry:
                entry["reranker"] = built
                entry["num_layers_built"] = built["num_layers_to_keep"]
            save()
        return
    meter = MemoryMeter(meter_device)
    meter.start()
    load_start = time.perf_counter()
    reranker = build_reranker(settings, spec)
    entry["load_s"] = round(time.perf_counter() - load_start, 3)
    entry["num_layers_built"] = reranker.model.config.num_hidden_layers
    entry["device"] = str(reranker.device)
    entry["reranker"] = built_settings(reranker)
    queries = score_queries(
        reranker, data, todo, settings.depth, spec.label, settings.progress, settings.first_stage_scores
    )
    for qid, _, scores, seconds in queries:
        entry["per_query"][qid] = {"time_s": round(seconds, 4), "scores": [json_float(s) for s in scores]}
        save()
    peak = meter.peak_mb()
    previous_peak = entry.get("peak_mem_mb")
    entry["peak_mem_mb"] = round(max(peak, previous_peak or 0), 1) if peak is not None else previous_peak
    entry["baseline_mem_mb"] = round(meter.baseline_mb, 1) if meter.baseline_mb is not None else None
    entry["memory_measure"] = meter.kind
    del reranker
    gc.collect()


def score_in_one_pass(
    settings: EvalSettings,
    specs: Sequence[EntrySpec],
    entries: Mapping[str, dict],
    data: EvalData,
    qids: Sequence[str],
    candidates: Mapping[str, list[str]],
    meter_device: str,
    save: Callable[[], None],
) -> None:
    """Fill every entry from one forward pass per query (``--one-pass``).

    One reranker holds the union of the entries' heads (every head when ICR is among them);
    each entry's scores come from its own head subset (``CoReReranker.score_head_subsets``),
    equal to scoring it alone up to float rounding. Pruned entries need no own model: layers
    never depend on later ones. Entries with different window sizes (``--sweep-window``) get
    one pass per size, on the same model, and likewise each order (``--sweep-order``). Time and
    memory are the shared pass's (of the entry's window size and order), recorded on each entry.
    """
    # Window size and order are not scoring differences here (each gets its own pass); nor is the
    # first-stage weight, which needs first-stage scores (refused with --one-pass).
    plain = {"window_tokens": None, "document_order": "first_stage", "first_stage_weight": 0.0}
    scorings = {
        spec.label: (spec.heads.scoring if spec.heads is not None else HeadConfig(method="icr").scoring).model_copy(
            update=plain
        )
        for spec in specs
    }
    first = next(iter(scorings.values()))
    differing = [label for label, scoring in scorings.items() if scoring != first]
    if differing:
        raise InputError(
            f"--one-pass needs the same scoring settings for every entry; {differing} differ "
            f"from {specs[0].label!r} (e.g. a logit_scale override): run without --one-pass"
        )
    if any(spec.heads is None for spec in specs):
        union = HeadConfig(method="icr", name="one-pass-all-heads", scoring=first)
    else:
        heads = sorted({tuple(h) for spec in specs for h in spec.heads.heads})  # type: ignore[union-attr]
        union = HeadConfig(method="core", name="one-pass-union", heads=heads, scoring=first)
    subsets_by_window: dict[tuple[int | None, str], dict[str, Any]] = {}
    for spec in specs:
        subsets_by_window.setdefault((spec.window_tokens, spec.document_order), {})[spec.label] = (
            [tuple(h) for h in spec.heads.heads] if spec.heads is not None else None
        )
    todo = [q for q in qids if candidates[q] and any(q not in e["per_query"] for e in entries.values())]
    for qid in qids:  # judged queries without candidates: nothing to score
        if not candidates[qid]:
            for entry in entries.values():
                entry["per_query"].setdefault(qid, {"time_s": 0.0, "scores": []})
    if not todo:
        return
    meter = MemoryMeter(meter_device)
    meter.start()
    load_start = time.perf_counter()
    reranker = build_reranker(
        settings, EntrySpec("one-pass", union.method, heads=None if union.method == "icr" else union)
    )
    load_s = round(time.perf_counter() - load_start, 3)
    filled = set()  # entries that got queries from this pass (others keep their own figures)
    for qid, scores, seconds in score_queries_by_subsets(
        reranker, data, todo, settings.depth, subsets_by_window, "one pass", settings.progress
    ):
        for label, entry in entries.items():
            if qid not in entry["per_query"]:
                entry["per_query"][qid] = {
                    "time_s": round(seconds[label], 4),
                    "scores": [json_float(s) for s in scores[label]],
                }
                filled.add(label)
        save()
    peak = meter.peak_mb()
    for entry in (entries[label] for label in filled):
        entry.update(
            one_pass=True,
            load_s=load_s,
            num_layers_built=reranker.model.config.num_hidden_layers,
            device=str(reranker.device),
            memory_measure=meter.kind,
            baseline_mem_mb=round(meter.baseline_mb, 1) if meter.baseline_mb is not None else None,
            peak_mem_mb=round(max(peak, entry.get("peak_mem_mb") or 0), 1) if peak is not None else None,
        )
    del reranker
    gc.collect()
