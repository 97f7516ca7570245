"""BEIR folders, TREC runs and the BM25 first stage."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from core_rerank.datasets import load_corpus, load_eval_data, load_qrels, load_trec_run, write_trec_run

SLICE = Path(__file__).parent / "data" / "scifact_slice"


def test_scifact_slice_loads_with_run_order_and_texts():
    data = load_eval_data(SLICE)
    assert list(data.queries) == ["1", "3", "5", "13", "36"]  # qrels order
    assert data.run_source.endswith("run.bm25.top100.trec")
    for qid in data.queries:
        docs = data.candidates(qid, None)
        assert len(docs) == 20
        ranks = [
            float(line.split()[3])
            for line in (SLICE / "run.bm25.top100.trec").read_text().splitlines()
            if line.split()[0] == qid
        ]
        assert ranks == sorted(ranks)
        assert all(d in data.corpus and data.corpus[d]["text"] for d in docs)
    assert data.candidates("3", 5) == data.candidates("3", None)[:5]
    assert data.missing_candidates() == [] and data.missing_texts == {}


def test_run_order_is_the_rank_column_and_duplicates_keep_the_first(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 b 2 9.0 t\nq1 Q0 a 1 1.0 t\nq1 Q0 c 3 5.0 t\nq1 Q0 a 4 0.5 t\nq2 Q0 z 1 3 t\n")
    run = load_trec_run(path)
    assert run.order["q1"] == ["a", "b", "c"]
    assert run.scores["q1"] == {"a": 1.0, "b": 9.0, "c": 5.0}
    assert run.name == "t"
    out = tmp_path / "out.trec"
    write_trec_run(out, {"q1": {"x": 1.0, "y": 1.0, "w": 2.0}})
    assert [line.split()[2] for line in out.read_text().splitlines()] == ["w", "y", "x"]


def test_qrels_header_zero_grades_and_trec_format(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t0\nq1\td2\t2\nq2\td3\t1\n")
    assert load_qrels(tmp_path, "test") == {"q1": {"d1": 0, "d2": 2}, "q2": {"d3": 1}}
    trec = tmp_path / "qrels.txt"
    trec.write_text("q1 0 d1 1\nq1 0 d2 3\n")
    assert load_qrels(trec) == {"q1": {"d1": 1, "d2": 3}}
    with pytest.raises(FileNotFoundError):
        load_qrels(tmp_path, "dev")


def _folder(tmp_path, run_lines, qrels_lines, gz=False):
    docs = [{"_id": d, "title": f"title {d}", "text": f"text about {d} and fleas"} for d in ("q1", "d1", "d2", "d3")]
    lines = "".join(json.dumps(d) + "\n" for d in docs)
    if gz:
        with gzip.open(tmp_path / "corpus.jsonl.gz", "wt") as handle:
            handle.write(lines)
    else:
        (tmp_path / "corpus.jsonl").write_text(lines)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "fleas"}\n{"_id": "q2", "text": "dogs"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels_lines))
    if run_lines is not None:
        (tmp_path / "run.bm25.top100.trec").write_text("".join(run_lines))
    return tmp_path


def test_identical_ids_removed_missing_candidates_and_texts_reported(tmp_path):
    folder = _folder(
        tmp_path,
        ["q1 Q0 q1 1 9 t\n", "q1 Q0 d1 2 8 t\n", "q1 Q0 nodoc 3 7 t\n"],
        ["q1\td1\t1\n", "q2\td2\t1\n"],
        gz=True,
    )
    data = load_eval_data(folder)
    assert data.candidates("q1", None) == ["d1", "nodoc"]  # BEIR: doc id == query id is ignored
    assert data.removed_identical == 1
    assert data.missing_candidates() == ["q2"]  # judged, but no candidates: reported
    assert data.missing_texts == {"q1": ["nodoc"]}
    kept = load_eval_data(folder, ignore_identical_ids=False)
    assert kept.candidates("q1", None)[0] == "q1"


def test_corpus_gz_and_subset(tmp_path):
    folder = _folder(tmp_path, None, ["q1\td1\t1\n"], gz=True)
    assert set(load_corpus(folder)) == {"q1", "d1", "d2", "d3"}
    assert set(load_corpus(folder, doc_ids=["d2"])) == {"d2"}


def test_bm25_first_stage_without_run_file(tmp_path):
    pytest.importorskip("bm25s")
    pytest.importorskip("Stemmer")
    for name in ("corpus.jsonl", "queries.jsonl"):
        shutil.copy(SLICE / name, tmp_path / name)
    shutil.copytree(SLICE / "qrels", tmp_path / "qrels")
    data = load_eval_data(tmp_path, bm25_k=10)
    assert data.run_source.startswith("bm25s")
    shared = load_trec_run(SLICE / "run.bm25.top100.trec")
    for qid in data.queries:
        docs = data.candidates(qid, None)
        assert 0 < len(docs) <= 10 and set(docs) <= set(data.corpus)
        scores = [data.run.scores[qid][d] for d in docs]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    # Same BM25 settings as the shared run: on this small corpus the best hit agrees for most queries.
    agree = sum(data.candidates(q, 1) == shared.order[q][:1] for q in data.queries)
    assert agree >= 3


def test_folder_run_that_misses_the_split_falls_back_to_bm25(tmp_path):
    # SciFact's shared run holds only test queries: a train split must not rerank nothing.
    pytest.importorskip("bm25s")
    shutil.copytree(SLICE, tmp_path / "data")
    qrels = (SLICE / "qrels" / "test.tsv").read_text()
    (tmp_path / "data" / "qrels" / "train.tsv").write_text(qrels)
    (tmp_path / "data" / "run.bm25.top100.trec").write_text("999 Q0 31715818 1 1.0 other\n")
    data = load_eval_data(tmp_path / "data", split="train", bm25_k=5)
    assert data.run_source.startswith("bm25s")
    assert all(data.candidates(q, None) for q in data.queries)
    assert load_eval_data(SLICE, split="test").run_source.endswith("run.bm25.top100.trec")
