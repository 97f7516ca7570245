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
from pathlib import Path
from typing import Any

from ..datasets import EvalData, load_eval_data
from ..head_config import HeadConfig
from ..utils import text_config
from .metrics import evaluate, strict_scores
from .passes import ONE_PASS_NOTE, score_entry, score_in_one_pass
from .plan import ALL_METHODS, EntrySpec, entry_window_tokens, load_score_table, plan_entries
from .results_file import RESULTS_FORMAT, RESULTS_VERSION, read_results, run_versions, write_results
from .settings import EvalSettings
from .workers import uses_workers

RESUME_KEYS = ("model", "data_dir", "split", "run", "depth", "dtype", "max_doc_words", "max_length")


def run_evaluation(
    settings: EvalSettings, out: str | Path | None = None, resume: bool = True, log: Callable[[str], Any] = print
) -> dict[str, Any]:
    """Run every planned entry on the same candidates; write/resume ``out`` (JSON)."""
    if settings.one_pass and uses_workers(settings):
        raise ValueError("--one-pass runs one shared model in this process; it does not combine with --workers")
    from .. import loading
    from ..reranker import resolve_heads

    methods = tuple(settings.methods)
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; use {', '.join(ALL_METHODS)}")
    if settings.depth < 1:
        raise ValueError("--depth must be >= 1")
    recall_ks = tuple(settings.recall_ks or sorted({10, settings.depth}))
    data = load_eval_data(settings.data_dir, split=settings.split, run_file=settings.run_file)
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

    source = loading.resolve_source(settings.model)
    decoder_config = text_config(loading.load_config(source))
    num_layers = decoder_config.num_hidden_layers
    heads: dict[str, HeadConfig] = {}
    for method, given in (("core", settings.heads), ("qr", settings.qr_heads)):
        if method in methods:
            config = resolve_heads(given, method, list(source.model_ids))
            if config.method != method:
                config = config.model_copy(update={"method": method})
            heads[method] = config
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
    )
    for name, given in settings.compare_heads:  # extra head sets, scored as CoRe-R
        config = resolve_heads(given, "core", list(source.model_ids))
        entries.append(
            EntrySpec(
                f"core[{name}]",
                "core",
                heads=config.model_copy(update={"method": "core"}),
                note=f"heads from {given}",
                window_tokens=entry_window_tokens(config, settings.window_tokens),
            )
        )

    settings_record = {
        "model": settings.model,
        "model_ids": list(source.model_ids),
        "num_hidden_layers": num_layers,
        "num_attention_heads": decoder_config.num_attention_heads,
        "data_dir": str(settings.data_dir),
        "split": settings.split,
        "run": data.run_source,
        "depth": settings.depth,
        "methods": list(methods),
        "max_queries": settings.max_queries,
        "device": settings.device,
        "dtype": settings.dtype,
        "max_doc_words": settings.max_doc_words,
        "max_length": settings.max_length,
        "relevance_level": settings.relevance_level,
        "recall_ks": list(recall_ks),
        "one_pass": settings.one_pass,
        "compare_heads": [[name, str(given)] for name, given in settings.compare_heads],
        "sweep_num_heads": list(settings.sweep_num_heads),
        "sweep_window": list(settings.sweep_window),
        "window_tokens": settings.window_tokens,
        "prune": list(settings.prune),
        "head_scores": settings.head_scores,
        "qr_head_scores": settings.qr_head_scores,
        "score_tables_used": table_sources,
        "tie_break": "reranked: score desc, then first-stage rank; first stage: run scores with "
        "trec_eval's rule (score desc, doc id desc)",
        **settings.extra,
    }
    results: dict[str, Any] = {
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
    out_path = Path(out) if out else None
    if out_path is not None and out_path.is_file() and resume:
        _resume(results, out_path, candidates)
        log(f"resuming from {out_path}")

    meter_device = str(loading.resolve_device(settings.device))  # "cuda" peaks need a reset before loading
    last_save = time.monotonic()

    def save(force: bool = False) -> None:
        nonlocal last_save
        if out_path is not None and (force or time.monotonic() - last_save > 20):
            write_results(out_path, results)
            last_save = time.monotonic()

    if settings.one_pass:
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
                settings,
                shared,
                {spec.label: _entry(spec, results) for spec in shared},
                data,
                qids,
                candidates,
                meter_device,
                save,
            )
    for spec in entries:
        if spec.same_as and spec.same_as in results["entries"]:
            source_entry = results["entries"][spec.same_as]
            results["entries"][spec.label] = {
                **source_entry,
                "group": spec.group,
                "param": spec.param,
                "note": (spec.note or "") + f" (same config as {spec.same_as!r})",
                "same_as": spec.same_as,
            }
            continue
        entry = _entry(spec, results)
        todo = [q for q in qids if q not in entry["per_query"]]
        if spec.method != "first-stage" and spec.heads is None and spec.method != "icr":
            entry["skipped"] = True  # a pruning level with no usable head
            log(f"{spec.label}: {spec.note}")
            continue
        if spec.method == "first-stage":
            for qid in todo:
                docs = candidates[qid]
                entry["per_query"][qid] = {
                    "time_s": 0.0,
                    "scores": [data.run.scores[qid][d] for d in docs] if docs else [],
                }
            _summarise(entry, data, qids, candidates, recall_ks, settings.relevance_level, first_stage=True)
            save(force=True)
            continue
        if todo:
            score_entry(settings, spec, entry, data, todo, meter_device, save, num_layers)
        _summarise(entry, data, qids, candidates, recall_ks, settings.relevance_level, first_stage=False)
        save(force=True)

    planned = [spec.label for spec in entries]
    # Planned order first (the one-pass entries were created before the others), then leftovers.
    results["entries"] = {
        **{label: results["entries"][label] for label in planned},
        **{label: e for label, e in results["entries"].items() if label not in planned},
    }
    for label, entry in results["entries"].items():
        # Entries kept from an earlier run with other --methods: re-summarise them over this
        # run's queries (their per-query results were already cut to matching candidates).
        if label not in planned and not entry.get("same_as") and entry.get("per_query") is not None:
            _summarise(
                entry,
                data,
                qids,
                candidates,
                recall_ks,
                settings.relevance_level,
                first_stage=entry.get("method") == "first-stage",
            )
    if not settings.save_scores:
        for entry in results["entries"].values():
            for record in entry.get("per_query", {}).values():
                record.pop("scores", None)
    if out_path is not None:
        write_results(out_path, results)
    return results


def _resume(results: dict[str, Any], out_path: Path, candidates: Mapping[str, list[str]]) -> None:
    """Take the stored entries of ``out_path`` into ``results`` (refused when settings differ)."""
    previous = read_results(out_path)
    old = previous.get("settings", {})
    new = results["settings"]
    if previous.get("format") != RESULTS_FORMAT or any(old.get(k) != new.get(k) for k in RESUME_KEYS):
        changed = [k for k in RESUME_KEYS if old.get(k) != new.get(k)]
        raise ValueError(
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
