"""``RerankerSettings``: how a reranker is built, one type for every path that builds one.

The CLI commands, ``rerank-run`` (in process and on Ray workers), ``eval`` (and its workers),
the server and its Ray Serve replicas, and the framework adapters all turn their options into
this one value and build with :meth:`RerankerSettings.load`. Every field reaches
``CoReReranker.from_pretrained`` as it is: ``None`` is a value (``window_tokens=None`` is one
prompt, ``max_doc_words=None`` is no cut), never "use the default".

:func:`built_settings` reads back, as JSON, the settings of a reranker that was actually built
(its dtype, layers, window size, ...); jobs, eval records and the server report it, so what ran
is on record wherever it ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL


@dataclass(frozen=True)
class RerankerSettings:
    """``CoReReranker.from_pretrained`` options (``model`` is its ``model_name_or_path``), plus
    the torch CPU ``threads`` to set before building (``None``: leave torch's default)."""

    model: str = DEFAULT_MODEL
    heads: Any = None  # preset name, JSON path or HeadConfig; None: the model's preset for the method
    method: str | None = None  # None: the heads' method, else "core"
    num_layers_to_keep: int | str | None = None  # None: as many as the heads need; "all"; or a number
    device: str | None = None  # None: the best available
    dtype: Any = "auto"
    max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS  # None: documents are not cut
    max_length: int | None = None  # None: the model's context, capped
    window_tokens: int | str | None = "auto"  # "auto": the heads' setting; None: one prompt
    document_order: str = "auto"  # "auto": the heads' setting; "first_stage", "reversed", "both", "ends"
    forward: str = "auto"  # "auto": packed on a CPU, sequential elsewhere; "packed"; "sequential"
    threads: int | None = None

    def replace(self, **changes: Any) -> "RerankerSettings":
        return dataclasses.replace(self, **changes)

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Every loading option, ``None`` included (``threads`` is not one)."""
        kwargs = {name: getattr(self, name) for name in LOADING_FIELDS}
        kwargs["model_name_or_path"] = kwargs.pop("model")
        return kwargs

    def load(self) -> Any:
        """Set torch's threads (when given), then build the reranker (only the layers it needs)."""
        from .reranker import CoReReranker

        if self.threads:
            import torch

            torch.set_num_threads(int(self.threads))
        return CoReReranker.from_pretrained(**self.from_pretrained_kwargs())

    def fingerprint(self) -> dict[str, Any]:
        """What decides the scores, as JSON values (not device or threads: a restart may change
        those). ``dtype="auto"`` is recorded as the dtype it gives on a CPU, which depends on the
        CPU (bfloat16 where it is native): a job resumed on another machine must not mix dtypes."""
        values = {name: json_value(getattr(self, name)) for name in LOADING_FIELDS if name not in ("device", "model")}
        values["dtype"] = self.cpu_dtype() or values["dtype"]
        for name in ("document_order", "forward"):  # as before these settings existed: older jobs still resume
            if values[name] == "auto":
                del values[name]
        return dict(sorted(values.items())) | {"model_name_or_path": self.model}

    def cpu_dtype(self) -> str | None:
        """The dtype name ``dtype="auto"`` resolves to when the device is the CPU, else ``None``."""
        if self.dtype not in (None, "auto") or (self.device is not None and str(self.device) != "cpu"):
            return None
        from .loading import resolve_device, resolve_dtype

        device = resolve_device(self.device)
        return str(resolve_dtype(self.dtype, device)).removeprefix("torch.") if device.type == "cpu" else None

    def method_name(self) -> str:
        """The scoring method without loading the model: ``method``, else the heads', else core."""
        if self.method:
            return str(self.method)
        if self.heads is not None:
            from .head_config import HeadConfig

            return str(HeadConfig.load(self.heads).method)
        return "core"

    @classmethod
    def of(cls, reranker: Any) -> "RerankerSettings":
        """The settings that describe a built reranker (what ``from_reranker`` hands on)."""
        built = reranker.settings()
        return cls(**{name: built[name] for name in LOADING_FIELDS if name in built})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "RerankerSettings":
        """From a mapping of field names (``model_name_or_path`` is read as ``model``); an
        unknown name is a ``TypeError`` naming it, so a misspelt option never goes unnoticed."""
        data = dict(values)
        if "model_name_or_path" in data:
            data["model"] = data.pop("model_name_or_path")
        unknown = sorted(set(data) - set(FIELDS))
        if unknown:
            raise InputError(f"unknown reranker settings: {', '.join(unknown)} (known: {', '.join(FIELDS)})")
        return cls(**data)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RerankerSettings))
LOADING_FIELDS: tuple[str, ...] = tuple(name for name in FIELDS if name != "threads")


def json_value(value: Any) -> Any:
    """A setting as JSON: a ``HeadConfig`` as its name (or its dict when unnamed)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "to_dict") and hasattr(value, "heads"):
        return value.name or value.to_dict()
    return str(value)


def built_settings(reranker: Any) -> dict[str, Any]:
    """What a built reranker actually runs with, as JSON: model, heads (name, method, pairs),
    method, device, dtype, layers built, max_doc_words, max_length, window_tokens, document_order,
    forward."""
    built = dict(reranker.settings())
    heads = built.pop("heads")
    built["heads"] = {"name": heads.name, "method": heads.method, "heads": [list(p) for p in heads.heads]}
    return {key: json_value(value) if key != "heads" else value for key, value in built.items()}
