"""BEIR folders, TREC run files and a BM25 first stage, for evaluation.

A BEIR folder holds ``corpus.jsonl`` (or ``corpus.jsonl.gz``), ``queries.jsonl`` and
``qrels/<split>.tsv`` (header line, then ``query-id  corpus-id  score``). The in-memory shapes
follow BEIR: corpus ``{doc_id: {"title", "text"}}``, queries ``{qid: text}``, qrels
``{qid: {doc_id: int}}``. A run is ``{qid: [doc_id, ...]}`` in first-stage order (rank 1
first) plus the run's own scores.

Conventions (see ``docs/results.md``):

- Judgements of score 0 (or below) are kept in the qrels but are not relevant (gain 0).
- A query is evaluated when it has at least one judgement in the split; queries with no
  candidates are counted and reported by the caller, never dropped silently.
- BEIR's rule: a candidate whose doc id equals the query id is removed (``ignore_identical_ids``).
- First-stage order of a TREC run is its rank column (ties: file order). trec_eval itself
  ignores the rank column and sorts by score, then doc id descending; the two orders only
  differ inside groups of tied scores.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import run_files
from .errors import InputError, MissingExtra
from .utils import join_title, open_text

BM25_INSTALL_HINT = 'the BM25 first stage needs bm25s and PyStemmer: pip install "core-rerank[eval]"'


# ---------------------------------------------------------------------- readers
def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def find_corpus_file(data_dir: str | Path) -> Path:
    data_dir = Path(data_dir)
    for name in ("corpus.jsonl", "corpus.jsonl.gz"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no corpus.jsonl or corpus.jsonl.gz (BEIR layout expected)")


def load_corpus(path: str | Path, doc_ids: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    """``{doc_id: {"title", "text"}}`` from a BEIR corpus file (optionally only ``doc_ids``)."""
    path = Path(path)
    if path.is_dir():
        path = find_corpus_file(path)
    wanted = set(doc_ids) if doc_ids is not None else None
    corpus: dict[str, dict[str, str]] = {}
    for record in _jsonl(path):
        doc_id = str(record["_id"])
        if wanted is not None and doc_id not in wanted:
            continue
        corpus[doc_id] = {"title": record.get("title") or "", "text": record.get("text") or ""}
    return corpus


def load_queries(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if path.is_dir():
        path = path / "queries.jsonl"
    return {str(r["_id"]): r.get("text") or "" for r in _jsonl(path)}


def load_qrels(path: str | Path, split: str = "test") -> dict[str, dict[str, int]]:
    """``{qid: {doc_id: grade}}`` from ``qrels/<split>.tsv`` (path to the file or the folder).

    Keeps the file's query order. The header line is skipped when its score column is not a
    number. A repeated (qid, doc_id) pair keeps the last grade, as trec_eval does.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "qrels" / f"{split}.tsv"
    if not path.is_file():
        raise FileNotFoundError(f"no qrels file {path}")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 1:  # tolerate space-separated files
                row = row[0].split()
            if len(row) == 4:  # TREC qrels: qid iter docid rel
                row = [row[0], row[2], row[3]]
            if len(row) != 3:
                raise InputError(f"{path}:{number}: expected query-id, corpus-id, score")
            try:
                grade = int(float(row[2]))
            except ValueError:
                if number == 1:
                    continue  # header
                raise InputError(f"{path}:{number}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0].strip(), {})[row[1].strip()] = grade
    return qrels


@dataclass
class Run:
    """A first-stage run: candidates per query in first-stage order, with the run's scores."""

    order: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    name: str = "run"

    def top(self, qid: str, depth: int | None) -> list[str]:
        docs = self.order.get(qid, [])
        return list(docs if depth is None else docs[:depth])


def load_trec_run(path: str | Path) -> Run:
    """A TREC run file ``qid Q0 docid rank score [tag]``, read by ``run_files.read_run`` (the
    one reader); here a malformed line is an error naming it, not a line to skip.

    First-stage order is the rank column (ties: file order). A doc listed twice for one query
    keeps its first line.
    """
    parsed = run_files.read_run(path)
    if parsed.problems:
        raise InputError(str(parsed.problems[0]))
    return Run(order=parsed.order, scores=parsed.scores, name=parsed.tag or Path(path).name)


def write_trec_run(path: str | Path, scores: Mapping[str, Mapping[str, float]], tag: str = "core-rerank") -> None:
    """Write ``{qid: {doc_id: score}}`` as a TREC run, each query sorted like trec_eval sorts it."""
    with open(path, "w", encoding="utf-8") as handle:
        for qid, docs in scores.items():
            ranked = sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n")


# ---------------------------------------------------------------------- BM25
def bm25_run(
    corpus: Mapping[str, Mapping[str, str]],
    queries: Mapping[str, str],
    k: int = 100,
    k1: float = 0.9,
    b: float = 0.4,
) -> Run:
    """BM25 top-``k`` with bm25s (Lucene variant, k1=0.9, b=0.4, English stopwords and stemmer).

    Documents are ``title + " " + text``, as in BEIR. The settings match the shared SciFact run.
    """
    try:
        import bm25s
        import Stemmer
    except ImportError as exc:
        raise MissingExtra(BM25_INSTALL_HINT) from exc
    doc_ids = list(corpus)
    texts = [join_title(corpus[d].get("title"), corpus[d].get("text") or "") for d in doc_ids]
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(k1=k1, b=b)
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    qids = list(queries)
    k = min(k, len(doc_ids))
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    results, scores = retriever.retrieve(tokens, k=k, show_progress=False)
    run = Run(name=f"bm25s_k{k1}_b{b}")
    for row, qid in enumerate(qids):
        pairs = [(doc_ids[int(i)], float(s)) for i, s in zip(results[row], scores[row])]
        # bm25s returns zero-score padding when fewer docs match; keep only matching docs.
        pairs = [p for p in pairs if p[1] > 0]
        run.order[qid] = [d for d, _ in pairs]
        run.scores[qid] = dict(pairs)
    return run


def dense_run(corpus: Mapping[str, Mapping[str, str]], queries: Mapping[str, str], k: int = 100) -> Run:
    """Dense top-``k`` with all-MiniLM-L6-v2, exact search over the whole corpus (``core_rerank.dense``)."""
    from .dense import DENSE_MODEL, dense_search

    order, scores = dense_search(corpus, queries, k=k)
    return Run(order=order, scores=scores, name=f"dense_{DENSE_MODEL}")


FIRST_STAGES = ("run", "dense")
"""``run``: the given run file, else the folder's BM25 run, else BM25 built here; ``dense``: all-MiniLM-L6-v2."""


# ---------------------------------------------------------------------- a whole folder
@dataclass
class EvalData:
    """Everything one evaluation needs: judged queries, their texts, candidates and documents."""

    data_dir: Path
    split: str
    queries: dict[str, str]  # judged queries only, in qrels order
    qrels: dict[str, dict[str, int]]
    run: Run
    corpus: dict[str, dict[str, str]]
    run_source: str  # path of the run file, or "bm25s (built here)"
    removed_identical: int = 0  # candidates dropped by BEIR's query-id == doc-id rule
    missing_texts: dict[str, list[str]] = field(default_factory=dict)

    def candidates(self, qid: str, depth: int | None) -> list[str]:
        return self.run.top(qid, depth)

    def missing_candidates(self, qids: Iterable[str] | None = None) -> list[str]:
        """Judged queries with no candidate at all (they score 0 and are reported)."""
        return [q for q in (qids or self.queries) if not self.run.order.get(q)]


def load_eval_data(
    data_dir: str | Path,
    split: str = "test",
    run_file: str | Path | None = None,
    bm25_k: int = 100,
    ignore_identical_ids: bool = True,
    first_stage: str = "run",
) -> EvalData:
    """Load a BEIR folder for reranking evaluation.

    ``run_file``: a TREC run; ``None`` uses ``<data_dir>/run.bm25.top100.trec`` when it exists
    and holds queries of this split, else builds a BM25 top-``bm25_k`` run with bm25s. Only the documents the run needs are kept.
    ``first_stage="dense"``: the top-``bm25_k`` of all-MiniLM-L6-v2 over the whole corpus instead
    (exact search, embeddings cached on disk); it takes no run file.
    """
    if first_stage not in FIRST_STAGES:
        raise InputError(f"unknown first stage {first_stage!r}; use {', '.join(FIRST_STAGES)}")
    if first_stage == "dense" and run_file is not None:
        raise InputError("the dense first stage builds its own candidates; give no run file with it")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"no data folder {data_dir}")
    qrels = load_qrels(data_dir, split)
    all_queries = load_queries(data_dir)
    absent = [q for q in qrels if q not in all_queries]
    if absent:
        raise InputError(f"{len(absent)} judged queries have no text in queries.jsonl (e.g. {absent[:3]})")
    queries = {q: all_queries[q] for q in qrels}
    run, corpus, source = _candidates(data_dir, queries, run_file, bm25_k, first_stage)
    run.order = {q: run.order[q] for q in queries if q in run.order}
    removed = 0
    if ignore_identical_ids:
        for qid, docs in run.order.items():
            if qid in docs:
                removed += 1
                run.order[qid] = [d for d in docs if d != qid]
    missing_texts: dict[str, list[str]] = {}
    for qid, docs in run.order.items():
        lost = [d for d in docs if d not in corpus]
        if lost:
            missing_texts[qid] = lost
    return EvalData(
        data_dir=data_dir,
        split=split,
        queries=queries,
        qrels=qrels,
        run=run,
        corpus=corpus,
        run_source=source,
        removed_identical=removed,
        missing_texts=missing_texts,
    )


def _candidates(
    data_dir: Path, queries: Mapping[str, str], run_file: str | Path | None, k: int, first_stage: str
) -> tuple[Run, dict[str, dict[str, str]], str]:
    """(the first-stage run, the documents it needs, where it came from) for ``load_eval_data``."""
    run: Run | None = None
    if first_stage == "run" and run_file is not None:
        run = load_trec_run(run_file)
    elif first_stage == "run" and (data_dir / "run.bm25.top100.trec").is_file():
        # The folder's own run is used when it covers this split (SciFact's covers only test).
        run = load_trec_run(data_dir / "run.bm25.top100.trec")
        run_file = data_dir / "run.bm25.top100.trec" if any(q in run.order for q in queries) else None
    if run is not None and run_file is not None:  # (a run file given, or the folder's covers the split)
        corpus = load_corpus(find_corpus_file(data_dir), doc_ids={d for q in queries for d in run.order.get(q, [])})
        return run, corpus, str(run_file)
    corpus = load_corpus(find_corpus_file(data_dir))
    if first_stage == "dense":
        run = dense_run(corpus, queries, k=k)
        return (
            run,
            corpus,
            f"dense {run.name.removeprefix('dense_')} exact top-{k} over {len(corpus)} documents (built at load time)",
        )
    return bm25_run(corpus, queries, k=k), corpus, f"bm25s top-{k} (k1=0.9, b=0.4, built at load time)"
