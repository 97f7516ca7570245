"""The first-stage order: which order of the candidates the reranker builds its prompts from.

Windows are dealt in first-stage order and ``document_order`` places documents by it
(``core_rerank.windows``), and the heads favour documents by where they sit in the prompt
(docs/results.md "Position calibration"). So with the caller's order as the first stage's, the
same candidates given in another order get other prompts and another ranking. The heads'
``scoring.order_by`` says which order is used:

- ``"input"``: the caller's order, as given (what every release before this setting ran);
- ``"lexical"``: the candidates sorted by a BM25 score of the query's words in each document,
  with term statistics from the candidate list itself (no index needed). The prompts, and so the
  ranking, then depend only on the set of candidates, never on their order.

``first_stage_scores`` (one per document, higher is better), where the caller has them, replace
both: the candidates are sorted by those scores. Ties sort by text, so equal scores do not bring
the input order back. With the heads' ``scoring.first_stage_weight`` above 0 they also enter the
score: ``z(score) + first_stage_weight * z(first-stage score)``, each z-scored over the list
(``fuse``; documents scored ``-inf``, the empty ones, stay ``-inf``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import InputError

ORDER_BY: tuple[str, ...] = ("input", "lexical")
BM25_K1, BM25_B = 1.2, 0.75  # the usual BM25 constants
_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return _WORD.findall(text.lower())


def lexical_scores(query: str, texts: Sequence[str]) -> list[float]:
    """BM25 of ``query`` against each of ``texts``, document frequencies from ``texts`` themselves."""
    documents = [Counter(words(text)) for text in texts]
    lengths = [sum(counts.values()) for counts in documents]
    mean_length = (sum(lengths) / len(lengths)) if lengths and sum(lengths) else 1.0
    frequency = Counter(term for counts in documents for term in counts)
    terms = Counter(words(query))
    scores = []
    for counts, length in zip(documents, lengths):
        total = 0.0
        for term, repeats in terms.items():
            tf = counts.get(term, 0)
            if not tf:
                continue
            idf = math.log(1 + (len(texts) - frequency[term] + 0.5) / (frequency[term] + 0.5))
            norm = tf + BM25_K1 * (1 - BM25_B + BM25_B * length / mean_length)
            total += repeats * idf * tf * (BM25_K1 + 1) / norm
        scores.append(total)
    return scores


def check_first_stage_scores(scores: Any, count: int) -> list[float] | None:
    """``scores`` (any sequence of real numbers: a list, a numpy array, a pandas Series) as floats,
    one per document; ``None`` stays ``None``."""
    if scores is None:
        return None
    if isinstance(scores, (str, bytes, Mapping)) or not isinstance(scores, Iterable):
        raise InputError("first_stage_scores must be a list of numbers, one per document")
    values = list(scores)
    if len(values) != count:
        raise InputError(f"got {len(values)} first_stage_scores for {count} documents")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise InputError(f"first_stage_scores must be finite numbers, got {value!r}")
    return [float(value) for value in values]


def first_stage_permutation(
    query: str, texts: Sequence[str], order_by: str, scores: Sequence[float] | None = None
) -> list[int] | None:
    """Input indices in first-stage order, strongest first; ``None`` for the input order."""
    if scores is None:
        if order_by == "input":
            return None
        if order_by != "lexical":
            raise InputError(f"order_by must be one of {', '.join(ORDER_BY)}, got {order_by!r}")
        scores = lexical_scores(query, texts)
    return sorted(range(len(texts)), key=lambda i: (-scores[i], texts[i]))


def _zscores(values: Sequence[float]) -> list[float]:
    mean = sum(values) / len(values)
    spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / spread if spread > 0 else 0.0 for v in values]


def fuse(scores: dict[Any, list[float]], first_stage: Any, weight: float) -> dict[Any, list[float]]:
    """Each score list fused with ``first_stage`` (see the module docstring); as it is without
    first-stage scores or with ``weight`` 0."""
    if first_stage is None or not weight or not scores:
        return scores
    given = check_first_stage_scores(first_stage, len(next(iter(scores.values())))) or []
    fused = {}
    for name, values in scores.items():
        kept = [i for i, v in enumerate(values) if math.isfinite(v)]
        out = list(values)
        if kept:
            own, theirs = _zscores([values[i] for i in kept]), _zscores([given[i] for i in kept])
            for i, a, b in zip(kept, own, theirs):
                out[i] = a + weight * b
        fused[name] = out
    return fused
