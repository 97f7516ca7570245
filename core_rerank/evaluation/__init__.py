"""Evaluation: nDCG@10 of first stage / ICR / QR-R / CoRe-R, heads and pruning sweeps.

Protocol (method.md section 5, docs/results.md):

- Every method reranks the same candidates: the first ``depth`` documents of the first-stage
  run in its own order (rank column; rank 1 first in the prompt). Documents are BEIR's
  ``title + " " + text``, cut to ``max_doc_words`` by the reranker.
- Reranked scores are made strictly ordered before evaluation: score descending, ties broken
  by first-stage rank (better rank first). The "first-stage" row uses the run's own scores
  with trec_eval's rule (score descending, then doc id descending), so it equals pytrec_eval
  on the run file.
- Metrics (:mod:`core_rerank.evaluation.metrics`): nDCG@10 (trec_eval conventions), MRR@10 and
  Recall@k, averaged over every judged query of the split. Judged queries without candidates
  score 0 and are reported, never dropped.
- Time per query: wall time of ``CoReReranker.score`` for one query (both forward passes;
  model loading excluded, reported separately).
- Peak memory (:mod:`~core_rerank.evaluation.memory`): on CUDA
  ``torch.cuda.max_memory_allocated`` (reset before each method); on CPU the process's peak
  resident set size, reset before each method where Linux allows it.

Modules: ``metrics`` (IR metrics), ``plan`` (the entries of a run), ``loop`` (scoring the
queries; :func:`evaluate_heads`), ``memory``, ``runner`` (:func:`run_evaluation`),
``results_file`` (the JSON), ``report`` (:func:`format_table`), ``plots`` (:func:`plot_results`),
``head_selection`` (choosing the number of heads and the temperature on held-out data).
"""

from __future__ import annotations

from .loop import candidate_documents, evaluate_heads, score_queries, score_query
from .memory import MemoryMeter
from .metrics import CoverageError, Evaluation, check_coverage, evaluate, strict_scores, trec_order
from .passes import ONE_PASS_NOTE
from .plan import (
    ALL_METHODS,
    METHOD_NAMES,
    EntrySpec,
    layers_after_pruning,
    load_score_table,
    parse_prune,
    parse_sweep_num_heads,
    parse_sweep_order,
    parse_sweep_window,
    plan_entries,
)
from .plots import plot_results
from .report import format_table
from .results_file import RESULTS_FORMAT, RESULTS_VERSION, read_results, upgrade_results
from .runner import run_evaluation
from .settings import EvalSettings

__all__ = [
    "ALL_METHODS",
    "METHOD_NAMES",
    "ONE_PASS_NOTE",
    "RESULTS_FORMAT",
    "RESULTS_VERSION",
    "CoverageError",
    "EntrySpec",
    "EvalSettings",
    "Evaluation",
    "MemoryMeter",
    "candidate_documents",
    "check_coverage",
    "evaluate",
    "evaluate_heads",
    "format_table",
    "layers_after_pruning",
    "load_score_table",
    "parse_prune",
    "parse_sweep_num_heads",
    "parse_sweep_order",
    "parse_sweep_window",
    "plan_entries",
    "plot_results",
    "read_results",
    "run_evaluation",
    "score_queries",
    "score_query",
    "strict_scores",
    "trec_order",
    "upgrade_results",
]
