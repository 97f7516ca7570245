"""``RerankResult``: one reranked document, and the names its two scores go by."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class RerankResult:
    """One reranked document. ``index`` is its position in the input list.

    ``score`` is the raw listwise score (calibrated attention mass; ``-inf`` for an empty
    document): it is the number frameworks get as their own score field, and ``raw_score`` in
    every dict and over HTTP. ``relevance_score`` is the same list mapped to [0, 1] by min-max
    over every document of the call (``scoring.relevance_scores``), as over HTTP.
    ``relevant_spans`` (with ``rerank(relevant_spans=...)``, else ``None``): ``[{"start", "end",
    "score"}]`` best first, end-exclusive character offsets into ``text`` (``core_rerank.spans``).
    """

    index: int
    score: float
    text: str
    doc_id: Any = None
    relevance_score: float = 0.0
    relevant_spans: list[dict[str, Any]] | None = None

    @property
    def raw_score(self) -> float:
        return self.score

    def to_dict(self) -> dict[str, Any]:
        """``{"index", "doc_id", "text", "raw_score", "relevance_score"}`` (and
        ``"relevant_spans"`` when they were asked for)."""
        data = asdict(self)
        if self.relevant_spans is None:
            del data["relevant_spans"]
        data["raw_score"] = data.pop("score")
        return data
