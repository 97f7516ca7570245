"""The settings of one evaluation run (what ``core-rerank eval`` options become)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..settings import RerankerSettings
from ..utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL
from .plan import ALL_METHODS, EntrySpec


@dataclass
class EvalSettings:
    model: str = DEFAULT_MODEL
    data_dir: str = "."
    split: str = "test"
    run_file: str | None = None
    first_stage: str = "run"  # "run" (run file / the folder's BM25 run / bm25s) or "dense" (core_rerank.dense)
    depth: int = 20
    methods: tuple[str, ...] = ALL_METHODS
    heads: Any = None  # core heads (preset, path, HeadConfig) or None for the preset
    qr_heads: Any = None
    compare_heads: tuple[tuple[str, Any], ...] = ()  # (name, head set) pairs, each an extra CoRe-R entry
    head_scores: str | None = None  # score table for core ("layer-head" -> score)
    qr_head_scores: str | None = None
    sweep_num_heads: tuple[Any, ...] = ()
    sweep_window: tuple[int | None, ...] = ()  # window sizes in document tokens; None = one prompt
    window_tokens: Any = "auto"  # every entry's window size; "auto": the heads' own setting
    sweep_order: tuple[str, ...] = ()  # orders inside each window (first_stage, reversed, both, ends)
    document_order: str = "auto"  # every entry's order inside each window; "auto": the heads' own
    forward: str = "auto"  # how prompts run (core_rerank.forward): same scores, other speed
    first_stage_scores: bool = False  # the run's scores order each query's prompts (core_rerank.first_stage)
    prune: tuple[float, ...] = ()
    max_queries: int | None = None
    device: str | None = None
    dtype: str = "auto"
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS
    max_length: int | None = None
    relevance_level: int = 1
    recall_ks: tuple[int, ...] | None = None
    save_scores: bool = True
    progress: bool = True
    one_pass: bool = False  # score every entry from one all-heads pass per query
    workers: int = 1  # > 1: each entry's queries go to a Ray Data actor pool (evaluation.workers)
    threads_per_worker: int | None = None
    ray_address: str | None = None
    gpus_per_worker: float = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def reranker_settings(self, spec: EntrySpec) -> RerankerSettings:
        """How one entry's reranker is built: its heads, method, layers, window size and order, and this
        run's model settings (in this process, or on a worker with ``threads_per_worker``)."""
        return RerankerSettings(
            model=self.model,
            heads=spec.heads,
            method=spec.method,
            num_layers_to_keep=spec.num_layers_to_keep,
            device=self.device,
            dtype=self.dtype,
            max_doc_words=self.max_doc_words,
            max_length=self.max_length,
            window_tokens=spec.window_tokens,
            document_order=spec.document_order,
            forward=self.forward,
            threads=self.threads_per_worker,
        )
