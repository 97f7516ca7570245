"""Evaluation harness: nDCG@10 of first stage / ICR / QR-R / CoRe-R, heads and pruning sweeps.

Protocol (method.md section 5, docs/results.md):

- Every method reranks the same candidates: the first ``depth`` documents of the first-stage
  run in its own order (rank column; rank 1 first in the prompt). Documents are BEIR's
  ``title + " " + text``, cut to ``max_doc_words`` by the reranker.
- Reranked scores are made strictly ordered before evaluation: score descending, ties broken
  by first-stage rank (better rank first). The "first-stage" row uses the run's own scores
  with trec_eval's rule (score descending, then doc id descending), so it equals pytrec_eval
  on the run file.
- Metrics (``core_rerank.metrics``): nDCG@10 (trec_eval conventions), MRR@10 and Recall@k,
  averaged over every judged query of the split. Judged queries without candidates score 0
  and are reported, never dropped.
- Time per query: wall time of ``CoReReranker.score`` for one query (both forward passes;
  model loading excluded, reported separately).
- Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset before each method); on CPU
  the process's peak resident set size (``VmHWM`` in ``/proc/self/status``), reset before each
  method by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0). It includes the
  process's baseline (Python, torch, the loaded data), which is reported too as
  ``baseline_rss_mb``; where the reset is not possible, the peak is a running maximum and is
  marked so.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from .datasets import EvalData, load_eval_data
from .head_config import is_score_table
from .metrics import evaluate, strict_scores

PLOT_INSTALL_HINT = 'plots need matplotlib: pip install "core-rerank[plot]"'
RESULTS_FORMAT = "core-rerank-eval"
RESULTS_VERSION = 1
METHOD_NAMES = {"first-stage": "first stage", "icr": "ICR", "qr": "QR-R", "core": "CoRe-R"}
ALL_METHODS = ("first-stage", "icr", "qr", "core")
ONE_PASS_NOTE = "[one shared pass: time and memory are the pass's]"


# ====================================================================== the stable entry point
@functools.lru_cache(maxsize=8)
def _cached_data(data_dir: str, split: str, run_file: str | None) -> EvalData:
    return load_eval_data(data_dir, split=split, run_file=run_file)


def evaluate_heads(reranker: Any, data_dir: str | Path, split: str = "test", depth: int = 20,
                   max_queries: int | None = None) -> float:
    """Mean nDCG@10 of ``reranker`` over the judged queries of a BEIR folder.

    Reranks the top-``depth`` of ``<data_dir>/run.bm25.top100.trec`` when the folder has it,
    else of a BM25 run built with bm25s. ``max_queries``: only the first N judged queries (qrels
    file order). Judged queries without candidates count as 0. The folder is loaded once per
    process (cached).
    """
    data = _cached_data(str(Path(data_dir).resolve()), split, None)
    qids = list(data.queries)[:max_queries] if max_queries is not None else list(data.queries)
    run = {}
    for qid in qids:
        doc_ids, scores, _ = score_query(reranker, data, qid, depth)
        if doc_ids:
            run[qid] = strict_scores(doc_ids, scores)
    return evaluate(data.qrels, run, recall_ks=(), queries=qids).mean["ndcg@10"]


def candidate_documents(data: EvalData, doc_ids: Sequence[str]) -> list[dict[str, str]]:
    """The candidates' ``{"title", "text"}`` records (empty for an id the corpus lacks)."""
    empty = {"title": "", "text": ""}
    return [data.corpus.get(d, empty) for d in doc_ids]


def score_query(reranker: Any, data: EvalData, qid: str, depth: int | None) -> tuple[list[str], list[float], float]:
    """Candidates (first-stage order), their reranker scores and the seconds ``score`` took."""
    doc_ids = data.candidates(qid, depth)
    if not doc_ids:
        return [], [], 0.0
    documents = candidate_documents(data, doc_ids)
    start = time.perf_counter()
    scores = reranker.score(data.queries[qid], documents)
    return doc_ids, [float(s) for s in scores], time.perf_counter() - start


# ====================================================================== memory
class MemoryMeter:
    """Peak memory of one method: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: Any = None):
        self.cuda = str(device or "").startswith("cuda")
        self.resettable = False
        self.baseline_mb: float | None = None

    def start(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_mb = torch.cuda.memory_allocated() / 2**20
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.baseline_mb = _proc_status_mb("VmRSS")

    def peak_mb(self) -> float | None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        return _proc_status_mb("VmHWM")

    @property
    def kind(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated (reset per method)"
        if self.resettable:
            return "peak RSS, /proc/self/status VmHWM (reset per method via /proc/self/clear_refs)"
        return "peak RSS, /proc/self/status VmHWM (not resettable here: running maximum)"


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if key == "VmHWM":
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except (ImportError, OSError):
            return None
    return None


# ====================================================================== plan
@dataclass
class EntrySpec:
    """One row of the comparison: a method with a head set and a number of layers built."""

    label: str
    method: str                       # first-stage | icr | qr | core
    group: str = "main"               # main | sweep-k | prune
    param: Any = None                 # k, or the pruning fraction
    heads: Any = None                 # HeadConfig or None (first stage, ICR)
    num_layers_to_keep: Any = "auto"  # "auto", an int, or None (every layer)
    note: str | None = None
    same_as: str | None = None        # reuse another entry's results (identical config)

    def fingerprint(self) -> dict[str, Any]:
        return {"method": self.method,
                "heads": [list(h) for h in self.heads.heads] if self.heads is not None else None,
                "num_layers_to_keep": self.num_layers_to_keep}


def parse_sweep_k(text: str | None) -> list[Any]:
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
            k = int(part)
            if k < 1:
                raise ValueError(f"--sweep-k values must be >= 1 or 'all', got {k}")
            values.append(k)
    return values


def parse_prune(text: str | None) -> list[float]:
    if not text:
        return []
    levels = [float(p) for p in text.split(",") if p.strip()]
    for p in levels:
        if not 0 <= p < 1:
            raise ValueError(f"--prune levels are fractions of final layers dropped, in [0, 1); got {p}")
    return levels


def layers_after_pruning(num_layers: int, fraction: float) -> int:
    """Layers kept when dropping ``fraction`` of the final layers (rounded to nearest, >= 1)."""
    return max(1, num_layers - int(math.floor(fraction * num_layers + 0.5)))


def _scored_config(base: Any, table: Mapping[str, float], k: int, max_layers: int | None, **extra: Any):
    from .head_config import HeadConfig

    provenance = base.provenance.model_copy(update={"k": k, **extra})
    return HeadConfig.from_scores(table, k=k, max_layers=max_layers, method=base.method,
                                  name=base.name, model_ids=list(base.model_ids),
                                  architecture=base.architecture, scoring=base.scoring,
                                  provenance=provenance)


def plan_entries(methods: Sequence[str], heads: Mapping[str, Any], num_layers: int,
                 sweep_k: Sequence[Any] = (), prune: Sequence[float] = (),
                 head_scores: Mapping[str, Mapping[str, float]] | None = None) -> list[EntrySpec]:
    """The entries of one evaluation run.

    ``heads``: ``{"core": HeadConfig, "qr": HeadConfig}`` for the methods that need them.
    ``head_scores``: per-head score tables (``"layer-head" -> score``) by method, used for the
    heads sweep (top-k of the table) and pruning-aware re-selection.
    """
    head_scores = head_scores or {}
    entries: list[EntrySpec] = []
    for method in methods:
        if method == "first-stage":
            entries.append(EntrySpec("first-stage", "first-stage", num_layers_to_keep=None))
        elif method == "icr":
            entries.append(EntrySpec("icr", "icr", num_layers_to_keep=None))
        else:
            entries.append(EntrySpec(method, method, heads=heads[method]))
    head_methods = [m for m in methods if m in ("core", "qr")]
    for method in head_methods:
        base, table = heads[method], head_scores.get(method)
        for k in sweep_k:
            label = f"{method}@k={k}"
            if k == "all":
                entries.append(EntrySpec(label, "icr", "sweep-k", "all", num_layers_to_keep=None,
                                         note="every head of every layer (ICR)",
                                         same_as="icr" if "icr" in methods else None))
                continue
            if table is not None:
                config = _scored_config(base, table, k, None)
                note = None if len(config.heads) == k else f"the score table has only {len(config.heads)} heads"
            else:
                config = base.top(k)
                note = None if k <= len(base.heads) else (
                    f"only {len(base.heads)} heads in the config (no --head-scores): same as k={len(base.heads)}")
            same = method if [tuple(h) for h in config.heads] == [tuple(h) for h in base.heads] else None
            entries.append(EntrySpec(label, method, "sweep-k", k, heads=config, note=note, same_as=same))
    prune_methods = [m for m in methods if m in ("core", "qr")]  # ICR stays the unpruned reference
    for method in prune_methods:
        for fraction in prune:
            label = f"{method}@prune={fraction:g}"
            keep = layers_after_pruning(num_layers, fraction)
            base, table = heads[method], head_scores.get(method)
            k = len(base.heads)
            if fraction == 0:
                entries.append(EntrySpec(label, method, "prune", fraction, heads=base, num_layers_to_keep=None,
                                         note=f"every layer built ({num_layers}); heads as given"))
                continue
            if table is not None:
                config = _scored_config(base, table, k, keep, pruned_to_layers=keep)
                note = f"top-{k} heads re-selected inside the first {keep} layers (score table)"
            else:
                kept = [h for h in base.heads if h[0] < keep]
                if not kept:
                    entries.append(EntrySpec(label, method, "prune", fraction, num_layers_to_keep=keep,
                                             note=f"skipped: no given head lies in the first {keep} layers "
                                                  "and no --head-scores table to re-select from"))
                    continue
                config = base.with_heads(kept)
                note = (f"{len(kept)} of {k} given heads lie in the first {keep} layers "
                        "(no --head-scores table: not re-selected)")
            entries.append(EntrySpec(label, method, "prune", fraction, heads=config, num_layers_to_keep=keep,
                                     note=note))
    return entries


def load_score_table(path: str | Path | None, config: Any = None) -> tuple[dict[str, float] | None, str | None]:
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
    raise ValueError(f"{path}: not a per-head score table ('layer-head' -> score)")


# ====================================================================== results file
def _versions() -> dict[str, Any]:
    from . import __version__

    versions: dict[str, Any] = {"core_rerank": __version__, "python": platform.python_version(),
                                "platform": platform.platform(), "processor": platform.processor() or None}
    for name in ("torch", "transformers", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001
            versions[name] = None
    try:
        import torch

        versions["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            versions["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    versions["cpu_count"] = os.cpu_count()
    return versions


def _json_float(value: float) -> float | None:
    """Full precision (rounding could create ties); -inf and NaN (empty documents) as null."""
    return None if value is None or math.isinf(value) or math.isnan(value) else float(value)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ====================================================================== the runner
@dataclass
class EvalSettings:
    model: str = "smollm2-135m-instruct"
    data_dir: str = "."
    split: str = "test"
    run_file: str | None = None
    depth: int = 20
    methods: tuple[str, ...] = ("first-stage", "icr", "qr", "core")
    heads: Any = None                # core heads (preset, path, HeadConfig) or None for the preset
    qr_heads: Any = None
    compare_heads: tuple[tuple[str, Any], ...] = ()  # (name, head set) pairs, each an extra CoRe-R entry
    head_scores: str | None = None   # score table for core ("layer-head" -> score)
    qr_head_scores: str | None = None
    sweep_k: tuple[Any, ...] = ()
    prune: tuple[float, ...] = ()
    max_queries: int | None = None
    device: str | None = None
    dtype: str = "auto"
    max_doc_words: int | None = 300
    max_length: int | None = None
    relevance_level: int = 1
    recall_ks: tuple[int, ...] | None = None
    save_scores: bool = True
    progress: bool = True
    one_pass: bool = False           # score every entry from one all-heads pass per query
    extra: dict[str, Any] = field(default_factory=dict)


def run_evaluation(settings: EvalSettings, out: str | Path | None = None, resume: bool = True,
                   log=print) -> dict[str, Any]:
    """Run every planned entry on the same candidates; write/resume ``out`` (JSON)."""
    from . import loading
    from .reranker import resolve_heads

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
        log(f"warning: {len(missing)} of {len(qids)} judged queries have no candidates in the run; "
            f"they score 0 and are listed in the JSON (e.g. {', '.join(missing[:5])})")
    candidates = {q: data.candidates(q, settings.depth) for q in qids}

    source = loading.resolve_source(settings.model)
    model_config = loading.load_config(source)
    text_config = getattr(model_config, "text_config", None) or model_config
    num_layers = text_config.num_hidden_layers
    heads: dict[str, Any] = {}
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
    entries = plan_entries(methods, heads, num_layers, settings.sweep_k, settings.prune, tables)
    for name, given in settings.compare_heads:  # extra head sets, scored as CoRe-R
        config = resolve_heads(given, "core", list(source.model_ids))
        entries.append(EntrySpec(f"core[{name}]", "core", heads=config.model_copy(update={"method": "core"}),
                                 note=f"heads from {given}"))

    settings_record = {
        "model": settings.model, "model_ids": list(source.model_ids), "num_hidden_layers": num_layers,
        "num_attention_heads": text_config.num_attention_heads,
        "data_dir": str(settings.data_dir), "split": settings.split, "run": data.run_source,
        "depth": settings.depth, "methods": list(methods), "max_queries": settings.max_queries,
        "device": settings.device, "dtype": settings.dtype, "max_doc_words": settings.max_doc_words,
        "max_length": settings.max_length, "relevance_level": settings.relevance_level,
        "recall_ks": list(recall_ks), "one_pass": settings.one_pass,
        "compare_heads": [[name, str(given)] for name, given in settings.compare_heads],
        "sweep_k": list(settings.sweep_k), "prune": list(settings.prune),
        "head_scores": settings.head_scores, "qr_head_scores": settings.qr_head_scores,
        "score_tables_used": table_sources,
        "tie_break": "reranked: score desc, then first-stage rank; first stage: run scores with "
                     "trec_eval's rule (score desc, doc id desc)",
        **settings.extra,
    }
    resume_keys = ("model", "data_dir", "split", "run", "depth", "dtype", "max_doc_words", "max_length")
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT, "format_version": RESULTS_VERSION, "settings": settings_record,
        "versions": _versions(),
        "data": {"judged_queries": len(qids), "queries_without_candidates": missing,
                 "candidates_removed_by_identical_id_rule": data.removed_identical,
                 "candidates_without_text": sum(len(v) for q, v in data.missing_texts.items() if q in candidates),
                 "candidates": candidates},
        "entries": {},
    }
    out_path = Path(out) if out else None
    if out_path is not None and out_path.is_file() and resume:
        previous = json.loads(out_path.read_text(encoding="utf-8"))
        old = previous.get("settings", {})
        if previous.get("format") != RESULTS_FORMAT or any(old.get(k) != settings_record.get(k) for k in resume_keys):
            changed = [k for k in resume_keys if old.get(k) != settings_record.get(k)]
            raise ValueError(f"{out_path} holds results with other settings ({', '.join(changed) or 'format'}); "
                             "use another --out or --no-resume to overwrite it")
        results["entries"] = previous.get("entries", {})
        if previous.get("data", {}).get("candidates") not in (None, candidates):
            # Same files but another query slice: keep only matching per-query candidates.
            old_candidates = previous["data"]["candidates"]
            for entry in results["entries"].values():
                entry["per_query"] = {q: v for q, v in entry.get("per_query", {}).items()
                                      if old_candidates.get(q) == candidates.get(q)}
        log(f"resuming from {out_path}")

    meter_device = str(loading.resolve_device(settings.device))  # "cuda" peaks need a reset before loading
    last_save = time.monotonic()

    def save(force: bool = False) -> None:
        nonlocal last_save
        if out_path is not None and (force or time.monotonic() - last_save > 20):
            _write_json(out_path, results)
            last_save = time.monotonic()

    if settings.one_pass:
        planned_labels = {spec.label for spec in entries}
        shared = [spec for spec in entries if spec.method != "first-stage" and spec.same_as not in planned_labels
                  and (spec.heads is not None or spec.method == "icr")]
        if shared:
            _score_in_one_pass(settings, shared, {spec.label: _entry(spec, results) for spec in shared},
                               data, qids, candidates, meter_device, save)
    for spec in entries:
        if spec.same_as and spec.same_as in results["entries"]:
            source_entry = results["entries"][spec.same_as]
            results["entries"][spec.label] = {**source_entry, "group": spec.group, "param": spec.param,
                                              "note": (spec.note or "") + f" (same config as {spec.same_as!r})",
                                              "same_as": spec.same_as}
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
                entry["per_query"][qid] = {"time_s": 0.0,
                                           "scores": [data.run.scores[qid][d] for d in docs] if docs else []}
            _summarise(entry, data, qids, candidates, recall_ks, settings.relevance_level, first_stage=True)
            save(force=True)
            continue
        if todo:
            meter = MemoryMeter(meter_device)
            meter.start()
            load_start = time.perf_counter()
            reranker = _load(settings, spec)
            entry["load_s"] = round(time.perf_counter() - load_start, 3)
            entry["num_layers_built"] = reranker.model.config.num_hidden_layers
            entry["device"] = str(reranker.device)
            for qid in _progress_iter(todo, spec.label, settings.progress):
                docs, scores, seconds = score_query(reranker, data, qid, settings.depth)
                record = {"time_s": round(seconds, 4)}
                record["scores"] = [_json_float(s) for s in scores]
                entry["per_query"][qid] = record
                save()
            peak = meter.peak_mb()
            previous_peak = entry.get("peak_mem_mb")
            entry["peak_mem_mb"] = round(max(peak, previous_peak or 0), 1) if peak is not None else previous_peak
            entry["baseline_mem_mb"] = round(meter.baseline_mb, 1) if meter.baseline_mb is not None else None
            entry["memory_measure"] = meter.kind
            del reranker
            gc.collect()
        _summarise(entry, data, qids, candidates, recall_ks, settings.relevance_level, first_stage=False)
        save(force=True)

    planned = [spec.label for spec in entries]
    # Planned order first (the one-pass entries were created before the others), then leftovers.
    results["entries"] = {**{label: results["entries"][label] for label in planned},
                          **{label: e for label, e in results["entries"].items() if label not in planned}}
    for label, entry in results["entries"].items():
        # Entries kept from an earlier run with other --methods: re-summarise them over this
        # run's queries (their per-query results were already cut to matching candidates).
        if label not in planned and not entry.get("same_as") and entry.get("per_query") is not None:
            _summarise(entry, data, qids, candidates, recall_ks, settings.relevance_level,
                       first_stage=entry.get("method") == "first-stage")
    if not settings.save_scores:
        for entry in results["entries"].values():
            for record in entry.get("per_query", {}).values():
                record.pop("scores", None)
    if out_path is not None:
        _write_json(out_path, results)
    return results


def _entry(spec: EntrySpec, results: dict[str, Any]) -> dict[str, Any]:
    """The results entry of ``spec``: the stored one when its config is unchanged, else a new one."""
    stored = results["entries"].get(spec.label)
    if stored is not None and stored.get("fingerprint") != spec.fingerprint():
        stored = None
    entry = stored or {"method": spec.method, "group": spec.group, "param": spec.param,
                       "fingerprint": spec.fingerprint(), "note": spec.note,
                       "heads": spec.heads.to_dict() if spec.heads is not None else None,
                       "per_query": {}}
    entry["note"] = spec.note
    if entry.get("one_pass"):  # set by _score_in_one_pass; the note says what its figures mean
        entry["note"] = f"{spec.note or ''} {ONE_PASS_NOTE}".strip()
    results["entries"][spec.label] = entry
    return entry


def _score_in_one_pass(settings: EvalSettings, specs: Sequence[EntrySpec], entries: Mapping[str, dict],
                       data: EvalData, qids: Sequence[str], candidates: Mapping[str, list[str]],
                       meter_device: str, save) -> None:
    """Fill every entry from one forward pass per query (``--one-pass``).

    One reranker holds the union of the entries' heads (every head when ICR is among them);
    each entry's scores come from its own head subset (``CoReReranker.score_head_subsets``),
    equal to scoring it alone up to float rounding. Pruned entries need no own model: layers
    never depend on later ones. Time and memory are the shared pass's, recorded on each entry.
    """
    from .head_config import HeadConfig

    scorings = {spec.label: (spec.heads.scoring if spec.heads is not None else HeadConfig(method="icr").scoring)
                for spec in specs}
    first = next(iter(scorings.values()))
    differing = [label for label, scoring in scorings.items() if scoring != first]
    if differing:
        raise ValueError(f"--one-pass needs the same scoring settings for every entry; {differing} differ "
                         f"from {specs[0].label!r} (e.g. a logit_scale override): run without --one-pass")
    if any(spec.heads is None for spec in specs):
        union = HeadConfig(method="icr", name="one-pass-all-heads", scoring=first)
    else:
        heads = sorted({tuple(h) for spec in specs for h in spec.heads.heads})
        union = HeadConfig(method="core", name="one-pass-union", heads=heads, scoring=first)
    subsets = {spec.label: ([tuple(h) for h in spec.heads.heads] if spec.heads is not None else None)
               for spec in specs}
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
    reranker = _load(settings, EntrySpec("one-pass", union.method, heads=None if union.method == "icr" else union,
                                         num_layers_to_keep="auto"))
    load_s = round(time.perf_counter() - load_start, 3)
    filled = set()  # entries that got queries from this pass (others keep their own figures)
    for qid in _progress_iter(todo, "one pass", settings.progress):
        documents = candidate_documents(data, candidates[qid])
        start = time.perf_counter()
        scores = reranker.score_head_subsets(data.queries[qid], documents, subsets)
        seconds = round(time.perf_counter() - start, 4)
        for label, entry in entries.items():
            if qid not in entry["per_query"]:
                entry["per_query"][qid] = {"time_s": seconds, "scores": [_json_float(s) for s in scores[label]]}
                filled.add(label)
        save()
    peak = meter.peak_mb()
    for entry in (entries[label] for label in filled):
        entry.update(one_pass=True, load_s=load_s, num_layers_built=reranker.model.config.num_hidden_layers,
                     device=str(reranker.device), memory_measure=meter.kind,
                     baseline_mem_mb=round(meter.baseline_mb, 1) if meter.baseline_mb is not None else None,
                     peak_mem_mb=round(max(peak, entry.get("peak_mem_mb") or 0), 1) if peak is not None else None)
    del reranker
    gc.collect()


def _progress_iter(items: Sequence[Any], desc: str, enabled: bool):
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(items, desc=desc, unit="q", file=sys.stderr, leave=True)
        except ImportError:
            pass
    return items


def _load(settings: EvalSettings, spec: EntrySpec):
    from .reranker import CoReReranker

    return CoReReranker.from_pretrained(
        settings.model, heads=spec.heads, method=spec.method, num_layers_to_keep=spec.num_layers_to_keep,
        device=settings.device, dtype=settings.dtype, max_doc_words=settings.max_doc_words,
        max_length=settings.max_length,
    )


def _summarise(entry: dict, data: EvalData, qids: Sequence[str], candidates: Mapping[str, list[str]],
               recall_ks: Sequence[int], relevance_level: int, first_stage: bool) -> None:
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
        return  # scores dropped (--no-save-scores): keep the stored metrics
    result = evaluate(data.qrels, run, recall_ks=recall_ks, relevance_level=relevance_level, queries=done)
    for qid in done:
        entry["per_query"][qid]["metrics"] = {k: round(v, 6) for k, v in result.per_query[qid].items()}
    times = [entry["per_query"][q]["time_s"] for q in done if candidates[q]]
    entry["summary"] = {
        **{k: round(v, 5) for k, v in result.mean.items()},
        "queries": len(done), "of_queries": len(qids), "complete": len(done) == len(qids),
        "queries_without_candidates": len(result.missing),
        "time_per_query_s": round(sum(times) / len(times), 4) if times else 0.0,
        "docs_per_s": round(sum(len(candidates[q]) for q in done) / sum(times), 2) if times and sum(times) else None,
        "peak_mem_mb": entry.get("peak_mem_mb"),
    }


# ====================================================================== reporting
def format_table(results: Mapping[str, Any], markdown: bool = False) -> str:
    depth = results["settings"]["depth"]
    recall_key = f"recall@{depth}"
    rows = [("entry", "method", "nDCG@10", "MRR@10", f"R@{depth}", "time/q", "peak mem", "layers", "heads", "queries")]
    for label, entry in results["entries"].items():
        summary = entry.get("summary")
        if entry.get("skipped") or not summary:
            rows.append((label, entry["method"], "-", "-", "-", "-", "-", "-", "-", "skipped"))
            continue
        heads = entry.get("heads")
        mem = summary.get("peak_mem_mb")
        rows.append((
            label, METHOD_NAMES.get(entry["method"], entry["method"]),
            f"{summary['ndcg@10']:.4f}", f"{summary['mrr@10']:.4f}",
            f"{summary[recall_key]:.4f}" if recall_key in summary else "-",
            (f"{summary['time_per_query_s']:.3f}s" + ("*" if entry.get("one_pass") else "")
             if entry["method"] != "first-stage" else "-"),
            f"{mem:.0f} MB" if mem else "-",
            str(_layers_needed(entry, results["settings"]) or "-"),
            str(len(heads["heads"]) if heads and heads.get("heads") else ("all" if entry["method"] == "icr" else "-")),
            f"{summary['queries']}/{summary['of_queries']}",
        ))
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("---" for _ in rows[0]) + "|")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
    if any(e.get("one_pass") for e in results["entries"].values()):
        lines.append("* one shared all-heads pass per query (--one-pass): time and memory are the pass's, "
                     "layers are those the entry's heads need.")
    data = results["data"]
    if data.get("queries_without_candidates"):
        lines.append(f"{len(data['queries_without_candidates'])} judged queries had no candidates (scored 0).")
    return "\n".join(lines)


def _layers_needed(entry: Mapping[str, Any], settings: Mapping[str, Any]) -> int | None:
    """Layers the entry's model builds (for a one-pass entry: would build on its own)."""
    if not entry.get("one_pass"):
        return entry.get("num_layers_built")
    keep = (entry.get("fingerprint") or {}).get("num_layers_to_keep")
    heads = (entry.get("heads") or {}).get("heads")
    if isinstance(keep, int):
        return keep
    if keep == "auto" and heads:
        return max(layer for layer, _ in heads) + 1
    return settings.get("num_hidden_layers")


def plot_results(results: Mapping[str, Any], path: str | Path) -> list[str]:
    """nDCG@10 vs number of heads (heads sweep) and nDCG / time / memory vs pruning."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(PLOT_INSTALL_HINT) from exc
    entries = results["entries"]
    sweep = [(label, e) for label, e in entries.items() if e.get("group") == "sweep-k" and e.get("summary")]
    prune = [(label, e) for label, e in entries.items() if e.get("group") == "prune" and e.get("summary")]
    # One shared pass (--one-pass) has one time and memory for every entry: plot nDCG only.
    prune_panels = (("ndcg@10", "nDCG@10"),) if any(e.get("one_pass") for _, e in prune) else (
        ("ndcg@10", "nDCG@10"), ("time_per_query_s", "seconds / query"), ("peak_mem_mb", "peak memory (MB)"))
    panels = (1 if sweep else 0) + (len(prune_panels) if prune else 0)
    if not panels:
        raise ValueError("nothing to plot: run with --sweep-k and/or --prune")
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    axes = list(axes[0])
    settings = results["settings"]
    title = f"{settings['model']} on {Path(settings['data_dir']).name} (depth {settings['depth']})"
    if sweep:
        ax = axes.pop(0)
        for method in ("core", "qr"):
            points = []
            for label, e in sweep:
                if not label.startswith(method + "@"):
                    continue
                k = e["param"]
                if k == "all":
                    k = _all_heads(results)
                points.append((k, e["summary"]["ndcg@10"], e["param"] == "all"))
            if points:
                points.sort()
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        label=METHOD_NAMES[method])
        for label, style in (("first-stage", ":"), ("icr", "--")):
            if label in entries and entries[label].get("summary"):
                ax.axhline(entries[label]["summary"]["ndcg@10"], linestyle=style, color="gray",
                           label=METHOD_NAMES[label])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("number of heads (rightmost: all = ICR)")
        ax.set_ylabel("nDCG@10")
        ax.set_title("heads sweep", fontsize=9)
        ax.legend(fontsize=7)
    if prune:
        for key, ylabel in prune_panels:
            ax = axes.pop(0)
            for method in ("core", "qr", "icr"):
                points = [(e["param"], e["summary"].get(key)) for label, e in prune
                          if label.startswith(method + "@") and e["summary"].get(key) is not None]
                base = entries.get(method)
                total = results["settings"].get("num_hidden_layers")
                if points and base and base.get("summary") and base.get("num_layers_built") and total \
                        and base["summary"].get(key) is not None and all(p > 0 for p, _ in points):
                    # the unpruned config: the engine builds only the layers its heads need
                    points.append((1 - _layers_needed(base, results["settings"]) / total, base["summary"][key]))
                points.sort()
                if points:
                    ax.plot([100 * p for p, _ in points], [v for _, v in points], marker="o", label=METHOD_NAMES[method])
            ax.set_xlabel("% of final layers dropped")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return [str(path)]


def _all_heads(results: Mapping[str, Any]) -> int:
    settings = results["settings"]
    if settings.get("num_attention_heads") and settings.get("num_hidden_layers"):
        return settings["num_attention_heads"] * settings["num_hidden_layers"]
    for entry in results["entries"].values():
        heads = entry.get("heads") or {}
        arch = heads.get("architecture") or {}
        if arch.get("num_attention_heads") and arch.get("num_hidden_layers"):
            return arch["num_attention_heads"] * arch["num_hidden_layers"]
    return 1024


# ====================================================================== CLI
def register_cli(commands: Any, heads_subparsers: Any = None) -> None:
    p = commands.add_parser(
        "eval", help="nDCG@10 of first stage / ICR / QR-R / CoRe-R on a BEIR folder (+ sweeps)",
        description="Rerank the same first-stage candidates with each method and report nDCG@10, "
                    "MRR@10, Recall@k, time per query and peak memory.")
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="registered offline name, hub id, local directory or .gguf file")
    p.add_argument("--data", required=True, help="BEIR folder (corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv)")
    p.add_argument("--split", default="test")
    p.add_argument("--run", help="TREC run to rerank (default: <data>/run.bm25.top100.trec, else BM25 with bm25s)")
    p.add_argument("--depth", type=int, default=20, help="candidates reranked per query (top of the run)")
    p.add_argument("--methods", default="first-stage,icr,qr,core",
                   help="comma-separated: first-stage, icr, qr, core")
    p.add_argument("--heads", help="CoRe heads: preset name or JSON (default: the model's preset)")
    p.add_argument("--qr-heads", help="QR heads: preset name or JSON (default: the model's QR preset)")
    p.add_argument("--compare-heads", action="append", default=[], metavar="NAME=HEADS",
                   help="another head set (preset or JSON) scored as CoRe-R in entry core[NAME]; repeatable")
    p.add_argument("--head-scores", help="per-head CoRe score table ('layer-head' -> score) for sweeps and "
                                         "pruning-aware re-selection")
    p.add_argument("--qr-head-scores", help="the same for QR heads")
    p.add_argument("--sweep-k", help="heads sweep, e.g. 1,2,4,8,16,32,all ('all' = every head, i.e. ICR)")
    p.add_argument("--prune", help="pruning sweep: fractions of final layers dropped, e.g. 0,0.3,0.5,0.7")
    p.add_argument("--one-pass", action="store_true",
                   help="score every method and sweep entry from one forward pass per query (the union "
                        "of their heads; all heads with ICR): same scores, far less compute, but time "
                        "and memory are the shared pass's")
    p.add_argument("--max-queries", type=int, help="only the first N judged queries (qrels order)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--dtype", default="auto", help="auto, bfloat16, float16 or float32")
    p.add_argument("--max-doc-words", type=int, default=300)
    p.add_argument("--max-length", type=int, help="token budget of one prompt")
    p.add_argument("--relevance-level", type=int, default=1,
                   help="lowest grade counted relevant by MRR and Recall (TREC DL: 2); nDCG uses grades")
    p.add_argument("--recall-k", help="comma-separated Recall cutoffs (default: 10,<depth>)")
    p.add_argument("--out", help="results JSON (resumed when it exists with the same settings)")
    p.add_argument("--no-resume", action="store_true", help="overwrite --out instead of resuming from it")
    p.add_argument("--no-scores", action="store_true", help="do not keep per-candidate scores in the JSON")
    p.add_argument("--plot", help="figure of the sweeps (PNG/PDF/SVG)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (on a busy shared CPU, 1 avoids oversubscription)")
    p.set_defaults(func=_run_eval_cli)


def _name_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise SystemExit(f"--compare-heads wants NAME=HEADS (a preset or a JSON file), got {text!r}")
    return name.strip(), value.strip()


def _run_eval_cli(args: argparse.Namespace) -> int:
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = EvalSettings(
        model=args.model, data_dir=args.data, split=args.split, run_file=args.run, depth=args.depth,
        methods=methods, heads=args.heads, qr_heads=args.qr_heads, head_scores=args.head_scores,
        compare_heads=tuple(_name_value(text) for text in args.compare_heads),
        qr_head_scores=args.qr_head_scores, sweep_k=tuple(parse_sweep_k(args.sweep_k)),
        prune=tuple(parse_prune(args.prune)), max_queries=args.max_queries, device=args.device,
        dtype=args.dtype, max_doc_words=args.max_doc_words, max_length=args.max_length,
        relevance_level=args.relevance_level,
        recall_ks=tuple(int(k) for k in args.recall_k.split(",")) if args.recall_k else None,
        save_scores=not args.no_scores, progress=not args.quiet, one_pass=args.one_pass,
        extra={"cli_args": {k: v for k, v in vars(args).items() if k != "func"}},
    )
    results = run_evaluation(settings, out=args.out, resume=not args.no_resume,
                             log=lambda msg: print(msg, file=sys.stderr))
    print(format_table(results, markdown=args.markdown))
    for label, entry in results["entries"].items():
        note = (entry.get("note") or "").replace(ONE_PASS_NOTE, "").strip()  # the table has a footnote
        if note and entry.get("group") != "main":
            print(f"  {label}: {note}")
    if args.out:
        print(f"results: {args.out}")
    if args.plot:
        plot_results(results, args.plot)
        print(f"figure: {args.plot}")
    return 0
