"""Detection examples: a query, one relevant document and hard negatives (method.md section 2).

Two inputs are read:

- the CoRe/ICR JSONL layout (gzip or not), one query per line::

      {"question": ..., "paragraphs": [{"title", "paragraph_text", "is_positive", "is_negative"}, ...]}

- a BEIR folder and a qrels split: the positive is a judged-relevant document, the hard
  negatives are the best-ranked unjudged (or judged non-relevant) documents of a run file,
  or of BM25 over the corpus (bm25s) when no run file is given.

A line that is not in the layout (bad JSON, missing fields, wrong types) is an error that names
``file:line``. An example that cannot be used (no positive, no negative; empty paragraphs are
dropped first) is skipped and counted, with its ``file:line`` and the reason.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..utils import file_sha256, join_title, open_text

TEXT_FIELDS = ("paragraph_text", "text", "contents")
QUERY_FIELDS = ("question", "query")


class DetectionDataError(InputError):
    """Detection data that is not in the expected layout (the message names file:line)."""


@dataclass(frozen=True)
class Example:
    """One detection query: the relevant document and its hard negatives (texts)."""

    query: str
    positive: str
    negatives: tuple[str, ...]
    id: str | None = None
    source: str | None = None  # "file:line" or "folder:split:query-id"

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise DetectionDataError(f"{self.source or 'example'}: the query is empty")
        if not self.positive.strip():
            raise DetectionDataError(f"{self.source or 'example'}: the positive document is empty")
        if not self.negatives:
            raise DetectionDataError(f"{self.source or 'example'}: no negative documents")


@dataclass(frozen=True)
class Skipped:
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.location}: {self.reason}"


@dataclass
class ExampleSet:
    """Examples read from one source, with what was skipped or dropped and why."""

    examples: list[Example]
    source: str
    sha256: str | None = None
    skipped: list[Skipped] = field(default_factory=list)  # whole examples not used
    notes: list[Skipped] = field(default_factory=list)  # paragraphs dropped, extra positives, ...
    kind: str = "jsonl"

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def summary(self, show: int = 5) -> str:
        lines = [f"{len(self.examples)} examples from {self.source}; {len(self.skipped)} skipped"]
        for item in self.skipped[:show]:
            lines.append(f"  skipped {item}")
        if len(self.skipped) > show:
            lines.append(f"  ... and {len(self.skipped) - show} more skipped")
        for item in self.notes[:show]:
            lines.append(f"  note {item}")
        if len(self.notes) > show:
            lines.append(f"  ... and {len(self.notes) - show} more notes")
        return "\n".join(lines)


# ---------------------------------------------------------------------- JSONL (CoRe / ICR layout)
def _flag(value: Any, name: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise DetectionDataError(f"{where}: {name} must be true or false, got {value!r}")


def _document_text(title: Any, text: str, use_titles: bool) -> str:
    """The document as the prompt shows it: whitespace runs collapsed, the title first."""
    text = " ".join(text.split())
    if use_titles and isinstance(title, str):
        return join_title(" ".join(title.split()), text)
    return text


def read_jsonl_examples(
    path: "str | Path",
    limit: int | None = None,
    negatives: int | None = None,
    use_titles: bool = True,
    strict: bool = False,
) -> ExampleSet:
    """Examples from a CoRe/ICR JSONL file (gzip or not).

    Each line: ``question`` (or ``query``) and ``paragraphs``, each paragraph with
    ``paragraph_text`` (or ``text``), an optional ``title`` (put before the text, as the
    reranker does with BEIR documents), ``is_positive`` and optionally ``is_negative``
    (default: not positive). Paragraphs flagged neither way are not used. Only the first
    positive is used (extra positives are left out of the prompt, not used as negatives);
    ``negatives`` keeps the first N negatives in file order. ``limit`` counts usable examples.
    With ``strict=True``, an unusable example raises instead of being skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detection data file not found: {path}")
    result = ExampleSet(examples=[], source=str(path), sha256=file_sha256(path), kind="jsonl")
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if limit is not None and len(result.examples) >= limit:
                break
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DetectionDataError(f"{where}: not valid JSON ({exc.msg})") from None
            example, skipped, notes = parse_record(record, where, negatives, use_titles)
            result.notes.extend(notes)
            if skipped is not None:
                if strict:
                    raise DetectionDataError(str(skipped))
                result.skipped.append(skipped)
            elif example is not None:
                result.examples.append(example)
    return result


def parse_record(
    record: Any, where: str, negatives: int | None = None, use_titles: bool = True
) -> tuple[Example | None, Skipped | None, list[Skipped]]:
    """One JSONL record -> (example, None, notes) or (None, why it is skipped, notes)."""
    if not isinstance(record, dict):
        raise DetectionDataError(f"{where}: each line must be a JSON object, got {type(record).__name__}")
    query = next((record[k] for k in QUERY_FIELDS if k in record), None)
    if query is None:
        raise DetectionDataError(f"{where}: missing 'question' (the query text)")
    if not isinstance(query, str):
        raise DetectionDataError(f"{where}: 'question' must be a string, got {type(query).__name__}")
    paragraphs = record.get("paragraphs", record.get("ctxs"))
    if paragraphs is None:
        raise DetectionDataError(f"{where}: missing 'paragraphs' (the positive and negative documents)")
    if not isinstance(paragraphs, list):
        raise DetectionDataError(f"{where}: 'paragraphs' must be a list, got {type(paragraphs).__name__}")
    ident = record.get("idx", record.get("id"))
    ident = None if ident is None else str(ident)
    notes: list[Skipped] = []
    positives: list[str] = []
    negative_texts: list[str] = []
    for index, paragraph in enumerate(paragraphs):
        label = f"{where}: paragraph {index}"
        if not isinstance(paragraph, dict):
            raise DetectionDataError(f"{label} must be a JSON object, got {type(paragraph).__name__}")
        text = next((paragraph[k] for k in TEXT_FIELDS if k in paragraph), None)
        if text is None:
            raise DetectionDataError(f"{label} has no 'paragraph_text'")
        if not isinstance(text, str):
            raise DetectionDataError(f"{label}: 'paragraph_text' must be a string, got {type(text).__name__}")
        if "is_positive" not in paragraph:
            raise DetectionDataError(f"{label} has no 'is_positive' flag")
        positive = _flag(paragraph["is_positive"], "'is_positive'", label)
        negative = (
            _flag(paragraph["is_negative"], "'is_negative'", label) if "is_negative" in paragraph else not positive
        )
        if positive and negative:
            raise DetectionDataError(f"{label} is flagged both positive and negative")
        if not text.strip():
            kind = "positive" if positive else "negative" if negative else "unlabelled"
            notes.append(Skipped(label, f"empty {kind} paragraph dropped"))
            continue
        document = _document_text(paragraph.get("title"), text, use_titles)
        if positive:
            positives.append(document)
        elif negative:
            negative_texts.append(document)
    if not query.strip():
        return None, Skipped(where, "empty question"), notes
    if not positives:
        return None, Skipped(where, "no positive paragraph (with text)"), notes
    if not negative_texts:
        return None, Skipped(where, "no negative paragraph (with text)"), notes
    if len(positives) > 1:
        notes.append(Skipped(where, f"{len(positives)} positives: only the first is used"))
    if negatives is not None:
        negative_texts = negative_texts[:negatives]
    example = Example(" ".join(query.split()), positives[0], tuple(negative_texts), ident, where)
    return example, None, notes


# ---------------------------------------------------------------------- BEIR folder
def beir_examples(
    folder: "str | Path",
    split: str = "train",
    negatives: int = 9,
    run: "str | Path | None" = None,
    depth: int = 100,
    limit: int | None = None,
    use_titles: bool = True,
) -> ExampleSet:
    """Examples from a BEIR folder: qrels ``split`` gives positives, a run gives hard negatives.

    The positive is the query's highest-graded relevant document (first in qrels order among
    ties). Negatives are the best-ranked documents of ``run`` (a TREC run file) that are not
    judged relevant; without a run file they come from BM25 (bm25s) over the corpus, top
    ``depth``. Queries with no relevant document in the corpus, or too few negatives, are
    skipped and counted.
    """
    from .. import datasets  # lazily: needs bm25s only when no run file is given

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no BEIR folder {folder}")
    qrels = datasets.load_qrels(folder, split)
    queries = datasets.load_queries(folder)
    corpus_file = datasets.find_corpus_file(folder)
    corpus = datasets.load_corpus(corpus_file)
    if run is not None:
        ranking = datasets.load_trec_run(run).order
        if not any(q in ranking for q in qrels):
            raise DetectionDataError(f"the run {run} has none of the {split} queries of {folder}")
    else:
        judged_queries = {q: queries[q] for q in qrels if queries.get(q)}
        ranking = datasets.bm25_run(corpus, judged_queries, k=depth).order
    hashed = [corpus_file, folder / "queries.jsonl", folder / "qrels" / f"{split}.tsv"]
    if run is not None:
        hashed.append(Path(run))
    source = f"{folder} (qrels {split}, negatives from {'run ' + str(run) if run else f'BM25 top-{depth}'})"
    result = ExampleSet(
        examples=[], source=source, sha256=file_sha256(*[p for p in hashed if p.is_file()]), kind="beir"
    )

    def text_of(doc_id: str) -> str | None:
        doc = corpus.get(doc_id)
        if not doc:
            return None
        text = _document_text(doc.get("title"), doc.get("text") or "", use_titles)
        return text or None

    for qid, judged in qrels.items():
        if limit is not None and len(result.examples) >= limit:
            break
        where = f"{folder}:{split}:{qid}"
        query = queries.get(qid)
        if not query or not query.strip():
            result.skipped.append(Skipped(where, "query text missing"))
            continue
        relevant = [d for d, grade in judged.items() if grade > 0]
        relevant.sort(key=lambda d: -judged[d])  # stable: qrels order among equal grades
        positive = next((t for t in map(text_of, relevant) if t), None)
        if positive is None:
            result.skipped.append(Skipped(where, "no relevant document with text in the corpus"))
            continue
        if len(relevant) > 1:
            result.notes.append(Skipped(where, f"{len(relevant)} relevant documents: the best graded is used"))
        negative_texts: list[str] = []
        for doc_id in ranking.get(qid, []):
            if len(negative_texts) >= negatives:
                break
            if judged.get(doc_id, 0) > 0:
                continue
            text = text_of(doc_id)
            if text and text != positive:
                negative_texts.append(text)
        if not negative_texts:
            result.skipped.append(Skipped(where, "no negative: the ranking has no unjudged document"))
            continue
        if len(negative_texts) < negatives:
            result.notes.append(Skipped(where, f"only {len(negative_texts)} negatives"))
        result.examples.append(Example(" ".join(query.split()), positive, tuple(negative_texts), qid, where))
    return result


# ---------------------------------------------------------------------- normalising inputs
def as_examples(examples: Any, negatives: int | None = None) -> ExampleSet:
    """Accept an ExampleSet, a JSONL path, or a list of Examples / dicts."""
    if isinstance(examples, ExampleSet):
        return examples
    if isinstance(examples, (str, Path)):
        return read_jsonl_examples(examples, negatives=negatives)
    items: list[Example] = []
    skipped: list[Skipped] = []
    notes: list[Skipped] = []
    for index, item in enumerate(examples):
        where = f"examples[{index}]"
        if isinstance(item, Example):
            items.append(item)
        elif isinstance(item, Mapping) and "paragraphs" in item:
            example, skip, more = parse_record(dict(item), where, negatives)
            notes.extend(more)
            if skip is not None:
                skipped.append(skip)
            elif example is not None:
                items.append(example)
        elif isinstance(item, Mapping):
            items.append(_from_simple_mapping(item, where, negatives))
        else:
            raise DetectionDataError(
                f"{where}: expected an Example or a mapping with 'query', 'positive' and 'negatives', "
                f"got {type(item).__name__}"
            )
    return ExampleSet(examples=items, source="in-memory examples", skipped=skipped, notes=notes, kind="memory")


def _from_simple_mapping(item: Mapping[str, Any], where: str, negatives: int | None) -> Example:
    query = next((item[k] for k in ("query", "question") if k in item), None)
    positive = item.get("positive")
    negative_texts = item.get("negatives")
    if not isinstance(query, str):
        raise DetectionDataError(f"{where}: needs a 'query' string")
    if not isinstance(positive, str):
        raise DetectionDataError(f"{where}: needs a 'positive' document string")
    if isinstance(negative_texts, str) or not isinstance(negative_texts, Sequence):
        raise DetectionDataError(f"{where}: 'negatives' must be a list of strings")
    if negatives is not None:
        negative_texts = list(negative_texts)[:negatives]
    return Example(query, positive, tuple(str(n) for n in negative_texts), item.get("id"), where)


def positive_slots(num_documents: int, positions: int, rng: random.Random) -> list[int]:
    """Where the positive goes in a list of ``num_documents``.

    ``positions=1``: one random slot (seeded). More: spread evenly from the first slot to the
    last (3 of 10: 0, 4 or 5, 9); at most one per slot.
    """
    if positions < 1:
        raise InputError("positions must be at least 1")
    if positions == 1:
        return [rng.randrange(num_documents)]
    positions = min(positions, num_documents)
    return sorted({round(i * (num_documents - 1) / (positions - 1)) for i in range(positions)})


def arrange(example: Example, slot: int) -> list[str]:
    """The negatives in their order, with the positive inserted at ``slot``."""
    documents = list(example.negatives)
    documents.insert(slot, example.positive)
    return documents


def iter_prompts(
    examples: Iterable[Example], positions: int, seed: int = 0
) -> Iterator[tuple[int, Example, list[str], int]]:
    """(example index, example, documents, positive index) for every prompt of a detection run."""
    rng = random.Random(seed)
    for index, example in enumerate(examples):
        for slot in positive_slots(len(example.negatives) + 1, positions, rng):
            yield index, example, arrange(example, slot), slot
