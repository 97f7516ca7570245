"""Head detection: find CoRe (and QR) heads for a decoder LLM on any data (method.md sections 2-3).

Each detection prompt is the reranking prompt (same builder, same spans) over one query's
positive and hard negatives, the positive placed at ``positions`` slots spread over the list.
One forward pass per prompt, with no calibration, captures the query-span rows of *every* head
of every layer scored (softmax over the whole causal context, from the layer's own post-RoPE
queries and keys, as the reranker does), averages them over the rows and reduces them at once
to per-document masses ``s[layer, head, doc]``; no attention matrix is ever kept. Per head:

- CoRe: ``SCoRe = exp(s_pos/t) / sum_d exp(s_d/t)`` (a stable log-sum-exp), averaged over
  prompts, for several temperatures at once (a sweep needs one detection pass);
- QR: ``s_pos`` averaged over prompts (the CoRe paper's QR-R baseline; the default), or with
  ``qr_calibration=True`` ``s_pos(query) - s_pos("N/A" query)`` as QRHead's release does
  (one more forward per prompt);
- ``top1``: how often the positive gets the most mass (SCoRe's t -> 0 limit), for reading.

``detect_heads`` returns a :class:`HeadScoreTable`; ``table.top_heads(8)`` is a ``HeadConfig``.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..layers import original_num_layers
from ..utils import DEFAULT_MAX_DOC_WORDS, peak_rss_bytes, progress_bar, text_config
from .data import DetectionDataError, Example, ExampleSet, as_examples, iter_prompts
from .masses import capture_bytes, document_masses
from .score_table import DEFAULT_TEMPERATURE, HeadScoreTable, core_key


@dataclass
class _Prompt:
    ids: list[int]
    rows: tuple[int, int]
    spans: list[tuple[int, int]]
    positive: int
    null: bool = False
    key: int = 0  # index of the (example, slot) prompt this belongs to


class _Accumulator:
    """Running sums (and sums of squares) of every score, per head, over prompts."""

    def __init__(self, shape: tuple[int, int], temperatures: Sequence[float], qr_calibration: bool):
        self.temperatures = list(temperatures)
        names = [core_key(t) for t in self.temperatures] + ["qr", "top1"]
        if qr_calibration:
            names.append("qr_calibrated")
        self.sums = {n: np.zeros(shape) for n in names}
        self.squares = {n: np.zeros(shape) for n in names}
        self.count = 0

    def add(self, name: str, values: np.ndarray) -> None:
        self.sums[name] += values
        self.squares[name] += values * values

    def add_prompt(self, masses: np.ndarray, positive: int, null_masses: np.ndarray | None = None) -> None:
        pos = masses[..., positive]
        for t in self.temperatures:
            z = masses / t
            top = z.max(axis=-1, keepdims=True)
            lse = top[..., 0] + np.log(np.exp(z - top).sum(axis=-1))
            self.add(core_key(t), np.exp(z[..., positive] - lse))
        self.add("qr", pos)
        self.add("top1", (pos >= masses.max(axis=-1)).astype(np.float64))
        if null_masses is not None:
            self.add("qr_calibrated", pos - null_masses[..., positive])
        self.count += 1

    def means(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        n = max(self.count, 1)
        means = {k: v / n for k, v in self.sums.items()}
        std = {k: np.sqrt(np.maximum(self.squares[k] / n - means[k] ** 2, 0.0)) for k in self.sums}
        return means, std


def _resolve_model(model_or_reranker: Any, tokenizer: Any, max_doc_words: int | None) -> tuple[Any, ...]:
    """(model, tokenizer, prompt builder, words per document, model ids, lock or None)."""
    from ..prompt import PromptBuilder

    if hasattr(model_or_reranker, "builder") and hasattr(model_or_reranker, "model"):
        rr = model_or_reranker
        words = max_doc_words if max_doc_words is not None else rr.max_doc_words
        ids = [rr.model_id] + [m for m in getattr(rr.heads, "model_ids", []) if m != rr.model_id]
        return rr.model, rr.tokenizer, PromptBuilder(rr.tokenizer), words, ids, getattr(rr, "lock", None)
    if isinstance(model_or_reranker, tuple) and len(model_or_reranker) == 2:
        model_or_reranker, tokenizer = model_or_reranker
    if tokenizer is None:
        raise InputError("detect_heads needs a tokenizer: pass a CoReReranker, (model, tokenizer) or tokenizer=")
    model = model_or_reranker
    name = getattr(model.config, "_name_or_path", None) or "model"
    words = max_doc_words if max_doc_words is not None else DEFAULT_MAX_DOC_WORDS
    return model, tokenizer, PromptBuilder(tokenizer), words, [name], None


def detect_heads(
    model_or_reranker: Any,
    examples: Any,
    method: str = "core",
    temperature: "float | Sequence[float]" = DEFAULT_TEMPERATURE,
    *,
    tokenizer: Any = None,
    positions: int = 1,
    num_layers_to_keep: int | None = None,
    max_doc_words: int | None = None,
    negatives: int | None = None,
    batch_size: int = 1,
    qr_calibration: bool = False,
    logit_scale: float | None = None,
    seed: int = 0,
    progress: bool = True,
    model_ids: Sequence[str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> HeadScoreTable:
    """Score every head of a model for detection (CoRe and QR at once).

    ``model_or_reranker``: a ``CoReReranker`` (its model, tokenizer and ``max_doc_words``), a
    ``(model, tokenizer)`` pair, or a model with ``tokenizer=``. ``examples``: a JSONL path, an
    ``ExampleSet`` (``read_jsonl_examples`` / ``beir_examples``), or a list of ``Example`` or
    mappings (``{"query", "positive", "negatives"}`` or the JSONL layout). ``method`` and
    ``temperature`` choose the table's default ranking; give several temperatures to score them
    all in one pass. ``positions``: each example is used with the positive at that many slots
    spread over the list (1: a random slot, seeded). ``num_layers_to_keep``: score (and run)
    only the first N layers; ``None``: every loaded layer. ``batch_size``: prompts per forward
    pass (right-padded).
    """
    temperatures = _checked_options(method, temperature, batch_size)
    data = as_examples(examples, negatives=negatives)
    if not data.examples:
        raise DetectionDataError(f"no usable detection examples: {data.summary()}")
    model, tokenizer, builder, words, ids, lock = _resolve_model(model_or_reranker, tokenizer, max_doc_words)
    config = text_config(model.config)
    num_layers = _layers_to_score(config, num_layers_to_keep)
    shape = (num_layers, config.num_attention_heads)
    context = getattr(config, "max_position_embeddings", None)
    prompts, too_long = _build_prompts(data.examples, positions, seed, builder, words, context, qr_calibration)

    accumulator = _Accumulator(shape, temperatures, qr_calibration)
    device = next(model.parameters()).device
    base_memory = _reset_cuda_peak(device)
    elapsed, capture_peak = _score_prompts(
        model, tokenizer, prompts, accumulator, shape, logit_scale, batch_size, qr_calibration, lock, progress
    )
    means, std = accumulator.means()
    stats = _run_stats(
        model, prompts, accumulator.count, shape, elapsed, batch_size, capture_peak, data.examples, base_memory
    )
    info = _provenance(
        data,
        (list(model_ids) if model_ids else ids)[0],
        accumulator.count,
        positions=positions,
        words=words,
        qr_calibration=qr_calibration,
        seed=seed,
        num_layers=num_layers,
        too_long=too_long,
        provenance=provenance,
    )
    # The first temperature given ranks heads by default (for QR it is only recorded).
    return HeadScoreTable(
        scores=means,
        method=method,
        temperature=temperatures[0],
        model_ids=list(model_ids) if model_ids else ids,
        architecture=_architecture(config),
        num_prompts=accumulator.count,
        std=std,
        provenance=info,
        stats=stats,
    )


def _checked_options(method: str, temperature: "float | Sequence[float]", batch_size: int) -> list[float]:
    """The temperatures as a list, after refusing a bad method, temperature or batch size."""
    if method not in ("core", "qr"):
        raise InputError(f"detection method must be 'core' or 'qr', got {method!r}")
    temperatures = [float(temperature)] if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
    if not temperatures or any(not t > 0 for t in temperatures):
        raise InputError("temperatures must be positive numbers")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    return temperatures


def _layers_to_score(config: Any, num_layers_to_keep: int | None) -> int:
    """How many layers to score: ``num_layers_to_keep`` (checked against those loaded), else all loaded."""
    loaded_layers = config.num_hidden_layers
    num_layers = loaded_layers if num_layers_to_keep is None else int(num_layers_to_keep)
    if not 1 <= num_layers <= loaded_layers:
        raise InputError(
            f"num_layers_to_keep must be between 1 and {loaded_layers} (layers loaded), got {num_layers_to_keep}"
        )
    return num_layers


def _build_prompts(
    examples: Sequence[Example],
    positions: int,
    seed: int,
    builder: Any,
    words: int | None,
    context: int | None,
    qr_calibration: bool,
) -> tuple[list[_Prompt], int]:
    """The detection prompts (each with its N/A twin when calibrating) and how many were over ``context``."""
    from ..prompt import truncate_words

    prompts: list[_Prompt] = []
    too_long = 0
    keys = 0
    for _, example, documents, slot in iter_prompts(examples, positions, seed):
        texts = [truncate_words(d, words) for d in documents]
        prepared = builder.prepare(example.query, texts)
        end = prepared.query_span[1]
        if context and end > context:
            too_long += 1
            continue
        prompts.append(_Prompt(prepared.input_ids[:end], prepared.query_span, prepared.document_spans, slot, key=keys))
        if qr_calibration:
            null_end = prepared.null_query_span[1]
            prompts.append(
                _Prompt(
                    prepared.null_input_ids[:null_end],
                    prepared.null_query_span,
                    prepared.document_spans,
                    slot,
                    null=True,
                    key=keys,
                )
            )
        keys += 1
    if not prompts:
        raise DetectionDataError("every detection prompt is longer than the model's context")
    return prompts, too_long


def _reset_cuda_peak(device: Any) -> int:
    """On CUDA, reset the peak memory statistics and return the memory allocated now (else 0)."""
    import torch

    if device.type != "cuda":
        return 0
    torch.cuda.reset_peak_memory_stats(device)
    return int(torch.cuda.memory_allocated(device))


def _prompt_order(prompts: Sequence[_Prompt], qr_calibration: bool) -> list[int]:
    """Prompt indices, longest first (with calibration, each prompt next to its N/A twin)."""
    if qr_calibration:  # keep a prompt and its N/A twin in one batch
        return sorted(range(len(prompts)), key=lambda i: (-len(prompts[i - prompts[i].null].ids), i))
    return sorted(range(len(prompts)), key=lambda i: (-len(prompts[i].ids), i))


def _score_prompts(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[_Prompt],
    accumulator: _Accumulator,
    shape: tuple[int, int],
    logit_scale: float | None,
    batch_size: int,
    qr_calibration: bool,
    lock: Any,
    progress: bool,
) -> tuple[float, int]:
    """Run every prompt through the model in batches into ``accumulator``: (seconds, peak capture bytes)."""
    num_layers, num_attention_heads = shape
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    order = _prompt_order(prompts, qr_calibration)
    pending: dict[int, dict[bool, np.ndarray]] = {}
    bar = progress_bar(len(order), "detecting heads", unit="prompt", enabled=progress)
    capture_peak = 0
    started = time.perf_counter()
    with lock if lock is not None else contextlib.nullcontext():
        for first in range(0, len(order), batch_size):
            batch = [prompts[i] for i in order[first : first + batch_size]]
            masses = document_masses(
                model,
                [p.ids for p in batch],
                [p.rows for p in batch],
                [p.spans for p in batch],
                num_layers,
                logit_scale,
                pad_id,
            )
            capture_peak = max(
                capture_peak,
                capture_bytes(num_attention_heads, [p.rows for p in batch], max(len(p.ids) for p in batch)),
            )
            _add_batch(accumulator, batch, masses, pending, qr_calibration)
            bar.update(len(batch))
    bar.close()
    return time.perf_counter() - started, capture_peak


def _add_batch(
    accumulator: _Accumulator,
    batch: Sequence[_Prompt],
    masses: Sequence[np.ndarray],
    pending: dict[int, dict[bool, np.ndarray]],
    qr_calibration: bool,
) -> None:
    """Add a batch's masses to ``accumulator`` (with calibration, a prompt once its N/A twin is in)."""
    for prompt, value in zip(batch, masses):
        if not qr_calibration:
            accumulator.add_prompt(value, prompt.positive)
            continue
        pair = pending.setdefault(prompt.key, {})
        pair[prompt.null] = value
        if len(pair) == 2:
            accumulator.add_prompt(pair[False], prompt.positive, pair[True])
            del pending[prompt.key]


def _run_stats(
    model: Any,
    prompts: Sequence[_Prompt],
    num_prompts: int,
    shape: tuple[int, int],
    elapsed: float,
    batch_size: int,
    capture_peak: int,
    examples: Sequence[Example],
    base_memory: int,
) -> dict[str, Any]:
    """The cost figures of a detection run: time, prompt lengths, device and memory."""
    num_layers, num_attention_heads = shape
    device = next(model.parameters()).device
    lengths = [len(p.ids) for p in prompts]
    stats: dict[str, Any] = {
        "forward_passes": len(prompts),
        "seconds": round(elapsed, 2),
        "seconds_per_prompt": round(elapsed / max(num_prompts, 1), 4),
        "prompt_tokens_mean": round(float(np.mean(lengths)), 1),
        "prompt_tokens_max": int(max(lengths)),
        "batch_size": batch_size,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "capture_peak_bytes_per_prompt": int(capture_peak),
        "masses_bytes_per_prompt": int(num_layers * num_attention_heads * (len(examples[0].negatives) + 1) * 8),
    }
    if device.type == "cuda":
        import torch

        stats["cuda_peak_bytes_over_weights"] = int(torch.cuda.max_memory_allocated(device) - base_memory)
    else:
        stats["process_peak_rss_bytes"] = peak_rss_bytes()
    return stats


def _architecture(config: Any) -> dict[str, int]:
    """The scored model's full architecture (layers before any pruning, heads, KV heads)."""
    num_attention_heads = config.num_attention_heads
    return {
        "num_hidden_layers": int(original_num_layers(config)),
        "num_attention_heads": int(num_attention_heads),
        "num_key_value_heads": int(getattr(config, "num_key_value_heads", None) or num_attention_heads),
    }


def _provenance(
    data: ExampleSet,
    model_id: str,
    num_prompts: int,
    *,
    positions: int,
    words: int | None,
    qr_calibration: bool,
    seed: int,
    num_layers: int,
    too_long: int,
    provenance: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The table's provenance: model, data, detection options and version, then ``provenance``."""
    from .. import __version__

    info: dict[str, Any] = {
        "source": "core-rerank detect",
        "model": model_id,
        "data": data.source,
        "data_sha256": data.sha256,
        "num_examples": len(data.examples),
        "skipped_examples": len(data.skipped),
        "num_prompts": num_prompts,
        "positions": positions,
        "max_doc_words": words,
        "negatives_per_prompt": max(len(e.negatives) for e in data.examples),
        "qr_calibration": qr_calibration,
        "seed": seed,
        "layers_scored": num_layers,
        "core_rerank_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if too_long:
        info["prompts_over_context"] = too_long
    info.update(provenance or {})
    return info
