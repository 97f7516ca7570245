"""Evidence spans: where in each document the query's evidence is, from the ranking's own pass.

The forward pass that ranks already gives a calibrated score ``c_j`` to every document token
(method.md section 1). Summed per document they rank; kept per token they locate. This module
turns them into spans of the caller's text, with no extra forward pass:

1. tokens -> words: each token's score goes to the whitespace word holding its last character
   (character offsets come from the one tokenization pass, ``PreparedPrompt.token_offsets``);
   with ``document_order="both"`` a document's two prompts are averaged word by word;
2. words -> units: sentences (a ``.``/``!``/``?`` word before a capital or digit, or a line
   break in the text as given; sentences over ``MAX_UNIT_WORDS`` are cut in even pieces);
3. units -> spans: each unit's score is its attention (sum of its words) plus ``LEXICAL_WEIGHT``
   times its share of the query's content words (both relative to the document's best unit),
   plus, where those are above 0, ``ANSWER_WEIGHT`` times its density of answer-like words
   (:func:`answer_words`: words that are not the query's and look like what the query asks
   for, a date for "when", a number for "how many", a name for "who"/"where", else a number or
   a name; chosen on training data, docs/results.md "Evidence spans"); a span's ``score`` is
   its unit score over the document's best, in [0, 1]. Spans at or above ``threshold`` are
   kept, best first, at most ``max_spans``.

Offsets are end-exclusive character offsets into ``RerankResult.text``: the string as given for
a string document, ``title + " " + text`` for a ``{"text", "title"}`` mapping (what is prompted;
a title's offsets come first). The prompt sees each document whitespace-normalised and cut to
``max_doc_words`` words: spans are mapped back to the text as given, and a cut document gets
spans only in its scored part (its first ``max_doc_words`` words, or fewer if the prompt budget
cut it by tokens). An empty document gets no spans.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from .errors import InputError

UNITS: tuple[str, ...] = ("sentence", "word")
MAX_UNIT_WORDS = 40
LEXICAL_WEIGHT = 0.5  # chosen on NQ-open and SciFact train (scripts/span_study.py; 0-2 were within noise)
ANSWER_WEIGHT = 5.0  # per answer-like word per unit word; chosen on NQ-open, checked on SciFact train
_ABBREVIATIONS = frozenset("al e.g i.e etc vs fig figs dr mr mrs ms st no approx ca cf".split())
_STOPWORDS = frozenset(
    "a an and are as at be by did do does for from had has have how in is it its of on or that the "
    "their there this to was were what when where which who whom whose why will with".split()
)
_MONTHS = frozenset("january february march april may june july august september october november december".split())
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve hundred thousand million billion "
    "first second third".split()
)
_ASKS = (  # what a query asks for, by its question words (first match wins; none: "any")
    ("date", re.compile(r"\b(when|what year|which year|what date|how long ago)\b")),
    ("number", re.compile(r"\bhow (many|much|long|old|far|big|tall|high)\b|\bwhat (percentage|number)\b")),
    ("name", re.compile(r"\b(who|whom|whose|where)\b")),
)
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class SpanSettings:
    """``threshold``: the lowest span score kept (0: every unit scoring above 0; Cohere's default 0.1).
    ``max_spans``: at most this many spans per document (``None``: no limit). ``unit``:
    ``"sentence"`` (the default) or ``"word"`` (single words, for highlighting)."""

    threshold: float = 0.1
    max_spans: int | None = None
    unit: str = "sentence"

    def __post_init__(self) -> None:
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise InputError(f"relevant_spans threshold must be a number in [0, 1], got {threshold!r}")
        count = self.max_spans
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise InputError(f"relevant_spans max_spans must be a whole number >= 1 or None, got {count!r}")
        if self.unit not in UNITS:
            raise InputError(f"relevant_spans unit must be one of {', '.join(UNITS)}, got {self.unit!r}")


def span_settings(value: Any) -> SpanSettings | None:
    """``rerank(relevant_spans=...)``: ``None``/``False`` -> no spans; ``True`` -> the defaults;
    a ``SpanSettings`` or a mapping of its fields -> those settings."""
    if value is None or value is False:
        return None
    if value is True:
        return SpanSettings()
    if isinstance(value, SpanSettings):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {f.name for f in fields(SpanSettings)})
        if unknown:
            raise InputError(f"unknown relevant_spans settings: {', '.join(map(str, unknown))}")
        return SpanSettings(**value)
    raise InputError(f"relevant_spans must be None, True, False or a mapping of settings, got {value!r}")


def word_bounds(text: str) -> np.ndarray:
    """``[words, 2]`` start/end characters of the whitespace words of ``text`` (``str.split``'s)."""
    found = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    return np.asarray(found, dtype=np.int64).reshape(-1, 2)


def sentence_units(
    text: str, bounds: np.ndarray, count: int, max_words: int | None = MAX_UNIT_WORDS
) -> list[tuple[int, int]]:
    """Sentences of the first ``count`` words, as ``(first word, stop word)``; sentences over
    ``max_words`` words are cut into even pieces (``None``: never)."""
    units: list[tuple[int, int]] = []
    start = 0
    for k in range(count):
        if k + 1 == count or _ends_sentence(text, bounds, k):
            units.extend(_even_pieces(start, k + 1, max_words) if max_words else [(start, k + 1)])
            start = k + 1
    return units


def _ends_sentence(text: str, bounds: np.ndarray, k: int) -> bool:
    word = text[bounds[k, 0] : bounds[k, 1]]
    if "\n" in text[bounds[k, 1] : bounds[k + 1, 0]]:
        return True
    core = word.rstrip("\"')]”’")
    if not core.endswith((".", "!", "?")):
        return False
    stem = core.rstrip(".!?").lower()
    if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
        return False
    following = text[bounds[k + 1, 0] : bounds[k + 1, 1]].lstrip("\"'([“‘")
    return not following or following[0].isupper() or following[0].isdigit()


def _even_pieces(start: int, stop: int, max_words: int) -> list[tuple[int, int]]:
    pieces = -(-(stop - start) // max_words)
    edges = np.linspace(start, stop, pieces + 1).round().astype(int).tolist()
    return list(itertools.pairwise(edges))


def content_words(text: str) -> set[str]:
    """Lower-case word tokens of ``text`` that are not stopwords (for the lexical signal)."""
    return {w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS}


def unit_scores(
    word_scores: np.ndarray,
    units: Sequence[tuple[int, int]],
    overlaps: np.ndarray,
    lexical_weight: float,
    answers: np.ndarray | None = None,
    answer_weight: float = 0.0,
) -> np.ndarray:
    """Each unit's score in [0, 1]: attention sum over the best unit's, plus ``lexical_weight``
    times its query-word overlap over the best overlap, plus (in units where those two are
    above 0: answer-like words alone are no evidence) ``answer_weight`` times its answer-like
    words (``answers``) per word, all over the best combined value."""
    attention = np.asarray([word_scores[a:b].sum() for a, b in units], dtype=np.float64)
    combined = _share_of_best(attention) + lexical_weight * _share_of_best(overlaps)
    if answers is not None and answer_weight:
        lengths = np.asarray([max(b - a, 1) for a, b in units], dtype=np.float64)
        combined = combined + answer_weight * np.asarray(answers, dtype=np.float64) / lengths * (combined > 0)
    return _share_of_best(combined)


def asks_for(query: str) -> str:
    """What ``query`` asks for: ``"date"``, ``"number"``, ``"name"`` or ``"any"`` (a claim, a
    "what" or "which" question, or no question words), from its question words."""
    lowered = query.lower()
    return next((kind for kind, pattern in _ASKS if pattern.search(lowered)), "any")


def answer_words(
    text: str, bounds: np.ndarray, units: Sequence[tuple[int, int]], query: str, kind: str | None = None
) -> np.ndarray:
    """Per unit, how many of its words look like an answer to ``query``: words holding none of
    the query's content words that are, by ``kind`` (default :func:`asks_for`), a date (a digit
    or a month name), a number (a digit or a number word), a name (capitalised, not the unit's
    first word) or, for ``"any"``, a digit or a name."""
    kind, wanted = kind or asks_for(query), content_words(query)
    counts = []
    for a, b in units:
        found = 0
        for k in range(a, b):
            word = text[bounds[k, 0] : bounds[k, 1]]
            tokens = set(_TOKEN.findall(word.lower()))
            if tokens & wanted:
                continue
            digit, name = bool(_DIGIT.search(word)), k > a and word[:1].isupper()
            if kind == "date":
                found += digit or bool(tokens & _MONTHS)
            elif kind == "number":
                found += digit or bool(tokens & _NUMBER_WORDS)
            else:
                found += name or (kind == "any" and digit)
        counts.append(found)
    return np.asarray(counts, dtype=np.float64)


def _share_of_best(values: np.ndarray) -> np.ndarray:
    values = np.clip(np.asarray(values, dtype=np.float64), 0.0, None)
    best = values.max() if values.size else 0.0
    return values / best if best > 0 else np.zeros_like(values)


def unit_overlaps(text: str, bounds: np.ndarray, units: Sequence[tuple[int, int]], query: set[str]) -> np.ndarray:
    """How many of the query's content words each unit holds."""
    return np.asarray(
        [len(query & content_words(text[bounds[a, 0] : bounds[b - 1, 1]])) for a, b in units], dtype=np.float64
    )


def select_spans(
    text: str, bounds: np.ndarray, word_scores: np.ndarray, query: str, settings: SpanSettings
) -> list[dict[str, Any]]:
    """Spans ``{start, end, score}`` of ``text`` from the scores of its first words, best first."""
    count = len(word_scores)
    if count == 0:
        return []
    if settings.unit == "word":
        units = [(k, k + 1) for k in range(count)]
        scores = _share_of_best(word_scores)
    else:
        units = sentence_units(text, bounds, count)
        overlaps = unit_overlaps(text, bounds, units, content_words(query))
        answers = answer_words(text, bounds, units, query)
        scores = unit_scores(word_scores, units, overlaps, LEXICAL_WEIGHT, answers, ANSWER_WEIGHT)
    order = sorted(range(len(units)), key=lambda u: (-scores[u], u))
    kept = [u for u in order if scores[u] >= settings.threshold and scores[u] > 0][: settings.max_spans]
    return [
        {"start": int(bounds[units[u][0], 0]), "end": int(bounds[units[u][1] - 1, 1]), "score": float(scores[u])}
        for u in kept
    ]


class SpanCollector:
    """A ``CoReReranker._score`` token hook that keeps word scores per prompted document.

    ``texts``: each input document's text as given (``document_texts``); call :meth:`spans` after
    scoring for each input's spans (``[]`` for an empty document)."""

    def __init__(self, texts: Sequence[str], query: str, settings: SpanSettings):
        self.texts = list(texts)
        self.query = query
        self.settings = settings
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._plan: Any = None

    def hook(self, plan: Any, slots: Sequence[int], prepared: Any, token_scores: np.ndarray) -> None:
        self._plan = plan
        for position, slot in enumerate(slots):
            start, end = prepared.document_spans[position]
            offset = prepared.document_chars[position][0]
            scores = slot_word_scores(
                plan.slots[slot], prepared.token_offsets[start:end], token_scores[start:end], offset
            )
            self._sums[slot] = self._sums.get(slot, 0.0) + scores
            self._counts[slot] = self._counts.get(slot, 0) + 1

    def word_scores(self) -> list[np.ndarray | None]:
        """Per input document, the mean score of each scored word (``None``: not prompted)."""
        found: list[np.ndarray | None] = [None] * len(self.texts)
        for slot, total in self._sums.items():
            for index in self._plan.indices[slot]:
                found[index] = total / self._counts[slot]
        return found

    def spans(self) -> list[list[dict[str, Any]]]:
        """Per input document, its spans best first (``[]`` when it was not prompted)."""
        return [
            [] if words is None else select_spans(text, word_bounds(text), words, self.query, self.settings)
            for text, words in zip(self.texts, self.word_scores())
        ]


def slot_word_scores(slot_text: str, offsets: Sequence[tuple[int, int]], scores: np.ndarray, offset: int) -> np.ndarray:
    """Per word of the prompted ``slot_text``, the sum of its tokens' scores. ``offsets`` are the
    tokens' characters in the prompt, ``offset`` where the slot's text starts there."""
    starts = word_bounds(slot_text)[:, 0]
    if not len(starts):
        return np.zeros(0)
    last = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)[:, 1] - 1 - offset
    words = np.clip(np.searchsorted(starts, last, side="right") - 1, 0, len(starts) - 1)
    return np.bincount(words, weights=np.asarray(scores, dtype=np.float64), minlength=len(starts))


def spans_argument(value: Any) -> dict[str, Any]:
    """``{"relevant_spans": value}`` for ``rerank(**...)`` when spans are asked for, else ``{}``
    (so an adapter without spans calls the core exactly as before)."""
    return {} if value is None or value is False else {"relevant_spans": value}


def spans_within(spans: Sequence[Mapping[str, Any]], whole: str, part: str) -> list[dict[str, Any]]:
    """``spans`` of ``whole`` as offsets into ``part``, the text ``whole`` ends with (what was
    ranked: a title or metadata, then ``part``): each span clipped to it, spans outside dropped,
    the order kept. ``part`` is found stripped, as ``title + " " + text`` joins it."""
    core = part.strip()
    at = whole.rfind(core) if core else -1
    if at < 0:
        return []
    shift = at - part.find(core)
    found = []
    for span in spans:
        start, end = max(int(span["start"]), at), min(int(span["end"]), at + len(core))
        if end > start:
            found.append({"start": start - shift, "end": end - shift, "score": float(span["score"])})
    return found


def join_spans(text: str, spans: Sequence[Mapping[str, Any]], separator: str = " ... ") -> str:
    """The spans' text in document order, joined by ``separator``; spans that overlap or have
    only whitespace between them are one piece (with the text's own whitespace)."""
    pieces: list[list[int]] = []
    for span in sorted(spans, key=lambda s: (s["start"], s["end"])):
        if pieces and not text[pieces[-1][1] : span["start"]].strip():
            pieces[-1][1] = max(pieces[-1][1], span["end"])
        else:
            pieces.append([span["start"], span["end"]])
    return separator.join(text[a:b] for a, b in pieces)
