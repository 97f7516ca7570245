"""Settings shared by the framework adapters (LlamaIndex, LangChain) when a reranker is injected.

An adapter built around an existing ``CoReReranker`` (``reranker=``) fills its public fields
from that reranker, so ``to_dict()`` and friends describe what really runs, and refuses
loading settings that contradict it.
"""

from __future__ import annotations

from typing import Any, Mapping


def describe_reranker(reranker: Any) -> dict[str, Any]:
    """The adapter field values that describe ``reranker``."""
    model = getattr(reranker, "model", None)
    config = getattr(model, "config", None)
    described = {
        "heads": getattr(getattr(reranker, "heads", None), "name", None),
        "method": getattr(reranker, "method", None),
        "device": str(reranker.device) if getattr(reranker, "device", None) is not None else None,
        "dtype": str(model.dtype).replace("torch.", "") if getattr(model, "dtype", None) is not None else None,
        "num_layers_to_keep": getattr(config, "num_hidden_layers", None),
        "max_doc_words": getattr(reranker, "max_doc_words", None),
    }
    return {name: value for name, value in described.items() if value is not None}


def check_settings_agree(described: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Loading settings passed next to ``reranker=`` must match it (None and "auto" always do)."""
    conflicts = [
        f"{name}={given[name]!r} (the reranker has {value!r})"
        for name, value in described.items()
        if given.get(name) not in (None, "auto") and str(given[name]) != str(value)
    ]
    if conflicts:
        raise ValueError(
            "CoReRerank got reranker= and loading settings that do not match it: "
            + "; ".join(conflicts) + ". Set them when you build the reranker."
        )


def settings_from_reranker(reranker: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` completed (and checked) with the settings of an injected ``reranker``."""
    described = describe_reranker(reranker)
    check_settings_agree(described, given)
    settings = {**given, **described}
    if getattr(reranker, "model_id", None):
        settings.setdefault("model", reranker.model_id)
    return settings
