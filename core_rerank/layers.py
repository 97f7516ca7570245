"""How many decoder layers a reranker builds: the one rule, and where pruning records the original.

``CoReReranker.from_pretrained`` and the evaluation report both ask here.
"""

from __future__ import annotations

import operator
from typing import Any

from .errors import HeadConfigError, InputError

ORIGINAL_LAYERS_ATTR = "core_rerank_original_num_hidden_layers"
"""Where pruning at load (``core_rerank.loading``) records a config's layer count before pruning."""


def original_num_layers(config: Any) -> int:
    """The model's layer count before core-rerank pruned it (pruning records the original)."""
    return getattr(config, ORIGINAL_LAYERS_ATTR, None) or config.num_hidden_layers


def layers_to_build(heads: Any, num_layers_to_keep: "int | str | None", num_hidden_layers: int) -> int:
    """How many leading decoder layers a reranker with ``heads`` (a ``HeadConfig``) builds.

    ``num_layers_to_keep``: ``None`` as many as the heads need (``heads.num_layers_needed``);
    ``"all"`` every layer (a model that should also generate text); an int that many,
    which must keep every selected head.
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
        raise InputError(
            "num_layers_to_keep must be an int, None (as many layers as the heads need) "
            f"or 'all' (every layer), got {num_layers_to_keep!r}"
        ) from None
    if not 1 <= keep <= num_hidden_layers:
        raise InputError(f"num_layers_to_keep must be between 1 and {num_hidden_layers}, got {keep}")
    if heads.deepest_layer is not None and keep < heads.deepest_layer + 1:
        raise HeadConfigError(
            f"num_layers_to_keep={keep} drops layer {heads.deepest_layer}, which holds a "
            f"selected head; keep at least {heads.deepest_layer + 1} layers"
        )
    return keep
