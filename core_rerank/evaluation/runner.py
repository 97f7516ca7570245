"""Running an evaluation: every planned entry on the same candidates, resumable from its JSON.

Each entry gets its own reranker (built with only the layers it needs) and memory meter,
unless ``one_pass`` scores every entry from one shared all-heads pass per query. Per-query
results are saved as they come (at most every 20 s, and after each entry), so an interrupted
run resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import EvalData, load_eval_data
from ..errors import InputError
from ..head_config import HeadConfig
from ..settings import RerankerSettings
from ..utils import text_config
from .metrics import evaluate, strict_scores
from .passes import ONE_PASS_NOTE, score_entry, score_in_one_pass
from .plan import ALL_METHODS, EntrySpec, entry_document_order, entry_window_tokens, load_score_table, plan_entries
from .results_file import RESULTS_FORMAT, RESULTS_VERSION, read_results, run_versions, write_results
from .sensitivity import add_order_sensitivity
from .settings import EvalSettings
from .workers import uses_workers

# first_stage_scores is absent from older files: _resume reads it there as False.
RESUME_KEYS = (
    "model",
    "data_dir",
    "split",
    "run",
    "depth",
    "dtype",
    "max_doc_words",
    "max_length",
    "first_stage_scores",
)


def run_evaluation(
    settings: EvalSettings, out: str | Path | None = None, resume: bool = True, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run every planned entry on the same candidates; write/resume ``out`` (JSON)."""
    methods = _checked_methods(settings)
    from .. import loading

    recall_ks = tuple(settings.recall_ks or sorted({10, settings.depth}))
    data, qids, missing, candidates = _load_candidates(settings, log)
    source = loading.resolve_source(settings.model)
    decoder_config = text_config(loading.load_config(source))
    entries, table_sources = _plan(settings, methods, source.model_ids, decoder_config.num_hidden_layers)
    record = _settings_record(settings, methods, source.model_ids, decoder_config, data, recall_ks, table_sources)
    results = _new_results(record, data, qids, missing, candidates)
    out_path = Path(out) if out else None
    if out_path is not None and out_path.is_file() and resume:
        _resume(results, out_path, candidates)
        log(f"resuming from {out_path}")
    meter_device = str(loading.resolve_device(settings.device))  # "cuda" peaks need a reset before loading
    run = _Run(settings, data, qids, candidates, recall_ks, results, out_path, meter_device)
    if settings.one_pass:
        _score_shared_pass(run, entries)
    for spec in entries:
        _run_entry(run, spec, log)
    _finish(run, [spec.label for spec in entries])
    return results


@dataclass
class _Run:
    """What the steps of one evaluation share: its settings, queries, candidates and results."""

    settings: EvalSettings
    data: EvalData
    qids: list[str]
    candidates: dict[str, list[str]]
    recall_ks: tuple[int, ...]
    results: dict[str, Any]
    out_path: Path | None
    meter_device: str
    last_save: float = field(default_factory=time.monotonic)

    def save(self, force: bool = False) -> None:
        """Write the results to ``out_path`` when forced or over 20 s after the last write."""
        if self.out_path is not None and (force or time.monotonic() - self.last_save > 20):
            write_results(self.out_path, self.results)
            self.last_save = time.monotonic()

    def summarise(self, entry: dict[str, Any], first_stage: bool) -> None:
        """Recompute ``entry``'s per-query metrics and summary over this run's queries."""
        _summarise(
            entry,
            self.data,
            self.qids,
            self.candidates,
            self.recall_ks,
            self.settings.relevance_level,
            first_stage=first_stage,
        )


def _checked_methods(settings: EvalSettings) -> tuple[str, ...]:
    """The methods to run, after refusing settings that cannot run (unknown method, bad depth, ...)."""
    if settings.one_pass and uses_workers(settings):
        raise InputError("--one-pass runs one shared model in this process; it does not combine with --workers")
    if settings.one_pass and settings.first_stage_scores:
        raise InputError("--one-pass scores head subsets, which take no first-stage scores: drop one of the two")
    methods = tuple(settings.methods)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; use {', '.join(ALL_METHODS)}")
    if settings.depth < 1:
        raise InputError("--depth must be >= 1")
    return methods


def _load_candidates(
    settings: EvalSettings, log: Callable[[str], Any]
) -> tuple[EvalData, list[str], list[str], dict[str, list[str]]]:
    """Load the data: (data, judged queries, those without candidates, candidates per query)."""
    data = load_eval_data(
        settings.data_dir, split=settings.split, run_file=settings.run_file, first_stage=settings.first_stage
    )
    qids = list(data.queries)
    if settings.max_queries is not None:
        qids = qids[: settings.max_queries]
    missing = data.missing_candidates(qids)
    if missing:
        log(
            f"warning: {len(missing)} of {len(qids)} judged queries have no candidates in the run; "
            f"they score 0 and are listed in the JSON (e.g. {', '.join(missing[:5])})"
        )
    candidates = {q: data.candidates(q, settings.depth) for q in qids}
    return data, qids, missing, candidates


def _plan(
    settings: EvalSettings, methods: Sequence[str], model_ids: Sequence[str], num_layers: int
) -> tuple[list[EntrySpec], dict[str, str | None]]:
    """The planned entries (``--compare-heads`` last) and where each method's score table came from."""
    heads = _resolve_method_heads(settings, methods, model_ids)
    tables, table_sources = {}, {}
    for method, path in (("core", settings.head_scores), ("qr", settings.qr_head_scores)):
        if method in methods:
            table, table_sources[method] = load_score_table(path, heads[method])
            if table is not None:
                tables[method] = table
    entries = plan_entries(
        methods,
        heads,
        num_layers,
        settings.sweep_num_heads,
        settings.prune,
        tables,
        settings.sweep_window,
        settings.window_tokens,
        settings.sweep_order,
        settings.document_order,
    )
    return entries + _compare_entries(settings, model_ids), table_sources


def _resolve_method_heads(
    settings: EvalSettings, methods: Sequence[str], model_ids: Sequence[str]
) -> dict[str, HeadConfig]:
    """The head configs of the CoRe and QR methods run, each marked with its own method."""
    from ..reranker import resolve_heads

    heads: dict[str, HeadConfig] = {}
    for method, given in (("core", settings.heads), ("qr", settings.qr_heads)):
        if method in methods:
            config = resolve_heads(given, method, list(model_ids))
            if config.method != method:
                config = config.model_copy(update={"method": method})
            heads[method] = config
    return heads


def _compare_entries(settings: EvalSettings, model_ids: Sequence[str]) -> list[EntrySpec]:
    """The ``--compare-heads`` entries: extra head sets, scored as CoRe-R."""
    from ..reranker import resolve_heads

    entries = []
    for name, given in settings.compare_heads:
        config = resolve_heads(given, "core", list(model_ids))
        entries.append(
            EntrySpec(
                f"core[{name}]",
                "core",
                heads=config.model_copy(update={"method": "core"}),
                note=f"heads from {given}",
                window_tokens=entry_window_tokens(config, settings.window_tokens),
                document_order=entry_document_order(config, settings.document_order),
            )
        )
    return entries


def _settings_record(
    settings: EvalSettings,
    methods: Sequence[str],
    model_ids: Sequence[str],
    decoder_config: Any,
    data: EvalData,
    recall_ks: Sequence[int],
    table_sources: Mapping[str, str | None],
) -> dict[str, Any]:
    """The ``settings`` block of the results JSON."""
    return {
        "model": settings.model,
        "model_ids": list(model_ids),
        "num_hidden_layers": decoder_config.num_hidden_layers,
        "num_attention_heads": decoder_config.num_attention_heads,
        "data_dir": str(settings.data_dir),
        "split": settings.split,
        "run": data.run_source,
        "depth": settings.depth,
        "methods": list(methods),
        "max_queries": settings.max_queries,
        "device": settings.device,
        # "auto" recorded as what it gives on a CPU (bfloat16 where native): a resume on another
        # CPU must not mix dtypes in one entry
        "dtype": RerankerSettings(device=settings.device, dtype=settings.dtype).cpu_dtype() or settings.dtype,
        "max_doc_words": settings.max_doc_words,
        "max_length": settings.max_length,
        "relevance_level": settings.relevance_level,
        "recall_ks": list(recall_ks),
        "one_pass": settings.one_pass,
        "compare_heads": [[name, str(given)] for name, given in settings.compare_heads],
        "sweep_num_heads": list(settings.sweep_num_heads),
        "sweep_window": list(settings.sweep_window),
        "window_tokens": settings.window_tokens,
        "sweep_order": list(settings.sweep_order),
        "document_order": settings.document_order,
        "first_stage_scores": settings.first_stage_scores,  # the run's scores ordered the prompts
        "prune": list(settings.prune),
        "head_scores": settings.head_scores,
        "qr_head_scores": settings.qr_head_scores,
        "score_tables_used": table_sources,
        "tie_break": "reranked: score desc, then first-stage rank; first stage: run scores with "
        "trec_eval's rule (score desc, doc id desc)",
        **settings.extra,
    }


def _new_results(
    settings_record: dict[str, Any],
    data: EvalData,
    qids: Sequence[str],
    missing: list[str],
    candidates: dict[str, list[str]],
) -> dict[str, Any]:
    """The results JSON before any entry: format, settings, versions and the data block."""
    return {
        "format": RESULTS_FORMAT,
        "format_version": RESULTS_VERSION,
        "settings": settings_record,
        "versions": run_versions(),
        "data": {
            "judged_queries": len(qids),
            "queries_without_candidates": missing,
            "candidates_removed_by_identical_id_rule": data.removed_identical,
            "candidates_without_text": sum(len(v) for q, v in data.missing_texts.items() if q in candidates),
            "candidates": candidates,
        },
        "entries": {},
    }


def _score_shared_pass(run: _Run, entries: Sequence[EntrySpec]) -> None:
    """``--one-pass``: score every entry that needs a model from one shared pass per query."""
    planned_labels = {spec.label for spec in entries}
    shared = [
        spec
        for spec in entries
        if spec.method != "first-stage"
        and spec.same_as not in planned_labels
        and (spec.heads is not None or spec.method == "icr")
    ]
    if shared:
        score_in_one_pass(
            run.settings,
            shared,
            {spec.label: _entry(spec, run.results) for spec in shared},
            run.data,
            run.qids,
            run.candidates,
            run.meter_device,
            run.save,
        )


def _run_entry(run: _Run, spec: EntrySpec, log: Callable[[str], Any]) -> None:
    """Fill one planned entry: a copy of its same-config twin, skipped, first-stage or reranked."""
    if spec.same_as and spec.same_as in run.results["entries"]:
        run.results["entries"][spec.label] = _same_as_entry(spec, run.results["entries"][spec.same_as])
        return
    entry = _entry(spec, run.results)
    todo = [q for q in run.qids if q not in entry["per_query"]]
    if spec.method != "first-stage" and spec.heads is None and spec.method != "icr":
        entry["skipped"] = True  # a pruning level with no usable head
        log(f"{spec.label}: {spec.note}")
        return
    if spec.method == "first-stage":
        _fill_first_stage(run, entry, todo)
        run.summarise(entry, first_stage=True)
        run.save(force=True)
        return
    if todo:
        score_entry(run.settings, spec, entry, run.data, todo, run.meter_device, run.save)
    run.summarise(entry, first_stage=False)
    run.save(force=True)


def _same_as_entry(spec: EntrySpec, source_entry: dict[str, Any]) -> dict[str, Any]:
    """The entry of ``spec``: a copy of the entry it shares its config with, relabelled."""
    return {
        **source_entry,
        "group": spec.group,
        "param": spec.param,
        "note": (spec.note or "") + f" (same config as {spec.same_as!r})",
        "same_as": spec.same_as,
    }


def _fill_first_stage(run: _Run, entry: dict[str, Any], todo: Sequence[str]) -> None:
    """Record the run file's own scores of the ``todo`` queries (no model, no time)."""
    for qid in todo:
        docs = run.candidates[qid]
        entry["per_query"][qid] = {
            "time_s": 0.0,
            "scores": [run.data.run.scores[qid][d] for d in docs] if docs else [],
        }


def _finish(run: _Run, planned: Sequence[str]) -> None:
    """Order the entries, re-summarise leftovers of earlier runs, drop scores if asked, write."""
    results = run.results
    # Planned order first (the one-pass entries were created before the others), then leftovers.
    results["entries"] = {
        **{label: results["entries"][label] for label in planned},
        **{label: e for label, e in results["entries"].items() if label not in planned},
    }
    for label, entry in results["entries"].items():
        # Entries kept from an earlier run with other --methods: re-summarise them over this
        # run's queries (their per-query results were already cut to matching candidates).
        if label not in planned and not entry.get("same_as") and entry.get("per_query") is not None:
            run.summarise(entry, first_stage=entry.get("method") == "first-stage")
    add_order_sensitivity(results["entries"])
    if not run.settings.save_scores:
        for entry in results["entries"].values():
            for record in entry.get("per_query", {}).values():
                record.pop("scores", None)
    if run.out_path is not None:
        write_results(run.out_path, results)


def _resume(results: dict[str, Any], out_path: Path, candidates: Mapping[str, list[str]]) -> None:
    """Take the stored entries of ``out_path`` into ``results`` (refused when settings differ)."""
    previous = read_results(out_path)
    old, new = {"first_stage_scores": False, **previous.get("settings", {})}, results["settings"]
    if previous.get("format") != RESULTS_FORMAT or any(old.get(k) != new.get(k) for k in RESUME_KEYS):
        changed = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
        raise InputError(
            f"{out_path} holds results with other settings ({', '.join(changed) or 'format'}); "
            "use another --out or --no-resume to overwrite it"
        )
    results["entries"] = previous.get("entries", {})
    if previous.get("data", {}).get("candidates") not in (None, candidates):
        # Same files but another query slice: keep only matching per-query candidates.
        old_candidates = previous["data"]["candidates"]
        for entry in results["entries"].values():
            entry["per_query"] = {
                q: v for q, v in entry.get("per_query", {}).items() if old_candidates.get(q) == candidates.get(q)
            }


def _entry(spec: EntrySpec, results: dict[str, Any]) -> dict[str, Any]:
    """The results entry of ``spec``: the stored one when its config is unchanged, else a new one."""
    stored = results["entries"].get(spec.label)
    if stored is not None and stored.get("fingerprint") != spec.fingerprint():
        stored = None
    entry = stored or {
        "method": spec.method,
        "group": spec.group,
        "param": spec.param,
        "fingerprint": spec.fingerprint(),
        "note": spec.note,
        "heads": spec.heads.to_dict() if spec.heads is not None else None,
        "per_query": {},
    }
    entry["note"] = spec.note
    entry["window_tokens"] = spec.window_tokens
    entry["document_order"] = spec.document_order
    if entry.get("one_pass"):  # set by score_in_one_pass; the note says what its figures mean
        entry["note"] = f"{spec.note or ''} {ONE_PASS_NOTE}".strip()
    results["entries"][spec.label] = entry
    return entry


def _summarise(
    entry: dict,
    data: EvalData,
    qids: Sequence[str],
    candidates: Mapping[str, list[str]],
    recall_ks: Sequence[int],
    relevance_level: int,
    first_stage: bool,
) -> None:
    """Compute ``entry``'s per-query metrics and summary over ``qids`` (kept as is without scores)."""
    run = {}
    for qid in qids:
        record = entry["per_query"].get(qid)
        docs = candidates[qid]
        if record is None or not docs or "scores" not in record:
            continue
        scores = [(-math.inf if s is None else s) for s in record["scores"]]
        run[qid] = dict(zip(docs, scores)) if first_stage else strict_scores(docs, scores)
    done = [q for q in qids if q in entry["per_query"]]
    if any("scores" not in entry["per_query"][q] for q in done):
        return  # scores dropped (--no-scores): keep the stored metrics
    result = evaluate(data.qrels, run, recall_ks=recall_ks, relevance_level=relevance_level, queries=done)
    for qid in done:
        entry["per_query"][qid]["metrics"] = {k: round(v, 6) for k, v in result.per_query[qid].items()}
    times = [entry["per_query"][q]["time_s"] for q in done if candidates[q]]
    entry["summary"] = {
        **{k: round(v, 5) for k, v in result.mean.items()},
        "queries": len(done),
        "of_queries": len(qids),
        "complete": len(done) == len(qids),
        "queries_without_candidates": len(result.missing),
        "time_per_query_s": round(sum(times) / len(times), 4) if times else 0.0,
        "docs_per_s": round(sum(len(candidates[q]) for q in done) / sum(times), 2) if times and sum(times) else None,
        "peak_mem_mb": entry.get("peak_mem_mb"),
    }
