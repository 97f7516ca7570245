"""Head configurations: which attention heads score documents, and how many layers to run.

A head is a 0-based ``[layer, head]`` pair: ``layer`` indexes ``model.model.layers`` and
``head`` is a *query* head (with grouped-query attention, query head ``h`` reads KV head
``h // (num_heads // num_kv_heads)``). This is QRHead's and IBM vLLM-Hook's convention.

Presets ship as JSON in ``core_rerank/heads/`` and are resolved by name or by model id.
Importers read the official per-head score files, QRHead's ``"layer-head"`` strings and
vLLM-Hook's ``important_heads`` lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import HeadConfigError, InputError
from .layers import original_num_layers
from .utils import text_config
from .windows import MIN_WINDOW_TOKENS

FORMAT = "core-rerank/heads"
FORMAT_VERSION = 1
Method = Literal["core", "qr", "icr"]
METHODS: tuple[str, ...] = ("core", "qr", "icr")


class Architecture(BaseModel):
    """The attention shape a head config was made for (used to validate against a model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)


class ScoringSettings(BaseModel):
    """How token attention becomes document scores (method.md section 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    calibration: Literal["null_query", "none"] = "null_query"
    null_query: str = "N/A"
    # None: the attention module's own scaling. A number overrides it (the official Granite
    # heads were found with 1/sqrt(head_dim) instead of Granite's attention multiplier).
    logit_scale: float | None = None
    outlier_std: float | None = 2.0
    # Document tokens per prompt window (core_rerank.windows). None: every candidate in one
    # prompt while the list fits max_length (the paper's setting).
    window_tokens: int | None = Field(default=None, ge=MIN_WINDOW_TOKENS)
    # Order of the documents inside each window (core_rerank.windows): "first_stage" (strongest
    # first, farthest from the query: the paper's order), "reversed", "both" or "ends".
    document_order: Literal["first_stage", "reversed", "both", "ends"] = "first_stage"
    # Position calibration (core_rerank.position): "none"; "placeholder" (one extra pass per prompt
    # with every document body replaced by a filler token: each slot's prior); "curve" (a stored
    # per-token prior by distance from the query, no extra pass). score = s - position_weight * prior.
    position_calibration: Literal["none", "placeholder", "curve"] = "none"
    position_weight: float = 1.0
    position_curve: list[float] | None = None
    # The first-stage order the prompts are built from (core_rerank.first_stage): "input" (the
    # caller's order) or "lexical" (sorted by an in-list BM25: the ranking ignores input order).
    order_by: Literal["input", "lexical"] = "input"
    # Weight of the caller's first_stage_scores in the score (core_rerank.first_stage.fuse; 0: they
    # only order the prompts).
    first_stage_weight: float = Field(default=0.0, ge=0.0)


class Provenance(BaseModel):
    """Where a head set came from."""

    model_config = ConfigDict(frozen=True, extra="allow")
    method: str = "core"
    temperature: float | None = None
    num_heads: int | None = Field(default=None, validation_alias=AliasChoices("num_heads", "k"))  # "k": older files
    data: str | None = None
    source: str | None = None


class HeadConfig(BaseModel):
    """A set of attention heads for one model (or model family).

    ``num_layers_to_keep`` is the number of leading decoder layers to build and run; ``None``
    means as many as the heads need (``deepest selected layer + 1``; every layer for ICR).
    ``heads`` is empty only for ``method="icr"`` (every head).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    name: str | None = None
    model_ids: list[str] = Field(default_factory=list)
    architecture: Architecture | None = None
    method: Method = "core"
    heads: list[tuple[int, int]] = Field(default_factory=list)
    num_layers_to_keep: int | None = None
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    provenance: Provenance = Field(default_factory=Provenance)

    def __init__(self, **data: Any):
        # Validation problems surface as HeadConfigError (a ValueError), not pydantic's type.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise HeadConfigError(_describe(exc)) from None

    @field_validator("heads", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_layer_head_string(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> "HeadConfig":
        if self.format != FORMAT:
            raise HeadConfigError(f"not a core-rerank head config (format={self.format!r})")
        if self.method != "icr" and not self.heads:
            raise HeadConfigError(f"method {self.method!r} needs at least one head")
        seen = set()
        for layer, head in self.heads:
            if layer < 0 or head < 0:
                raise HeadConfigError(f"negative index in head [{layer}, {head}]")
            if (layer, head) in seen:
                raise HeadConfigError(f"head [{layer}, {head}] is listed twice")
            seen.add((layer, head))
        if self.num_layers_to_keep is not None and self.heads:
            deepest = max(layer for layer, _ in self.heads)
            if self.num_layers_to_keep < deepest + 1:
                raise HeadConfigError(
                    f"num_layers_to_keep={self.num_layers_to_keep} drops layer {deepest}, "
                    f"which holds a selected head; it must be at least {deepest + 1}"
                )
        return self

    # ------------------------------------------------------------------ derived values
    @property
    def deepest_layer(self) -> int | None:
        return max((layer for layer, _ in self.heads), default=None)

    def num_layers_needed(self, num_hidden_layers: int | None = None) -> int:
        """How many leading layers the scorer needs on a model with ``num_hidden_layers``:
        the config's ``num_layers_to_keep`` if set (capped at the model's), else the deepest
        selected layer + 1; every layer for ICR (which needs ``num_hidden_layers``). Without
        ``num_hidden_layers`` (no model at hand), what the heads alone need."""
        if self.method == "icr":
            if num_hidden_layers is None:
                raise InputError("ICR runs every layer: give the model's num_hidden_layers")
            return num_hidden_layers
        if self.num_layers_to_keep is not None:
            return min(self.num_layers_to_keep, num_hidden_layers or self.num_layers_to_keep)
        return max(layer for layer, _ in self.heads) + 1

    def heads_by_layer(self, num_hidden_layers: int, num_attention_heads: int) -> dict[int, list[int]]:
        """Selected heads grouped by layer (every head of every layer for ICR)."""
        if self.method == "icr":
            return {layer: list(range(num_attention_heads)) for layer in range(num_hidden_layers)}
        grouped: dict[int, list[int]] = {}
        for layer, head in self.heads:
            grouped.setdefault(layer, []).append(head)
        return {layer: sorted(heads) for layer, heads in sorted(grouped.items())}

    # ------------------------------------------------------------------ validation
    def validate_for(self, config: Any) -> None:
        """Raise ``HeadConfigError`` naming the first head that does not fit ``config``.

        ``config`` is a transformers ``PretrainedConfig`` (its text config is used for
        multimodal models) or anything with the same three attributes.
        """
        config = text_config(config)
        layers = original_num_layers(config)
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        for layer, head in self.heads:
            if layer >= layers:
                raise HeadConfigError(
                    f"head [{layer}, {head}] does not fit the model: layer {layer} does not exist "
                    f"(the model has {layers} layers, 0..{layers - 1})"
                )
            if head >= heads:
                raise HeadConfigError(
                    f"head [{layer}, {head}] does not fit the model: head {head} does not exist "
                    f"(the model has {heads} attention heads per layer, 0..{heads - 1})"
                )
        arch = self.architecture
        if arch is not None and (
            arch.num_hidden_layers != layers
            or arch.num_attention_heads != heads
            or (arch.num_key_value_heads is not None and arch.num_key_value_heads != kv_heads)
        ):
            raise HeadConfigError(
                f"head config {self.name or ''!s} was made for {arch.num_hidden_layers} layers x "
                f"{arch.num_attention_heads} heads ({arch.num_key_value_heads} KV heads), but the model "
                f"has {layers} x {heads} ({kv_heads} KV heads)"
            )

    # ------------------------------------------------------------------ variants
    def with_heads(self, heads: Sequence[Sequence[int]], **changes: Any) -> "HeadConfig":
        data = self.model_dump()
        data.update(heads=[tuple(h) for h in heads], num_layers_to_keep=None, **changes)
        return HeadConfig(**data)

    def top_heads(self, num_heads: int) -> "HeadConfig":
        """The first ``num_heads`` heads (heads are stored best first)."""
        if num_heads < 1:
            raise HeadConfigError("num_heads must be at least 1")
        provenance = self.provenance.model_copy(update={"num_heads": min(num_heads, len(self.heads))})
        return self.with_heads(self.heads[:num_heads], provenance=provenance)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["heads"] = [list(h) for h in self.heads]
        return data

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent) + "\n"
        text = _PAIR_LINES.sub(r"[\1, \2]", text)  # one [layer, head] pair per line
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "HeadConfig":
        if "params" in data and "important_heads" in data.get("params", {}):
            return cls.from_vllm_hook(data)
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> "HeadConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HeadConfigError(f"{path}: not valid JSON ({exc})") from exc
        if is_score_table(data):
            raise HeadConfigError(
                f"{path} is a per-head score table; use HeadConfig.from_scores(...) "
                "or `core-rerank heads show` to select heads from it"
            )
        return cls.from_dict(data)

    @classmethod
    def load(cls, name_or_path: "str | Path | HeadConfig") -> "HeadConfig":
        """A shipped preset by name, or a JSON file by path."""
        if isinstance(name_or_path, HeadConfig):
            return name_or_path
        text = str(name_or_path)
        if text in preset_names():
            return _load_preset(text)
        path = Path(text).expanduser()
        if path.is_file():
            return cls.from_json(path)
        raise HeadConfigError(
            f"no head config named {text!r}: not a shipped preset ({', '.join(preset_names())}) and not a file"
        )

    # ------------------------------------------------------------------ importers
    @classmethod
    def from_scores(
        cls,
        scores: Mapping[str, float] | str | Path,
        num_heads: int = 8,
        num_layers_to_keep: int | None = None,
        **fields: Any,
    ) -> "HeadConfig":
        """The best ``num_heads`` heads of a per-head score table (``"layer-head" -> score``).

        ``num_layers_to_keep`` restricts the choice to layers ``< num_layers_to_keep``
        (pruning-aware selection) and records it in the config (``None``: any layer, and the
        config keeps as many layers as its heads need).
        """
        data: Mapping[str, Any] = (
            scores if isinstance(scores, Mapping) else json.loads(Path(scores).read_text(encoding="utf-8"))
        )
        if isinstance(data.get("scores"), Mapping):  # a `core-rerank detect` score table file
            data = data["scores"]
        table = {parse_layer_head(key): float(value) for key, value in data.items()}
        if num_layers_to_keep is not None:
            table = {lh: s for lh, s in table.items() if lh[0] < num_layers_to_keep}
        ranked = sorted(table, key=lambda lh: (-table[lh], lh))[:num_heads]
        if not ranked:
            raise HeadConfigError("the score table has no heads to select")
        return cls(heads=ranked, num_layers_to_keep=num_layers_to_keep, **fields)

    @classmethod
    def from_qrhead_string(cls, text: str, **fields: Any) -> "HeadConfig":
        """QRHead's ``attn_head_set`` string, e.g. ``"14-22,13-16,..."``."""
        fields.setdefault("method", "qr")
        return cls(heads=parse_layer_head_string(text), **fields)

    @classmethod
    def from_vllm_hook(cls, data: Mapping[str, Any] | str | Path, **fields: Any) -> "HeadConfig":
        """IBM vLLM-Hook's CoRe config: ``{"model_info": {"model_id"}, "params": {"important_heads"}}``."""
        hook: Mapping[str, Any] = (
            data if isinstance(data, Mapping) else json.loads(Path(data).read_text(encoding="utf-8"))
        )
        try:
            heads = [tuple(pair) for pair in hook["params"]["important_heads"]]
        except (KeyError, TypeError) as exc:
            raise HeadConfigError("not a vLLM-Hook config: params.important_heads is missing") from exc
        model_id = (hook.get("model_info") or {}).get("model_id")
        fields.setdefault("model_ids", [model_id] if model_id else [])
        fields.setdefault("provenance", Provenance(method="core", source="vLLM-Hook important_heads"))
        return cls(heads=heads, **fields)

    def to_vllm_hook(self) -> dict[str, Any]:
        return {
            "model_info": {"model_id": self.model_ids[0] if self.model_ids else None},
            "params": {"important_heads": [list(h) for h in self.heads]},
        }

    def to_qrhead_string(self) -> str:
        return ",".join(f"{layer}-{head}" for layer, head in self.heads)


# ---------------------------------------------------------------------- helpers
_PAIR_LINES = re.compile(r"\[\s+(\d+),\s+(\d+)\s+\]")
_LAYER_HEAD = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "invalid head config: " + "; ".join(problems)


def parse_layer_head(text: str) -> tuple[int, int]:
    match = _LAYER_HEAD.match(text)
    if not match:
        raise HeadConfigError(f"{text!r} is not a 'layer-head' pair such as '13-18'")
    return int(match.group(1)), int(match.group(2))


def parse_layer_head_string(text: str) -> list[tuple[int, int]]:
    return [parse_layer_head(part) for part in text.split(",") if part.strip()]


def is_score_table(data: Any) -> bool:
    """Whether ``data`` is an official per-head score table (``{"layer-head": score}``)."""
    return isinstance(data, Mapping) and bool(data) and all(_LAYER_HEAD.match(str(k)) for k in data)


def preset_dir() -> Any:
    """The folder (an importlib resources ``Traversable``) of the shipped head presets."""
    return resources.files("core_rerank") / "heads"


def preset_names() -> list[str]:
    return sorted(p.name[: -len(".json")] for p in preset_dir().iterdir() if p.name.endswith(".json"))


def _load_preset(name: str) -> HeadConfig:
    data = json.loads((preset_dir() / f"{name}.json").read_text(encoding="utf-8"))
    return HeadConfig.from_dict(data)


def _normalise_model_id(model_id: str) -> str:
    return model_id.strip().rstrip("/").lower()


def find_preset(model_id: str, method: Method = "core") -> HeadConfig | None:
    """The shipped preset whose ``model_ids`` list ``model_id`` (case-insensitive), for ``method``.

    Among several matches the preset without pruning in its name wins.
    """
    wanted = _normalise_model_id(model_id)
    matches = []
    for name in preset_names():
        try:
            config = _load_preset(name)
        except (HeadConfigError, json.JSONDecodeError):  # a stray file must not break lookup
            continue
        ids = {_normalise_model_id(m) for m in config.model_ids}
        # A hub id also matches its bare repository name ("org/name" -> "name").
        ids |= {m.split("/")[-1] for m in ids}
        if config.method == method and (wanted in ids or wanted.split("/")[-1] in ids):
            matches.append(config)
    matches.sort(key=lambda c: ("prune" in (c.name or ""), c.name or ""))
    return matches[0] if matches else None


def resolve_heads(heads: "str | Path | HeadConfig | None", method: str | None, model_ids: Sequence[str]) -> HeadConfig:
    """The head config for a model: explicit, a shipped preset, or all heads for ICR.

    ``method=None`` takes the method of ``heads`` (``"core"`` without heads); a method that
    contradicts the method of the given heads is a ``ValueError``.
    """
    if method is not None and method not in METHODS:
        raise InputError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if heads is not None:
        config = HeadConfig.load(heads)
        if method is not None and method != config.method:
            if method == "icr":
                raise InputError("method='icr' uses every head; do not pass heads= with it")
            raise InputError(
                f"method={method!r} contradicts the heads given, which are {config.method!r} heads"
                f"{f' ({config.name})' if config.name else ''}; pass method={config.method!r} or None"
            )
        return config
    method = method or "core"
    if method == "icr":
        return HeadConfig(method="icr", name="icr-all-heads", provenance={"method": "icr"})
    for model_id in model_ids:
        preset = find_preset(model_id, method)  # type: ignore[arg-type]
        if preset is not None:
            return preset
    raise HeadConfigError(
        f"no shipped {method.upper()} heads for {model_ids[0]!r}. Pass heads= (a preset name, "
        "a JSON file or a HeadConfig), find heads for this model with `core-rerank detect`, "
        "or use method='icr' (all heads, no head selection)"
    )
