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

``detect_heads`` returns a :class:`HeadScoreTable`; ``table.top_k(8)`` is a ``HeadConfig``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .detection_data import (  # noqa: F401  (re-exported)
    DetectionDataError,
    Example,
    ExampleSet,
    as_examples,
    beir_examples,
    iter_prompts,
    read_jsonl_examples,
)
from .head_config import HeadConfig, HeadConfigError, Provenance, is_score_table, parse_layer_head

TABLE_FORMAT = "core-rerank/head-scores"
DEFAULT_TEMPERATURE = 0.1
SWEEP_TEMPERATURES = (0.001, 0.01, 0.1, 1.0)

_state = threading.local()


def core_key(temperature: float) -> str:
    return f"core@{float(temperature):g}"


# ====================================================================== score table
@dataclass
class HeadScoreTable:
    """Mean per-head detection scores, ``[layers, heads]`` arrays keyed by score name.

    Keys: ``"core@<t>"`` for each temperature, ``"qr"``, ``"qr_calibrated"`` (when asked for)
    and ``"top1"``. ``method`` / ``temperature`` say which one ranks heads by default.
    Layers not scored (beyond ``max_layers``) are absent: ``num_layers_scored`` rows.
    """

    scores: dict[str, np.ndarray]
    method: str = "core"
    temperature: float | None = DEFAULT_TEMPERATURE
    model_ids: list[str] = field(default_factory=list)
    architecture: dict[str, Any] | None = None
    num_prompts: int = 0
    std: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ access
    @property
    def num_layers_scored(self) -> int:
        return next(iter(self.scores.values())).shape[0]

    @property
    def num_heads(self) -> int:
        return next(iter(self.scores.values())).shape[1]

    @property
    def temperatures(self) -> list[float]:
        return sorted(float(k.split("@", 1)[1]) for k in self.scores if k.startswith("core@"))

    def key(self, method: str | None = None, temperature: float | None = None) -> str:
        if set(self.scores) == {"scores"}:  # an official score file: one ranking, whatever it is
            return "scores"
        method = method or self.method
        if method == "core":
            t = temperature if temperature is not None else self.temperature
            if t is None:
                raise KeyError("method 'core' needs a temperature")
            key = core_key(t)
        elif method == "qr" and temperature is None and "qr" not in self.scores and "qr_calibrated" in self.scores:
            key = "qr_calibrated"
        else:
            key = method
        if key not in self.scores:
            raise KeyError(f"the table has no {key!r} scores (it has: {', '.join(self.scores)})")
        return key

    def values(self, method: str | None = None, temperature: float | None = None) -> np.ndarray:
        return self.scores[self.key(method, temperature)]

    def as_layer_head(self, method: str | None = None, temperature: float | None = None,
                      digits: int | None = None) -> dict[str, float]:
        """The official ``{"layer-head": score}`` mapping (reads with ``HeadConfig.from_scores``)."""
        values = self.values(method, temperature)
        return {f"{l}-{h}": (round(float(values[l, h]), digits) if digits else float(values[l, h]))
                for l in range(values.shape[0]) for h in range(values.shape[1])}

    def ranking(self, method: str | None = None, temperature: float | None = None,
                max_layers: int | None = None) -> list[tuple[int, int]]:
        """Every head, best first (ties: lower layer, then lower head)."""
        values = self.values(method, temperature)
        layers = values.shape[0] if max_layers is None else min(max_layers, values.shape[0])
        heads = [(l, h) for l in range(layers) for h in range(values.shape[1])]
        return sorted(heads, key=lambda lh: (-values[lh], lh))

    def top_k(self, k: int = 8, max_layers: int | None = None, method: str | None = None,
              temperature: float | None = None, name: str | None = None,
              **provenance: Any) -> HeadConfig:
        """The top-``k`` heads as a ``HeadConfig``, with provenance.

        ``max_layers``: pruning-aware selection; only heads in layers ``< max_layers`` are
        chosen and the config runs exactly ``max_layers`` layers (``num_layers_to_keep``).
        ``method``: ``"core"`` or ``"qr"`` (default: the table's); ``temperature`` for core.
        """
        if k < 1:
            raise HeadConfigError("k must be at least 1")
        method = method or self.method
        if method not in ("core", "qr"):
            raise ValueError(f"method must be 'core' or 'qr', got {method!r}")
        if max_layers is not None and not 1 <= max_layers <= self.num_layers_scored:
            raise ValueError(f"max_layers must be between 1 and {self.num_layers_scored}, got {max_layers}")
        key = self.key(method, temperature)
        heads = self.ranking(method, temperature, max_layers)[:k]
        t = float(key.split("@", 1)[1]) if key.startswith("core@") else None
        info = dict(self.provenance)
        if method != self.method:  # a sweep or curve of the other method's heads does not apply
            for stale in ("sweep", "ndcg_vs_k"):
                info.pop(stale, None)
        info.update(
            method=method,
            temperature=t,
            k=len(heads),
            score=key,
            max_layers=max_layers,
            head_scores=self.as_layer_head(method, temperature, digits=6),
        )
        info.update(provenance)
        model_short = self.model_ids[0].split("/")[-1].lower() if self.model_ids else "model"
        default_name = f"{model_short}-{method}-detected" + (f"-{max_layers}layers" if max_layers else "")
        arch = self.architecture or None
        return HeadConfig(
            name=name or default_name,
            model_ids=list(self.model_ids),
            architecture=arch,
            method=method,
            heads=heads,
            num_layers_to_keep=max_layers,
            provenance=Provenance(**{k_: v for k_, v in info.items() if v is not None}),
        )

    # ------------------------------------------------------------------ files
    def to_dict(self, digits: int = 8) -> dict[str, Any]:
        def mapping(array: np.ndarray) -> dict[str, float]:
            return {f"{l}-{h}": round(float(array[l, h]), digits)
                    for l in range(array.shape[0]) for h in range(array.shape[1])}

        return {
            "format": TABLE_FORMAT,
            "format_version": 1,
            "model_ids": list(self.model_ids),
            "architecture": self.architecture,
            "num_layers_scored": self.num_layers_scored,
            "method": self.method,
            "temperature": self.temperature,
            "num_prompts": self.num_prompts,
            # The default ranking in the official layout ("layer-head" -> mean score).
            "scores": mapping(self.values()),
            "tables": {key: mapping(values) for key, values in self.scores.items()},
            "std": {key: mapping(values) for key, values in self.std.items()},
            "provenance": self.provenance,
            "stats": self.stats,
        }

    def to_json(self, path: "str | Path | None" = None) -> str:
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_official_json(self, path: "str | Path | None" = None, method: str | None = None,
                         temperature: float | None = None) -> str:
        """Only ``{"layer-head": score}`` (the layout of the official CoRe release files)."""
        text = json.dumps(self.as_layer_head(method, temperature), indent=1) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HeadScoreTable":
        if data.get("format") == TABLE_FORMAT:
            tables = {key: _array_from_mapping(values) for key, values in data["tables"].items()}
            std = {key: _array_from_mapping(values) for key, values in (data.get("std") or {}).items()}
            return cls(scores=tables, method=data.get("method", "core"), temperature=data.get("temperature"),
                       model_ids=list(data.get("model_ids") or []), architecture=data.get("architecture"),
                       num_prompts=int(data.get("num_prompts") or 0), std=std,
                       provenance=dict(data.get("provenance") or {}), stats=dict(data.get("stats") or {}))
        if is_score_table(data):
            # An official per-head score file: one table, method unknown (CoRe by default).
            return cls(scores={"scores": _array_from_mapping(data)}, method="core", temperature=None,
                       provenance={"source": "official layer-head score file"})
        if isinstance(data.get("provenance"), Mapping) and data["provenance"].get("head_scores"):
            # A HeadConfig written by `detect`: its provenance carries the ranking scores.
            prov = data["provenance"]
            method = prov.get("method", "core")
            t = prov.get("temperature")
            key = core_key(t) if method == "core" and t is not None else method
            return cls(scores={key: _array_from_mapping(prov["head_scores"])}, method=method, temperature=t,
                       model_ids=list(data.get("model_ids") or []), architecture=data.get("architecture"),
                       num_prompts=int(prov.get("num_prompts") or 0), provenance=dict(prov))
        raise ValueError("not a head score table: expected a core-rerank score table, an official "
                         "{'layer-head': score} file, or a head config written by `core-rerank detect`")

    @classmethod
    def from_json(cls, path: "str | Path") -> "HeadScoreTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def plot(self, path: "str | Path", method: str | None = None, temperature: float | None = None,
             k: int = 8, max_layers: int | None = None, title: str | None = None) -> Path:
        """The layer x head heatmap (the paper's Figure 2), top-``k`` heads marked."""
        from .plotting import plot_head_heatmap

        key = self.key(method, temperature)
        label = {"qr": "QR score (mass on the positive)", "qr_calibrated": "QR score, N/A-calibrated",
                 "top1": "positive has the most mass (share of prompts)"}.get(
            key, f"mean SCoRe, t={key.split('@')[1]}" if key.startswith("core@") else "score")
        model = self.model_ids[0] if self.model_ids else "model"
        selected = self.ranking(method, temperature, max_layers)[:k] if k else []
        return plot_head_heatmap(self.values(method, temperature), path, selected=selected,
                                 title=title or f"{model}: {label}, {self.num_prompts} prompts",
                                 colorbar_label=label)


def _array_from_mapping(mapping: Mapping[str, float]) -> np.ndarray:
    pairs = {parse_layer_head(k): float(v) for k, v in mapping.items()}
    layers = max(l for l, _ in pairs) + 1
    heads = max(h for _, h in pairs) + 1
    array = np.full((layers, heads), np.nan)
    for (l, h), value in pairs.items():
        array[l, h] = value
    return array


# ====================================================================== capture (batched)
def document_masses(model, sequences: Sequence[Sequence[int]], rows: Sequence[tuple[int, int]],
                    spans: Sequence[Sequence[tuple[int, int]]], num_layers: int | None = None,
                    logit_scale: float | None = None, pad_id: int = 0) -> list[np.ndarray]:
    """Per-document attention masses ``[layers, heads, docs]`` for a batch of prompts.

    ``sequences``: token ids (right-padded here: the captured rows are real tokens and, with a
    causal mask, never see the padding after them). ``rows``: each prompt's query span;
    ``spans``: its document spans. Runs the first ``num_layers`` layers (default all) and stops.
    """
    import torch

    from . import capture
    from .capture import CaptureRequest

    text_config = getattr(model.config, "text_config", None) or model.config
    num_layers = num_layers or text_config.num_hidden_layers
    device = next(model.parameters()).device
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long, device=device)
    for b, seq in enumerate(sequences):
        ids[b, : len(seq)] = torch.tensor(list(seq), dtype=torch.long, device=device)
    starts = [torch.tensor([s for s, _ in sp], device=device) for sp in spans]
    ends = [torch.tensor([e for _, e in sp], device=device) for sp in spans]
    masses = [[None] * num_layers for _ in rows]  # per item, per layer: [heads, docs]
    peak_bytes = 0

    def reduce_to_masses(layer, item, probs):  # [heads, context] -> [heads, docs], at once
        nonlocal peak_bytes
        start, end = rows[item]
        peak_bytes = max(peak_bytes, 3 * probs.shape[0] * (end - start) * probs.shape[1] * 4)
        cumulative = torch.nn.functional.pad(probs.double().cumsum(dim=-1), (1, 0))
        masses[item][layer] = cumulative[:, ends[item]] - cumulative[:, starts[item]]

    all_heads = {layer: list(range(text_config.num_attention_heads)) for layer in range(num_layers)}
    request = CaptureRequest(all_heads, None, num_layers - 1, logit_scale,
                             item_rows=list(rows), on_rows=reduce_to_masses)
    capture.install(model)
    with torch.inference_mode(), capture.capture(request):
        try:
            model.base_model(input_ids=ids, use_cache=False)
        except capture.StopForward:
            pass
    out = []
    for per_layer in masses:
        if any(m is None for m in per_layer):
            raise RuntimeError("the detection capture saw fewer layers than expected; "
                               "does this model use transformers' AttentionInterface?")
        out.append(torch.stack(per_layer).cpu().numpy())
    _state.last_capture_bytes = peak_bytes
    return out


# ====================================================================== detection
@dataclass
class _Prompt:
    ids: list[int]
    rows: tuple[int, int]
    spans: list[tuple[int, int]]
    positive: int
    null: bool = False
    key: int = 0  # index of the (example, slot) prompt this belongs to


class _Accumulator:
    def __init__(self, shape, temperatures, qr_calibration):
        self.temperatures = list(temperatures)
        names = [core_key(t) for t in self.temperatures] + ["qr", "top1"]
        if qr_calibration:
            names.append("qr_calibrated")
        self.sums = {n: np.zeros(shape) for n in names}
        self.squares = {n: np.zeros(shape) for n in names}
        self.count = 0

    def add(self, name, values):
        self.sums[name] += values
        self.squares[name] += values * values

    def add_prompt(self, masses: np.ndarray, positive: int, null_masses: np.ndarray | None = None):
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

    def means(self):
        n = max(self.count, 1)
        means = {k: v / n for k, v in self.sums.items()}
        std = {k: np.sqrt(np.maximum(self.squares[k] / n - means[k] ** 2, 0.0)) for k in self.sums}
        return means, std


def _resolve_model(model_or_reranker, tokenizer, max_doc_words):
    from .prompt import PromptBuilder

    if hasattr(model_or_reranker, "builder") and hasattr(model_or_reranker, "model"):
        rr = model_or_reranker
        words = max_doc_words if max_doc_words is not None else rr.max_doc_words
        ids = [rr.model_id] + [m for m in getattr(rr.heads, "model_ids", []) if m != rr.model_id]
        return rr.model, rr.tokenizer, PromptBuilder(rr.tokenizer), words, ids, getattr(rr, "_lock", None)
    if isinstance(model_or_reranker, tuple) and len(model_or_reranker) == 2:
        model_or_reranker, tokenizer = model_or_reranker
    if tokenizer is None:
        raise TypeError("detect_heads needs a tokenizer: pass a CoReReranker, (model, tokenizer) or tokenizer=")
    model = model_or_reranker
    name = getattr(model.config, "_name_or_path", None) or "model"
    words = max_doc_words if max_doc_words is not None else 300
    return model, tokenizer, PromptBuilder(tokenizer), words, [name], None


def detect_heads(
    model_or_reranker: Any,
    examples: Any,
    method: str = "core",
    temperature: "float | Sequence[float]" = DEFAULT_TEMPERATURE,
    *,
    tokenizer: Any = None,
    positions: int = 1,
    max_layers: int | None = None,
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
    spread over the list (1: a random slot, seeded). ``max_layers``: score only the first
    layers (and run only those). ``batch_size``: prompts per forward pass (right-padded).
    """
    import torch

    if method not in ("core", "qr"):
        raise ValueError(f"detection method must be 'core' or 'qr', got {method!r}")
    temperatures = [float(temperature)] if isinstance(temperature, (int, float)) else [float(t) for t in temperature]
    if not temperatures or any(not t > 0 for t in temperatures):
        raise ValueError("temperatures must be positive numbers")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    data = as_examples(examples, negatives=negatives)
    if not data.examples:
        raise DetectionDataError(f"no usable detection examples: {data.summary()}")
    model, tokenizer, builder, words, ids, lock = _resolve_model(model_or_reranker, tokenizer, max_doc_words)
    text_config = getattr(model.config, "text_config", None) or model.config
    loaded_layers = text_config.num_hidden_layers
    full_layers = getattr(text_config, "core_rerank_original_num_hidden_layers", None) or loaded_layers
    num_layers = loaded_layers if max_layers is None else int(max_layers)
    if not 1 <= num_layers <= loaded_layers:
        raise ValueError(f"max_layers must be between 1 and {loaded_layers} (layers loaded), got {max_layers}")
    num_heads = text_config.num_attention_heads
    context = getattr(text_config, "max_position_embeddings", None)

    from .prompt import truncate_words

    prompts: list[_Prompt] = []
    too_long = 0
    keys = 0
    for _, example, documents, slot in iter_prompts(data.examples, positions, seed):
        texts = [truncate_words(d, words) for d in documents]
        prepared = builder.prepare(example.query, texts)
        end = prepared.query_span[1]
        if context and end > context:
            too_long += 1
            continue
        prompts.append(_Prompt(prepared.input_ids[:end], prepared.query_span, prepared.document_spans, slot, key=keys))
        if qr_calibration:
            null_end = prepared.null_query_span[1]
            prompts.append(_Prompt(prepared.null_input_ids[:null_end], prepared.null_query_span,
                                   prepared.document_spans, slot, null=True, key=keys))
        keys += 1
    if not prompts:
        raise DetectionDataError("every detection prompt is longer than the model's context")

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    accumulator = _Accumulator((num_layers, num_heads), temperatures, qr_calibration)
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i].ids), i))
    if qr_calibration:  # keep a prompt and its N/A twin in one batch
        order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i - prompts[i].null].ids), i))
    pending: dict[int, dict[bool, np.ndarray]] = {}
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_memory = torch.cuda.memory_allocated(device)
    bar = _progress(len(order), progress, "detecting heads")
    capture_peak = 0
    started = time.perf_counter()
    with (lock if lock is not None else contextlib.nullcontext()):
        for first in range(0, len(order), batch_size):
            batch = [prompts[i] for i in order[first:first + batch_size]]
            masses = document_masses(model, [p.ids for p in batch], [p.rows for p in batch],
                                     [p.spans for p in batch], num_layers, logit_scale, pad_id)
            capture_peak = max(capture_peak, getattr(_state, "last_capture_bytes", 0))
            for prompt, value in zip(batch, masses):
                if not qr_calibration:
                    accumulator.add_prompt(value, prompt.positive)
                    continue
                pair = pending.setdefault(prompt.key, {})
                pair[prompt.null] = value
                if len(pair) == 2:
                    accumulator.add_prompt(pair[False], prompt.positive, pair[True])
                    del pending[prompt.key]
            bar.update(len(batch))
    bar.close()
    elapsed = time.perf_counter() - started
    means, std = accumulator.means()

    lengths = [len(p.ids) for p in prompts]
    stats: dict[str, Any] = {
        "forward_passes": len(prompts),
        "seconds": round(elapsed, 2),
        "seconds_per_prompt": round(elapsed / max(accumulator.count, 1), 4),
        "prompt_tokens_mean": round(float(np.mean(lengths)), 1),
        "prompt_tokens_max": int(max(lengths)),
        "batch_size": batch_size,
        "device": str(device),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "capture_peak_bytes_per_prompt": int(capture_peak),
        "masses_bytes_per_prompt": int(num_layers * num_heads * (len(data.examples[0].negatives) + 1) * 8),
    }
    if device.type == "cuda":
        stats["cuda_peak_bytes_over_weights"] = int(torch.cuda.max_memory_allocated(device) - base_memory)
    else:
        stats["process_peak_rss_bytes"] = _peak_rss()

    text_arch = {
        "num_hidden_layers": int(full_layers),
        "num_attention_heads": int(num_heads),
        "num_key_value_heads": int(getattr(text_config, "num_key_value_heads", None) or num_heads),
    }
    info: dict[str, Any] = {
        "source": "core-rerank detect",
        "model": (list(model_ids) if model_ids else ids)[0],
        "data": data.source,
        "data_sha256": data.sha256,
        "num_examples": len(data.examples),
        "skipped_examples": len(data.skipped),
        "num_prompts": accumulator.count,
        "positions": positions,
        "max_doc_words": words,
        "negatives_per_prompt": max(len(e.negatives) for e in data.examples),
        "qr_calibration": qr_calibration,
        "seed": seed,
        "layers_scored": num_layers,
        "core_rerank_version": _version(),
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if too_long:
        info["prompts_over_context"] = too_long
    info.update(provenance or {})
    primary = temperatures[0] if method == "core" else None
    return HeadScoreTable(
        scores=means, method=method, temperature=primary if method == "core" else temperatures[0],
        model_ids=list(model_ids) if model_ids else ids, architecture=text_arch,
        num_prompts=accumulator.count, std=std, provenance=info, stats=stats,
    )


def _version() -> str:
    from . import __version__

    return __version__


def _peak_rss() -> int | None:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, AttributeError):
        return None


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="prompt", file=sys.stderr)


# ====================================================================== selection on held-out data
def evaluate_configs(model, tokenizer, configs: Sequence[HeadConfig], data_dir: str, split: str = "test",
                     depth: int = 20, max_queries: int | None = None, max_doc_words: int | None = 300,
                     model_id: str | None = None) -> list[float]:
    """nDCG@10 of each head config (sharing one loaded model), via ``evaluation.evaluate_heads``."""
    from .evaluation import evaluate_heads
    from .reranker import CoReReranker

    results = []
    for config in configs:
        method = config.method
        heads = None if method == "icr" else config
        reranker = CoReReranker(model, tokenizer, heads=heads, method=method, max_doc_words=max_doc_words,
                                model_id=model_id)
        results.append(float(evaluate_heads(reranker, data_dir, split=split, depth=depth,
                                            max_queries=max_queries)))
    return results


def sweep(table: HeadScoreTable, model, tokenizer, data_dir: str, temperatures: Sequence[float] | None = None,
          ks: Sequence[int] = (8,), max_layers: int | None = None, split: str = "test", depth: int = 20,
          max_queries: int | None = None, max_doc_words: int | None = 300, log=print) -> dict[str, Any]:
    """Pick the temperature (CoRe) and k by nDCG@10 of the selected heads on held-out data.

    Returns ``{"temperature", "k", "ndcg@10", "results": [...], "data", ...}`` (ties: the
    first in the order given).
    """
    method = table.method
    temps = list(temperatures or table.temperatures) if method == "core" else [None]
    grid = [(t, k) for t in temps for k in ks]
    configs = [table.top_k(k, max_layers=max_layers, method=method, temperature=t) for t, k in grid]
    results = []
    seen: dict[tuple, float] = {}  # temperatures that select the same heads are evaluated once
    for (t, k), config in zip(grid, configs):
        heads = tuple(config.heads)
        if heads not in seen:
            seen[heads] = evaluate_configs(model, tokenizer, [config], data_dir, split, depth, max_queries,
                                           max_doc_words, table.model_ids[0] if table.model_ids else None)[0]
        value = seen[heads]
        log(f"  t={t if t is not None else '-'} k={k}: nDCG@10 {value:.4f}  heads {config.to_qrhead_string()}")
        results.append({"temperature": t, "k": k, "ndcg@10": round(value, 5)})
    best = max(range(len(results)), key=lambda i: (results[i]["ndcg@10"], -i))
    return {
        "temperature": results[best]["temperature"],
        "k": results[best]["k"],
        "ndcg@10": results[best]["ndcg@10"],
        "data": str(data_dir), "split": split, "depth": depth, "max_queries": max_queries,
        "max_doc_words": max_doc_words, "results": results,
    }


# ====================================================================== command line
def register_cli(commands, heads_subparsers) -> None:
    """Add ``detect`` and ``heads plot`` / ``heads select`` (called by ``core_rerank.cli``)."""
    from .detection_cli import register

    register(commands, heads_subparsers)
