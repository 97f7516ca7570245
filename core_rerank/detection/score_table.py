"""The detection result: mean per-head scores, their files, and head selection from them.

No torch here: a score table can be read, plotted and turned into head configs anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..head_config import HeadConfig, HeadConfigError, Provenance, is_score_table, parse_layer_head

TABLE_FORMAT = "core-rerank/head-scores"
DEFAULT_TEMPERATURE = 0.1

# Provenance that belongs to one method's ranking: dropped when heads of the other method are chosen.
_METHOD_RECORDS = ("sweep", "ndcg_vs_k")


def core_key(temperature: float) -> str:
    """The score name of CoRe at one temperature: ``core@0.1``."""
    return f"core@{float(temperature):g}"


@dataclass
class HeadScoreTable:
    """Mean per-head detection scores, ``[layers, heads]`` arrays keyed by score name.

    Keys: ``"core@<t>"`` for each temperature, ``"qr"``, ``"qr_calibrated"`` (when asked for)
    and ``"top1"``. ``method`` / ``temperature`` say which one ranks heads by default.
    Layers not scored (beyond detection's ``num_layers_to_keep``) are absent:
    ``num_layers_scored`` rows.
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
        return int(next(iter(self.scores.values())).shape[0])

    @property
    def num_attention_heads(self) -> int:
        """Query heads per layer (the table's second axis)."""
        return int(next(iter(self.scores.values())).shape[1])

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

    def as_layer_head(
        self, method: str | None = None, temperature: float | None = None, digits: int | None = None
    ) -> dict[str, float]:
        """The official ``{"layer-head": score}`` mapping (reads with ``HeadConfig.from_scores``)."""
        values = self.values(method, temperature)
        return {
            f"{l}-{h}": (round(float(values[l, h]), digits) if digits else float(values[l, h]))
            for l in range(values.shape[0])
            for h in range(values.shape[1])
        }

    def ranking(
        self, method: str | None = None, temperature: float | None = None, num_layers_to_keep: int | None = None
    ) -> list[tuple[int, int]]:
        """Every head (in the first ``num_layers_to_keep`` layers, default all), best first
        (ties: lower layer, then lower head)."""
        values = self.values(method, temperature)
        layers = values.shape[0] if num_layers_to_keep is None else min(num_layers_to_keep, values.shape[0])
        heads = [(l, h) for l in range(layers) for h in range(values.shape[1])]
        return sorted(heads, key=lambda lh: (-values[lh], lh))

    def top_heads(
        self,
        num_heads: int = 8,
        num_layers_to_keep: int | None = None,
        method: str | None = None,
        temperature: float | None = None,
        name: str | None = None,
        **provenance: Any,
    ) -> HeadConfig:
        """The best ``num_heads`` heads as a ``HeadConfig``, with provenance.

        ``num_layers_to_keep``: pruning-aware selection; only heads in layers
        ``< num_layers_to_keep`` are chosen and the config keeps exactly that many layers.
        ``None``: any scored layer, and the config runs as many layers as its heads need.
        ``method``: ``"core"`` or ``"qr"`` (default: the table's); ``temperature`` for core.
        """
        if num_heads < 1:
            raise HeadConfigError("num_heads must be at least 1")
        method = method or self.method
        if method not in ("core", "qr"):
            raise InputError(f"method must be 'core' or 'qr', got {method!r}")
        if num_layers_to_keep is not None and not 1 <= num_layers_to_keep <= self.num_layers_scored:
            raise InputError(
                f"num_layers_to_keep must be between 1 and {self.num_layers_scored}, got {num_layers_to_keep}"
            )
        key = self.key(method, temperature)
        heads = self.ranking(method, temperature, num_layers_to_keep)[:num_heads]
        t = float(key.split("@", 1)[1]) if key.startswith("core@") else None
        info = dict(self.provenance)
        info.pop("k", None)  # the old name of num_heads (configs written before it was renamed)
        if method != self.method:  # a sweep or curve of the other method's heads does not apply
            for stale in _METHOD_RECORDS:
                info.pop(stale, None)
        info.update(
            method=method,
            temperature=t,
            num_heads=len(heads),
            score=key,
            max_layers=num_layers_to_keep,
            head_scores=self.as_layer_head(method, temperature, digits=6),
        )
        info.update(provenance)
        model_short = self.model_ids[0].split("/")[-1].lower() if self.model_ids else "model"
        default_name = f"{model_short}-{method}-detected" + (
            f"-{num_layers_to_keep}layers" if num_layers_to_keep else ""
        )
        return HeadConfig(
            name=name or default_name,
            model_ids=list(self.model_ids),
            architecture=self.architecture or None,
            method=method,
            heads=heads,
            num_layers_to_keep=num_layers_to_keep,
            provenance=Provenance(**{k: v for k, v in info.items() if v is not None}),
        )

    # ------------------------------------------------------------------ files
    def to_dict(self, digits: int = 8) -> dict[str, Any]:
        def mapping(array: np.ndarray) -> dict[str, float]:
            return {
                f"{l}-{h}": round(float(array[l, h]), digits)
                for l in range(array.shape[0])
                for h in range(array.shape[1])
            }

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

    def to_official_json(
        self, path: "str | Path | None" = None, method: str | None = None, temperature: float | None = None
    ) -> str:
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
            return cls(
                scores=tables,
                method=data.get("method", "core"),
                temperature=data.get("temperature"),
                model_ids=list(data.get("model_ids") or []),
                architecture=data.get("architecture"),
                num_prompts=int(data.get("num_prompts") or 0),
                std=std,
                provenance=dict(data.get("provenance") or {}),
                stats=dict(data.get("stats") or {}),
            )
        if is_score_table(data):
            # An official per-head score file: one table, method unknown (CoRe by default).
            return cls(
                scores={"scores": _array_from_mapping(data)},
                method="core",
                temperature=None,
                provenance={"source": "official layer-head score file"},
            )
        if isinstance(data.get("provenance"), Mapping) and data["provenance"].get("head_scores"):
            # A HeadConfig written by `detect`: its provenance carries the ranking scores.
            prov = data["provenance"]
            method = prov.get("method", "core")
            t = prov.get("temperature")
            key = core_key(t) if method == "core" and t is not None else method
            return cls(
                scores={key: _array_from_mapping(prov["head_scores"])},
                method=method,
                temperature=t,
                model_ids=list(data.get("model_ids") or []),
                architecture=data.get("architecture"),
                num_prompts=int(prov.get("num_prompts") or 0),
                provenance=dict(prov),
            )
        raise InputError(
            "not a head score table: expected a core-rerank score table, an official "
            "{'layer-head': score} file, or a head config written by `core-rerank detect`"
        )

    @classmethod
    def from_json(cls, path: "str | Path") -> "HeadScoreTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None

    def plot(
        self,
        path: "str | Path",
        method: str | None = None,
        temperature: float | None = None,
        num_heads: int = 8,
        num_layers_to_keep: int | None = None,
        title: str | None = None,
    ) -> Path:
        """The layer x head heatmap (the paper's Figure 2), the best ``num_heads`` heads marked."""
        from ..plotting import plot_head_heatmap

        key = self.key(method, temperature)
        label = {
            "qr": "QR score (mass on the positive)",
            "qr_calibrated": "QR score, N/A-calibrated",
            "top1": "positive has the most mass (share of prompts)",
        }.get(key, f"mean SCoRe, t={key.split('@')[1]}" if key.startswith("core@") else "score")
        model = self.model_ids[0] if self.model_ids else "model"
        selected = self.ranking(method, temperature, num_layers_to_keep)[:num_heads] if num_heads else []
        return plot_head_heatmap(
            self.values(method, temperature),
            path,
            selected=selected,
            title=title or f"{model}: {label}, {self.num_prompts} prompts",
            colorbar_label=label,
        )


def _array_from_mapping(mapping: Mapping[str, float]) -> np.ndarray:
    pairs = {parse_layer_head(k): float(v) for k, v in mapping.items()}
    layers = max(l for l, _ in pairs) + 1
    heads = max(h for _, h in pairs) + 1
    array = np.full((layers, heads), np.nan)
    for (l, h), value in pairs.items():
        array[l, h] = value
    return array
