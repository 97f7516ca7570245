"""``CoReReRanker``: a PyTerrier transformer over ``core_rerank.CoReReranker``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyterrier as pt
from pyterrier.model import add_ranks

from core_rerank import adapters
from core_rerank.adapters import first_stage_argument, given_reranker, handing_over, load_reranker, loaded_reranker
from core_rerank.head_config import HeadConfig
from core_rerank.spans import spans_argument, spans_within
from core_rerank.utils import DEFAULT_MAX_DOC_WORDS, DEFAULT_MODEL

QUERY_COLUMNS = ("qid", "query", "docno")


class CoReReRanker(pt.Transformer):
    """Reranks each query's candidates with CoRe attention heads of a local LLM (arXiv 2510.02219).

    Input: a result frame with ``qid``, ``query``, ``docno`` and the text column (``text_field``,
    e.g. added by ``pt.text.get_text(dataset, "text")``). Each query's rows go into one
    listwise ``CoReReranker.rerank`` call. Output: the same rows (every other column kept) with
    ``score`` (the core's raw listwise score; ``-inf`` for a row without text) and a 0-based
    ``rank`` per ``qid``, sorted by ``qid`` then ``rank``. Any ``score``/``rank`` already in the
    input (the first stage's) is replaced; ties keep the input order.

    The model is loaded once, in the constructor, from the loading settings; share an
    already-built reranker with ``CoReReRanker.from_reranker(reranker)``.

    Example::

        import pyterrier as pt
        from pyterrier_core_rerank import CoReReRanker

        pipeline = (bm25 % 20) >> pt.text.get_text(dataset, "text") >> CoReReRanker("smollm2-135m-instruct")
        pt.Experiment([bm25, pipeline], topics, qrels, [pt.measures.nDCG @ 10], baseline=0)
    """

    model: str  # the loading settings (core_rerank.adapters.LOADING_SETTINGS), set in __init__
    heads: Any
    method: str | None

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        heads: str | HeadConfig | None = None,
        method: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        num_layers_to_keep: int | str | None = None,
        max_doc_words: int | None = DEFAULT_MAX_DOC_WORDS,
        window_tokens: int | str | None = "auto",
        text_field: str = "text",
        title_field: str | None = None,
        verbose: bool = False,
        relevant_spans: bool | dict[str, Any] | None = None,
        use_first_stage_scores: bool = False,
        **loading_settings: Any,
    ) -> None:
        """``model`` … ``window_tokens`` (and any further name of
        ``core_rerank.adapters.LOADING_SETTINGS``) load the model as in the other adapters.
        ``text_field``: the column holding each document's text. ``title_field``: an optional
        column with a title, read before the text as the core reads ``{"title", "text"}``
        (BEIR style); ``None``: the text alone. ``verbose``: a progress bar over queries.
        ``relevant_spans``: ``True`` or span settings (``core_rerank.spans``) add a
        ``relevant_spans`` column: per row ``[{start, end, score}]`` best first, character
        offsets into the ``text_field`` text. ``use_first_stage_scores``: order each query's
        prompts by the input's ``score`` column (the first stage's, higher is better; the column
        is then required) instead of the rows' order (``core_rerank.first_stage``); it enters the
        score only with the heads' ``scoring.first_stage_weight`` > 0. A query with a missing
        (NaN) score in any row keeps the heads' order, with a ``UserWarning``."""
        if "reranker" in loading_settings:
            raise TypeError("CoReReRanker(reranker=...) does not exist: use CoReReRanker.from_reranker(reranker)")
        explicit = dict(
            model=model,
            heads=heads,
            method=method,
            device=device,
            dtype=dtype,
            num_layers_to_keep=num_layers_to_keep,
            max_doc_words=max_doc_words,
            window_tokens=window_tokens,
        )
        adapters.assign_loading_settings(self, {**loading_settings, **explicit}, "CoReReRanker")
        self.text_field = text_field
        self.title_field = title_field
        self.verbose = verbose
        self.relevant_spans = relevant_spans
        self.use_first_stage_scores = use_first_stage_scores
        given = given_reranker()
        # The model is loaded once, here (unless from_reranker hands one over), never per call.
        self._reranker: Any = given if given is not None else load_reranker(self)

    @classmethod
    def from_reranker(cls, reranker: Any, **settings: Any) -> CoReReRanker:
        """A transformer around an already-built ``core_rerank.CoReReranker`` (nothing is loaded).

        ``settings`` are the transformer's own (``text_field``, ``title_field``, ``verbose``,
        ``relevant_spans``, ``use_first_stage_scores``); the loading settings are taken from the reranker (``CoReReranker.settings()``)."""
        with handing_over(reranker, settings, "transformer") as described:
            return cls(**described, **settings)

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (share it with other components)."""
        return loaded_reranker(self)

    def __repr__(self) -> str:
        method = self.method or (self.heads.method if isinstance(self.heads, HeadConfig) else None) or "core"
        return f"CoReReRanker(model={self.model!r}, method={method!r})"

    __str__ = __repr__

    def _required(self) -> list[str]:
        optional = [self.title_field] if self.title_field else []
        return [*QUERY_COLUMNS, self.text_field, *optional] + (["score"] if self.use_first_stage_scores else [])

    def _check_columns(self, columns: Iterable[str]) -> None:
        missing = [c for c in self._required() if c not in set(columns)]
        if missing:
            raise ValueError(
                f"CoReReRanker needs the columns {self._required()}; missing: {missing} "
                f"(add the text with pt.text.get_text(dataset, {self.text_field!r}))"
            )

    def transform_outputs(self, input_columns: list[str]) -> list[str]:
        """The output columns for these input columns (``pt.inspect``); checks them first."""
        self._check_columns(input_columns)
        spans = ["relevant_spans"] if self.relevant_spans else []
        return [c for c in input_columns if c not in ("score", "rank", *spans)] + [*spans, "score", "rank"]

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        """Score every query's rows in one listwise call; returns them with ``score`` and ``rank``."""
        self._check_columns(inp.columns)
        first_stage = inp["score"].to_numpy() if self.use_first_stage_scores else None
        out = inp.drop(columns=["score", "rank", "relevant_spans"], errors="ignore").reset_index(drop=True)
        scores = np.full(len(out), -np.inf, dtype="float64")
        spans: list[Any] = [[] for _ in range(len(out))]
        groups: Iterable[tuple[Any, pd.DataFrame]] = out.groupby("qid", sort=False)
        if self.verbose:
            groups = pt.tqdm(groups, desc=str(self), unit="q", total=out["qid"].nunique())
        for _, rows in groups:
            documents, positions = self._documents(rows), rows.index.to_numpy()
            first = first_stage_argument(None if first_stage is None else first_stage[positions], str(self))
            spans_wanted = spans_argument(self.relevant_spans)
            results = self.reranker.rerank(rows["query"].iloc[0], documents, **spans_wanted, **first)
            for result in results:
                scores[positions[result.index]] = result.score
                if result.relevant_spans is not None:
                    text = _text(rows[self.text_field].iloc[result.index])
                    spans[positions[result.index]] = spans_within(result.relevant_spans, result.text, text)
        if self.relevant_spans:
            out["relevant_spans"] = spans
        out["score"] = scores
        with warnings.catch_warnings():  # add_ranks uses drop(inplace=True), which pandas 3.1 deprecates
            warnings.filterwarnings("ignore", message="The inplace keyword", category=DeprecationWarning)
            out = add_ranks(out)
        return out.sort_values(["qid", "rank"], kind="stable").reset_index(drop=True)

    def _documents(self, rows: pd.DataFrame) -> list[Any]:
        texts = [_text(value) for value in rows[self.text_field]]
        if not self.title_field:
            return texts
        titles = [_text(value) for value in rows[self.title_field]]
        return [{"title": title, "text": text} for title, text in zip(titles, texts)]


def _text(value: Any) -> str:
    """A cell as text: missing values (None, NaN) are empty."""
    if isinstance(value, str):
        return value
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)
