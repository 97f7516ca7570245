"""What the framework adapters share: the fields that load the model, loading it once from
them, handing an already-built reranker to the constructor (``from_reranker``), and the
first-stage scores they read off their documents (``first_stage_argument``)."""

from __future__ import annotations

import math
import numbers
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .errors import InputError
from .settings import LOADING_FIELDS, RerankerSettings

LOADING_SETTINGS = LOADING_FIELDS
"""Adapter fields that say how the model is loaded (``RerankerSettings``' loading fields);
``from_reranker`` takes them from the reranker."""

_LOAD_LOCK = threading.Lock()
# The reranker from_reranker hands to __init__ (so that no settings-plus-reranker argument exists).
_GIVEN_RERANKER: ContextVar[Any] = ContextVar("core_rerank_given_reranker", default=None)


def given_reranker() -> Any:
    """The reranker ``from_reranker`` is handing to the constructor now, else ``None``."""
    return _GIVEN_RERANKER.get()


@contextmanager
def handing_over(reranker: Any, settings: Mapping[str, Any], owner: str) -> Iterator[dict[str, Any]]:
    """Inside ``from_reranker``: check the arguments, yield the loading settings that describe
    ``reranker`` and make it the constructor's ``given_reranker()`` meanwhile. ``owner`` names
    the adapter in error messages ("postprocessor", "compressor", "ranker", "transformer")."""
    if not callable(getattr(reranker, "rerank", None)):
        raise InputError("reranker must be a core_rerank.CoReReranker (with .rerank(query, documents))")
    loading = sorted(set(settings) & set(LOADING_SETTINGS))
    if loading:
        raise InputError(
            f"from_reranker() takes the {owner}'s own settings; {', '.join(loading)} belong to "
            "the reranker: set them in CoReReranker.from_pretrained(...)"
        )
    token = _GIVEN_RERANKER.set(reranker)
    try:
        yield {name: getattr(RerankerSettings.of(reranker), name) for name in LOADING_SETTINGS}
    finally:
        _GIVEN_RERANKER.reset(token)


def assign_loading_settings(adapter: Any, given: Mapping[str, Any], owner: str) -> None:
    """For adapters that are plain classes (Haystack, PyTerrier): set every loading setting as
    an attribute, from ``given`` where it is there, else ``RerankerSettings``' default (the
    ``from_pretrained`` default), so a setting added to the core later reaches them too. An
    unknown name is a ``TypeError`` naming it (``owner``: the class, for the message)."""
    unknown = sorted(set(given) - set(LOADING_SETTINGS))
    if unknown:
        raise TypeError(f"{owner}() got unexpected keyword argument(s): {', '.join(unknown)}")
    defaults = RerankerSettings()
    for name in LOADING_SETTINGS:
        setattr(adapter, name, given[name] if name in given else getattr(defaults, name))


def load_reranker(adapter: Any) -> Any:
    """A ``CoReReranker`` built from the adapter's loading fields (every value as given)."""
    return RerankerSettings(**{name: getattr(adapter, name) for name in LOADING_SETTINGS}).load()


def loaded_reranker(adapter: Any) -> Any:
    """The adapter's reranker, loaded again from its fields if missing (e.g. after unpickling)."""
    if getattr(adapter, "_reranker", None) is None:
        with _LOAD_LOCK:
            if getattr(adapter, "_reranker", None) is None:
                adapter._reranker = load_reranker(adapter)
    return adapter._reranker


def first_stage_argument(scores: Sequence[Any] | None, owner: str) -> dict[str, Any]:
    """``rerank``'s ``first_stage_scores`` keyword from the scores an adapter read off its
    documents (one each, higher is better): ``{}`` when the option is off (``scores`` is
    ``None``), and also when any document has no score (``None`` or NaN): then the whole call
    keeps the heads' order (``scoring.order_by``) and a ``UserWarning`` says so. A value that
    is not a number is the core's ``InputError``. ``owner`` names the adapter in the warning."""
    if scores is None:
        return {}
    values = list(scores)
    missing = sum(1 for v in values if v is None or (isinstance(v, numbers.Real) and math.isnan(v)))
    if missing:
        warnings.warn(
            f"{owner}: {missing} of {len(values)} documents have no first-stage score, so this call "
            "orders the prompts as without use_first_stage_scores",
            UserWarning,
            stacklevel=3,
        )
        return {}
    return {"first_stage_scores": values}
