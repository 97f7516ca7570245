"""Model loading: hub id, local directory, GGUF file or registered offline name, pruned at load.

Pruning overrides ``num_hidden_layers`` when the model is built, so transformers creates and
loads only the leading decoder layers: the dropped layers cost no memory and no load time.
The original layer count is kept on the config (``layers.ORIGINAL_LAYERS_ATTR``)
so head configs can still be validated against the full model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cpu_features, offline_models
from .errors import InputError
from .layers import ORIGINAL_LAYERS_ATTR

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
    """``"auto"``: bfloat16 on a GPU that supports it, float16 on other GPUs; on a CPU,
    bfloat16 where the CPU multiplies it natively (AVX512-BF16 or AMX, see
    ``core_rerank.cpu_features``), else float32.

    Why bfloat16 on such CPUs: about twice as fast, and on training data (SciFact train and
    NQ-open) SmolLM2 CoRe-R's nDCG@10 stayed within 0.5 of float32 (docs/results.md,
    "bfloat16 on CPU"). Pass ``"float32"`` to reproduce float32 scores exactly.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "mps":
            return torch.float16
        return torch.bfloat16 if device.type == "cpu" and cpu_features.has_native_bf16() else torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; use 'auto', 'bfloat16', 'float16' or 'float32'")
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
    lm_head: bool = True,
    **kwargs: Any,
) -> Any:
    """Build and load only the first ``num_layers`` decoder layers (``None``: all of them).

    Without ``lm_head`` the decoder alone is built (``AutoModel``): reranking never reads the
    output projection, which is 0.5 B parameters on Llama-3.1-8B. The weights of dropped layers
    and of the LM head stay on disk: safetensors are memory-mapped and only kept tensors read.
    """
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM

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
        model = (AutoModelForCausalLM if lm_head else AutoModel).from_pretrained(source.path, **load_kwargs)
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
