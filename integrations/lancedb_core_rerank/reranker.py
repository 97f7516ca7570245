"""``CoReReranker``: a LanceDB ``Reranker`` over ``core_rerank.CoReReranker``."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from lancedb.rerankers import Reranker

from core_rerank import adapters
from core_rerank.adapters import first_stage_argument, handing_over, loaded_reranker
from core_rerank.errors import InputError
from core_rerank.utils import DEFAULT_MODEL

RELEVANCE = "_relevance_score"
DEFAULT_MAX_DOCUMENTS = 1000  # as the server's --max-documents and Cohere
RRF_K = 60  # reciprocal rank fusion's constant, as LanceDB's RRFReranker


class CoReReranker(Reranker):
    """Reranks LanceDB search results with CoRe attention heads of a local LLM (arXiv 2510.02219).

    The rows LanceDB hands over go, in the order it hands them over, into one listwise
    ``core_rerank.CoReReranker.rerank`` call on their ``column`` text; they come back best first
    with a float32 ``_relevance_score``: the core's raw listwise score (relative within one
    search, not a probability; ``-inf`` for a row whose text is empty or null). Hybrid search
    merges the vector and full-text rows first, as LanceDB's own rerankers do (vector rows, then
    the full-text rows not among them, one copy per ``_rowid``). ``return_score="relevance"``
    drops ``_distance`` and ``_score``; ``"all"`` keeps them.

    ``use_first_stage_scores=True`` orders the prompts by the search's own scores instead of the
    order of the rows (``core_rerank.first_stage``; in the score only with ``first_stage_weight`` > 0): a
    row's ``_relevance_score`` (a table reranked before), else its full-text ``_score``, else its
    vector ``_distance`` negated (lower is better); for a hybrid search, the reciprocal rank
    fusion (k=60) of the row's vector rank and full-text rank. When any row has no score (a
    null), the whole search keeps the heads' order, with a ``UserWarning``.

    The limit trap: for vector and full-text queries LanceDB runs the query with ``.limit(n)``
    and hands only those ``n`` rows to the reranker, whose order is final. Set ``limit`` to the
    candidate depth you want reranked (e.g. 30), then keep the top rows yourself. A hybrid query
    fetches ``limit`` rows from each leg, reranks the merged rows (up to ``2 * limit``) and cuts
    them to ``limit`` afterwards. The async query API calls this (synchronous) reranker inside
    the event loop: run such searches in a thread (``asyncio.to_thread``) if the loop must stay
    responsive.

    Example::

        import lancedb
        from lancedb_core_rerank import CoReReranker

        reranker = CoReReranker(model="smollm2-135m-instruct", column="text")
        table = lancedb.connect("./db").open_table("docs")
        hits = table.search(query_type="hybrid").vector(query_vector).text(query).limit(20).rerank(reranker).to_list()
    """

    model: str  # the loading settings (core_rerank.adapters.LOADING_SETTINGS), set in __init__

    def __init__(
        self,
        model: str | None = None,
        column: str = "text",
        return_score: str = "relevance",
        *,
        reranker: Any = None,
        max_documents: int | None = DEFAULT_MAX_DOCUMENTS,
        use_first_stage_scores: bool = False,
        **settings: Any,
    ) -> None:
        """``model`` and ``settings`` (any name of ``core_rerank.adapters.LOADING_SETTINGS``:
        ``heads``, ``method``, ``device``, ``dtype``, ``max_doc_words``, ``window_tokens``, ...)
        load the model once, here, as in the other adapters (``model`` defaults to
        ``smollm2-135m-instruct``). Or hand over an already-loaded ``core_rerank.CoReReranker``
        as ``reranker=`` (then no loading setting may be given: they are read from it).
        ``column``: the column holding each row's text. ``max_documents``: more rows than this
        in one search is an ``InputError`` before anything is scored (``None``: no cap).
        ``use_first_stage_scores``: order the prompts by the search's scores (see the class)."""
        super().__init__(return_score)
        if not isinstance(column, str) or not column:
            raise InputError(f"column must be the name of the text column, got {column!r}")
        if max_documents is not None and (not isinstance(max_documents, int) or max_documents < 1):
            raise InputError(f"max_documents must be a number >= 1 or None, got {max_documents!r}")
        self.column = column
        self.max_documents = max_documents
        self.use_first_stage_scores = use_first_stage_scores
        if reranker is not None:
            given = {**settings, **({} if model is None else {"model": model})}
            with handing_over(reranker, given, "reranker") as described:
                adapters.assign_loading_settings(self, described, "CoReReranker")
            self._reranker: Any = reranker
        else:
            adapters.assign_loading_settings(self, {**settings, "model": model or DEFAULT_MODEL}, "CoReReranker")
            self._reranker = None
            loaded_reranker(self)  # the model is loaded once, here, never per search

    @classmethod
    def from_reranker(cls, reranker: Any, **settings: Any) -> CoReReranker:
        """``CoReReranker(reranker=reranker, **settings)``, as the other adapters spell it."""
        return cls(reranker=reranker, **settings)

    @property
    def reranker(self) -> Any:
        """The underlying ``core_rerank.CoReReranker`` (share it with other components)."""
        return loaded_reranker(self)

    def __str__(self) -> str:
        return f"CoReReranker(model={self.model!r}, column={self.column!r})"

    __repr__ = __str__

    # ------------------------------------------------------------------ LanceDB's entry points
    def rerank_vector(self, query: str, vector_results: pa.Table) -> pa.Table:
        """The rows of a vector search (``.rerank(reranker, query_string=...)``), best first."""
        return self._keep_relevance_score(self._ranked(query, vector_results, self._first_stage(vector_results)))

    def rerank_fts(self, query: str, fts_results: pa.Table) -> pa.Table:
        """The rows of a full-text search, best first."""
        return self._keep_relevance_score(self._ranked(query, fts_results, self._first_stage(fts_results)))

    def rerank_hybrid(self, query: str, vector_results: pa.Table, fts_results: pa.Table) -> pa.Table:
        """The vector and full-text rows merged (vector rows first, one copy per ``_rowid``), best first."""
        merged = self._merged(vector_results, fts_results)
        fused = _fused(vector_results, fts_results, merged) if self.use_first_stage_scores else None
        return self._keep_relevance_score(self._ranked(query, merged, fused))

    # ------------------------------------------------------------------ internals
    def _merged(self, vector_results: pa.Table, fts_results: pa.Table) -> pa.Table:
        """LanceDB's own merge: ``merge_results`` (first copy kept), or with ``return_score="all"``
        ``_merge_and_keep_scores`` (a row found by both keeps its ``_distance`` and ``_score``)."""
        if not vector_results.num_rows and not fts_results.num_rows:
            return pa.concat_tables([vector_results, fts_results], **self._concat_tables_args)
        if self.score == "all":
            return self._merge_and_keep_scores(vector_results, fts_results)
        return self.merge_results(vector_results, fts_results)

    def _first_stage(self, results: pa.Table) -> list[Any] | None:
        return _row_scores(results) if self.use_first_stage_scores else None

    def _ranked(self, query: str, results: pa.Table, first_stage: list[Any] | None = None) -> pa.Table:
        """``results`` reordered best first with a float32 ``_relevance_score``; every check runs
        before anything is scored (an error leaves nothing half done). ``first_stage``: each
        row's first-stage score (``None`` where missing), or ``None`` (off)."""
        if not isinstance(query, str) or not query.strip():
            raise InputError(
                "CoReReranker needs the query text: for a vector search pass it as .rerank(reranker, query_string=...)"
            )
        if RELEVANCE in results.column_names:  # a reranked table reranked again
            results = results.drop_columns([RELEVANCE])
        texts = self._texts(results)
        if not texts:
            return self._handle_empty_results(results)
        ranked = self.reranker.rerank(query, texts, **first_stage_argument(first_stage, str(self)))
        order = [r.index for r in ranked]
        return results.take(pa.array(order, type=pa.int64())).append_column(
            RELEVANCE, pa.array([r.score for r in ranked], type=pa.float32())
        )

    def _texts(self, results: pa.Table) -> list[str]:
        """The text column as strings (a null cell is empty text), checked."""
        if self.column not in results.column_names:
            raise InputError(
                f"the search results have no column {self.column!r} (they have {', '.join(results.column_names)}): "
                "pass CoReReranker(column=...) the column that holds the text, and keep it in any .select([...])"
            )
        kind = results.schema.field(self.column).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
            raise InputError(
                f"column {self.column!r} holds {kind}, not text: CoReReranker(column=...) must name a string column"
            )
        if self.max_documents is not None and results.num_rows > self.max_documents:
            raise InputError(
                f"{results.num_rows} rows to rerank, more than max_documents={self.max_documents}: "
                "lower the search's .limit(...) or raise CoReReranker(max_documents=...)"
            )
        return ["" if text is None else text for text in results.column(self.column).to_pylist()]


def _row_scores(results: pa.Table) -> list[Any]:
    """Each row's first-stage score, higher is better (``None`` where null): ``_relevance_score``,
    else ``_score`` (full text), else ``_distance`` negated (vector); all ``None`` without any."""
    for name, sign in ((RELEVANCE, 1.0), ("_score", 1.0), ("_distance", -1.0)):
        if name in results.column_names:
            return [None if v is None else sign * v for v in results.column(name).to_pylist()]
    return [None] * results.num_rows


def _fused(vector_results: pa.Table, fts_results: pa.Table, merged: pa.Table) -> list[Any]:
    """The merged hybrid rows' first-stage scores: the sum over the two legs of ``1 / (RRF_K +
    rank)``, each leg ranked by its own score (``_row_scores``), matched by ``_rowid``; ``None``
    for a row found in neither leg with a score."""
    fused: dict[Any, float] = {}
    for leg in (vector_results, fts_results):
        if not leg.num_rows or "_rowid" not in leg.column_names:
            continue
        scores, rowids = _row_scores(leg), leg.column("_rowid").to_pylist()
        ranked = sorted((i for i, v in enumerate(scores) if v is not None), key=lambda i: -scores[i])
        for rank, i in enumerate(ranked, start=1):
            fused[rowids[i]] = fused.get(rowids[i], 0.0) + 1.0 / (RRF_K + rank)
    if "_rowid" not in merged.column_names:
        return [None] * merged.num_rows
    return [fused.get(rowid) for rowid in merged.column("_rowid").to_pylist()]
