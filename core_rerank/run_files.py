"""TREC run files for ``rerank-run``: a forgiving reader, an atomic writer, and resumable part files.

- :func:`read_run` reads ``qid Q0 docid rank score [tag]`` lines and never stops at a bad
  line: each malformed line is kept as a :class:`LineProblem` naming ``path:line`` and why,
  so a job can report them all at the end. Candidate order is the rank column (ties: file
  order); a document listed twice for one query keeps its first line.
- :func:`write_run` writes a run atomically (a temporary file in the same folder, then
  ``os.replace``), so a reader never sees half a run.
- :class:`PartStore` keeps results as they come in append-only JSONL part files under
  ``<out>.parts/``; a restarted job reads them back (a torn last line from a killed job is
  ignored) and redoes only the queries that are not there.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .errors import InputError
from .utils import atomic_write, open_text

SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class LineProblem:
    """One line of a run file that could not be read (1-based ``line``)."""

    path: str
    line: int
    reason: str
    text: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}: {self.text!r}"


@dataclass
class RunFile:
    """Candidates per query in first-stage order, and what was wrong with the file."""

    path: str
    order: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # the run's own scores
    tag: str | None = None
    lines: int = 0  # non-blank lines seen
    problems: list[LineProblem] = field(default_factory=list)
    duplicates: int = 0  # (qid, docid) pairs listed more than once


def read_run(path: str | Path) -> RunFile:
    """Read a TREC run (plain or gzip). Malformed lines are skipped and listed in ``problems``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run file {path}")
    run = RunFile(path=str(path))
    rows: dict[str, list[tuple[float, int, str, float]]] = {}
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if not parts:
                continue
            run.lines += 1
            text = line.rstrip("\n")[:200]
            if len(parts) not in (5, 6):
                run.problems.append(
                    LineProblem(
                        str(path), number, f"expected 'qid Q0 docid rank score [tag]', got {len(parts)} fields", text
                    )
                )
                continue
            try:
                rank, score = float(parts[3]), float(parts[4])
            except ValueError:
                run.problems.append(LineProblem(str(path), number, "rank and score must be numbers", text))
                continue
            if run.tag is None and len(parts) == 6:
                run.tag = parts[5]
            rows.setdefault(parts[0], []).append((rank, number, parts[2], score))
    for qid, entries in rows.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        scores: dict[str, float] = {}
        for _, _, doc_id, score in entries:
            if doc_id in scores:
                run.duplicates += 1
                continue
            scores[doc_id] = score
        run.order[qid] = list(scores)
        run.scores[qid] = scores
    return run


def run_tag(model: str, method: str) -> str:
    """``core-rerank.<model>.<method>``: a TREC run tag (no whitespace) naming model and method."""
    name = Path(str(model).rstrip("/\\")).name or str(model)
    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", name)
    return f"core-rerank.{name}.{method}"


def format_lines(qid: str, doc_ids: Sequence[str], scores: Sequence[float], tag: str) -> Iterator[str]:
    """TREC lines of one reranked query (``doc_ids`` already best first)."""
    for rank, (doc_id, score) in enumerate(zip(doc_ids, scores), start=1):
        yield f"{qid} Q0 {doc_id} {rank} {score!r} {tag}\n"


def write_run(path: str | Path, results: Iterable[tuple[str, Sequence[str], Sequence[float]]], tag: str) -> int:
    """Write ``(qid, doc_ids, scores)`` (each best first) as one TREC run, atomically. Returns lines written."""
    lines = [line for qid, doc_ids, scores in results for line in format_lines(qid, doc_ids, scores, tag)]
    atomic_write(path, lines)
    return len(lines)


def read_results(path: str | Path) -> dict[str, tuple[list[str], list[float]]]:
    """A run written by :func:`write_run`, back as ``{qid: (doc_ids, scores)}`` in its rank order."""
    found: dict[str, tuple[list[str], list[float]]] = {}
    with open_text(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 5:
                docs, scores = found.setdefault(parts[0], ([], []))
                docs.append(parts[2])
                scores.append(float(parts[4]))
    return found


class PartStore:
    """Append-only result parts under ``<out>.parts/`` with the settings that made them.

    ``open(settings)`` checks that existing parts were made with the same settings (else
    ``ValueError``), ``done()`` reads every finished query back, ``append(...)`` writes one
    query as one flushed JSON line of this process's own part file, ``remove()`` deletes the
    folder once the final run is written.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.folder = self.out.with_name(self.out.name + ".parts")
        self._handle: IO[str] | None = None

    def exists(self) -> bool:
        return self.folder.is_dir()

    def open(self, settings: Mapping[str, Any], overwrite: bool = False) -> None:
        if overwrite and self.folder.exists():
            shutil.rmtree(self.folder)
        settings_path = self.folder / SETTINGS_FILE
        if settings_path.is_file():
            check_same_settings(json.loads(settings_path.read_text(encoding="utf-8")), settings, str(self.folder))
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(settings_path, [json.dumps(dict(settings), indent=2, sort_keys=True) + "\n"])

    def done(self) -> dict[str, tuple[list[str], list[float]]]:
        """``{qid: (doc_ids, scores)}`` of every complete line in every part (first copy wins)."""
        found: dict[str, tuple[list[str], list[float]]] = {}
        for part in sorted(self.folder.glob("part-*.jsonl")):
            with open(part, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        qid, docs, scores = record["qid"], record["doc_ids"], record["scores"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a killed job: that query is redone
                    if qid not in found and len(docs) == len(scores):
                        found[qid] = (list(docs), [float(s) for s in scores])
        return found

    def append(self, qid: str, doc_ids: Sequence[str], scores: Sequence[float]) -> None:
        if self._handle is None:
            number = len(list(self.folder.glob("part-*.jsonl"))) + 1
            while (self.folder / f"part-{number:05d}.jsonl").exists():
                number += 1
            self._handle = open(self.folder / f"part-{number:05d}.jsonl", "a", encoding="utf-8")
        record = {"qid": qid, "doc_ids": list(doc_ids), "scores": [float(s) for s in scores]}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        self.close()
        if self.folder.exists():
            shutil.rmtree(self.folder)


def check_same_settings(old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
    """``ValueError`` naming every setting that differs between a saved job and this one."""
    differ = [
        f"{key}: {old.get(key)!r} then, {new.get(key)!r} now"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
    if differ:
        raise InputError(
            f"{where} was made with other settings ({'; '.join(differ)}); "
            "use another --out, or --overwrite to start again"
        )
