"""Model loading: hub id, local directory, GGUF file or registered offline name, pruned at load.

Pruning overrides ``num_hidden_layers`` when the model is built, so transformers creates and
loads only the leading decoder layers: the dropped layers cost no memory and no load time.
The original layer count is kept on the config as ``core_rerank_original_num_hidden_layers``
so head configs can still be validated against the full model.
"""

from __future__ import annotations

import logging
import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import offline_models
from .head_config import HeadConfig, HeadConfigError

ORIGINAL_LAYERS_ATTR = "core_rerank_original_num_hidden_layers"
_DTYPES = {
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from, in the form ``from_pretrained`` takes."""

    path: str
    gguf_file: str | None
    model_ids: tuple[str, ...]  # names that identify the model (for head presets)

    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve_source(model_name_or_path: str, fetch: bool = True) -> ModelSource:
    """Turn a user's model argument into a loadable source."""
    text = str(model_name_or_path)
    if offline_models.is_registered(text):
        entry = offline_models.REGISTRY[text.lower()]
        if not offline_models.is_fetched(text) and not fetch:
            raise FileNotFoundError(f"{text} is not fetched yet: run `core-rerank models fetch {text}`")
        path = offline_models.fetch(text)
        return ModelSource(str(path), None, (entry.name, entry.hub_id))
    path = Path(text).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return ModelSource(str(path.parent), path.name, (path.stem, text))
    if path.is_dir():
        return ModelSource(str(path), None, (path.name, text))
    return ModelSource(text, None, (text,))


def resolve_device(device: Any = None) -> Any:
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: Any, device: Any) -> Any:
    """``"auto"``: bfloat16 on a GPU that supports it, float16 on other GPUs, float32 on CPU."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
    return getattr(torch, _DTYPES[key])


def load_config(source: ModelSource, **hub_kwargs: Any) -> Any:
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source.path, **source.kwargs(), **hub_kwargs)


def load_tokenizer(source: ModelSource, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source.path, **source.kwargs(), **kwargs)


def load_model(
    source: ModelSource,
    num_layers: int | None,
    full_num_layers: int,
    device: Any,
    dtype: Any,
    device_map: Any = None,
    **kwargs: Any,
) -> Any:
    """Build and load only the first ``num_layers`` decoder layers (``None``: all of them)."""
    import transformers
    from transformers import AutoModelForCausalLM

    load_kwargs = dict(source.kwargs(), dtype=dtype, **kwargs)
    if num_layers is not None and num_layers < full_num_layers:
        load_kwargs["num_hidden_layers"] = num_layers
    if device_map is not None:
        load_kwargs["device_map"] = device_map
    # The weights of dropped layers are reported as "unexpected"; that is the point of pruning.
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()  # a 0.2 s load needs no progress bar
    try:
        model = AutoModelForCausalLM.from_pretrained(source.path, **load_kwargs)
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if device_map is None:
        model.to(device)
    model.eval()
    setattr(model.config, ORIGINAL_LAYERS_ATTR, full_num_layers)
    logging.getLogger(__name__).info(
        "loaded %s with %d of %d layers", source.path, model.config.num_hidden_layers, full_num_layers
    )
    return model


def num_layers_to_build(num_layers_to_keep: "int | str | None", num_hidden_layers: int, heads: HeadConfig) -> int:
    """How many leading decoder layers to build for a head config (``heads``).

    ``None``: as many as the heads need (``heads.num_layers_needed``); ``"all"``: every layer
    (a model that should also generate text); an int: that many, which must keep every
    selected head.
    """
    if num_layers_to_keep is None:
        return heads.num_layers_needed(num_hidden_layers)
    if isinstance(num_layers_to_keep, str) and num_layers_to_keep.strip().lower() == "all":
        return num_hidden_layers
    try:
        if isinstance(num_layers_to_keep, (bool, str)):
            raise TypeError
        keep = operator.index(num_layers_to_keep)
    except TypeError:
        raise ValueError(
            "num_layers_to_keep must be an int, None (as many layers as the heads need) "
            f"or 'all' (every layer), got {num_layers_to_keep!r}"
        ) from None
    if not 1 <= keep <= num_hidden_layers:
        raise ValueError(f"num_layers_to_keep must be between 1 and {num_hidden_layers}, got {keep}")
    if heads.deepest_layer is not None and keep < heads.deepest_layer + 1:
        raise HeadConfigError(
            f"num_layers_to_keep={keep} drops layer {heads.deepest_layer}, which holds a "
            f"selected head; keep at least {heads.deepest_layer + 1} layers"
        )
    return keep
