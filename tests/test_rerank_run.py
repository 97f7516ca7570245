"""``core-rerank rerank-run``: TREC run in, TREC run out; in process and on a real local Ray cluster.

The model tests use the real SmolLM2-135M-Instruct on the SciFact slice (5 queries), depth 5
and 30-word documents, so one query takes about a second on one CPU thread. The Ray tests
start one local cluster for the module (about 3 s) and shut it down at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest

from core_rerank import cli, run_files
from core_rerank.pool import score_item
from core_rerank.rerank_job import plan_job, run_job
from core_rerank.settings import RerankerSettings
from core_rerank.utils import DEFAULT_MODEL

SLICE = Path(__file__).parent / "data" / "scifact_slice"
DEPTH = 5
WORDS = 30
QIDS = ["1", "3", "5", "13", "36"]  # the slice's queries, in run order


def scorer() -> RerankerSettings:
    return RerankerSettings(model=DEFAULT_MODEL, device="cpu", dtype="float32", max_doc_words=WORDS, threads=1)


def job(out: Path, data: Path = SLICE, **kwargs):
    kwargs.setdefault("depth", DEPTH)
    return run_job(data, out, kwargs.pop("scorer", None) or scorer(), progress=False, log=lambda m: None, **kwargs)


def assert_same_run(a: Path, b: Path) -> None:
    """Same queries in the same order, same documents in the same order, scores within 1e-6."""
    ra, rb = run_files.read_results(a), run_files.read_results(b)
    assert list(ra) == list(rb)
    for qid in ra:
        assert ra[qid][0] == rb[qid][0], qid
        assert ra[qid][1] == pytest.approx(rb[qid][1], abs=1e-6), qid


@pytest.fixture(scope="module")
def reference(tmp_path_factory, smollm2_dir) -> Path:
    """An uninterrupted one-process job over the slice."""
    out = tmp_path_factory.mktemp("reference") / "run.core.trec"
    summary = job(out)
    assert summary["queries"] == {"planned": 5, "written": 5, "resumed": 0, "scored_now": 5, "failed": 0}
    return out


# ---------------------------------------------------------------------- run files (no model)
def test_read_run_names_malformed_lines_and_keeps_rank_order(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text(
        "q1 Q0 b 2 1.0 tag\n\nq1 Q0 a 1 2.0 tag\nnot a run line\nq1 Q0 c x 0.5 tag\nq2 Q0 d 1 3.0\nq1 Q0 a 3 0.1 tag\n",
        encoding="utf-8",
    )
    run = run_files.read_run(path)
    assert run.order == {"q1": ["a", "b"], "q2": ["d"]}
    assert run.tag == "tag" and run.lines == 6 and run.duplicates == 1
    assert [(p.line, p.reason.split(",")[0]) for p in run.problems] == [
        (4, "expected 'qid Q0 docid rank score [tag]'"),
        (5, "rank and score must be numbers"),
    ]
    assert str(run.problems[0]).startswith(f"{path}:4: expected")


def test_write_run_is_atomic_and_round_trips(tmp_path):
    out = tmp_path / "out.trec"
    results = [("q1", ["a", "b"], [0.5, 0.25]), ("q2", ["c"], [1e-9])]
    assert run_files.write_run(out, results, run_files.run_tag("/models/My Model/", "core")) == 3
    assert out.read_text().splitlines()[0] == "q1 Q0 a 1 0.5 core-rerank.My_Model.core"
    assert run_files.read_results(out) == {"q1": (["a", "b"], [0.5, 0.25]), "q2": (["c"], [1e-9])}
    assert [p.name for p in tmp_path.iterdir()] == ["out.trec"]  # no temporary file left


def test_part_store_ignores_a_torn_line_and_checks_settings(tmp_path):
    store = run_files.PartStore(tmp_path / "out.trec")
    store.open({"depth": 5})
    store.append("q1", ["a", "b"], [2.0, 1.0])
    store.close()
    with open(next(store.folder.glob("part-*.jsonl")), "a") as handle:
        handle.write('{"qid": "q2", "doc_ids": ["c"')  # a job killed mid-write
    again = run_files.PartStore(tmp_path / "out.trec")
    again.open({"depth": 5})
    assert again.done() == {"q1": (["a", "b"], [2.0, 1.0])}
    with pytest.raises(ValueError, match="depth: 5 then, 10 now"):
        run_files.PartStore(tmp_path / "out.trec").open({"depth": 10})


def bad_folder(tmp_path: Path) -> Path:
    """The slice plus a query with empty text, and a run with every kind of bad line."""
    data = tmp_path / "bad"
    shutil.copytree(SLICE, data)
    with open(data / "queries.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"_id": "99", "text": "   "}) + "\n")
    good = [line for line in (SLICE / "run.bm25.top100.trec").read_text().splitlines() if line.startswith("1 ")]
    lines = [
        *good[:2],
        "1 Q0 NOT-IN-CORPUS 3 4.0 bm25",  # missing document: left out, reported
        "garbage line",  # line 4: malformed
        "unknown-q Q0 4414547 1 9.0 bm25",  # query id not in queries.jsonl
        "99 Q0 4414547 1 9.0 bm25",  # empty query text
        "3 Q0 ALSO-MISSING 1 1.0 bm25",  # every candidate missing: no candidates
        "1 Q0 4414547 four 1.0 bm25",  # line 8: rank not a number
    ]
    (data / "run.bad.trec").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def test_bad_input_is_reported_with_counts_and_ids(tmp_path):
    data = bad_folder(tmp_path)
    plan = plan_job(data, data / "run.bad.trec", depth=DEPTH)
    assert [item["query_id"] for item in plan.items] == ["1"]
    assert plan.items[0]["doc_ids"] == [
        line.split()[2] for line in (data / "run.bad.trec").read_text().splitlines()[:2]
    ]
    report = plan.report
    assert report["malformed_lines"]["count"] == 2
    assert [line.split(": ")[0] for line in report["malformed_lines"]["lines"]] == [
        f"{data / 'run.bad.trec'}:4",
        f"{data / 'run.bad.trec'}:8",
    ]
    assert report["unknown_query_ids"] == {"count": 1, "ids": ["unknown-q"]}
    assert report["empty_query_text"] == {"count": 1, "ids": ["99"]}
    assert report["missing_doc_ids"]["count"] == 2
    assert report["missing_doc_ids"]["examples"] == {"1": ["NOT-IN-CORPUS"], "3": ["ALSO-MISSING"]}
    assert report["no_candidates"] == {"count": 1, "ids": ["3"]}
    assert report["judged_queries_not_in_run"] == {"count": 3, "ids": ["5", "13", "36"]}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "it holds no run lines"),
        ("\n\n", "it holds no run lines"),
        ("one two three\n", r"none of its 1 lines could be read; first: .*run.trec:1: expected"),
    ],
)
def test_an_empty_or_unreadable_run_is_a_clear_error(tmp_path, text, message):
    (tmp_path / "run.trec").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        plan_job(SLICE, tmp_path / "run.trec")


def test_a_query_that_fails_to_score_is_an_error_row_not_a_crash():
    class Broken:
        def score(self, query, documents):
            raise RuntimeError("out of memory")

    result = score_item(Broken(), {"query_id": "q", "query": "x", "doc_ids": ["a"], "documents": ["t"]})
    assert result["error"] == "RuntimeError: out of memory" and result["scores"] == []


def test_more_workers_without_ray_names_the_extra(monkeypatch, tmp_path):
    from core_rerank.cli import rerank_run

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    parser = argparse.ArgumentParser()
    rerank_run.register(parser.add_subparsers())
    args = parser.parse_args(["rerank-run", "--data", str(SLICE), "--out", str(tmp_path / "o.trec"), "--workers", "2"])
    with pytest.raises(ImportError, match=r'pip install "core-rerank\[ray\]"'):
        args.func(args)


def test_cli_errors_ours_are_tracebacks_theirs_are_one_line(monkeypatch, tmp_path, capsys):
    from core_rerank import rerank_job

    missing = ["rerank-run", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.trec")]
    assert cli.main(missing) == 2 and "no data folder" in capsys.readouterr().err

    def bug(*args, **kwargs):
        raise KeyError("a bug of ours")

    monkeypatch.setattr(rerank_job, "plan_job", bug)
    with pytest.raises(KeyError, match="a bug of ours"):  # not a one-line "bad input" message
        cli.main(["rerank-run", "--data", str(SLICE), "--out", str(tmp_path / "o.trec")])


# ---------------------------------------------------------------------- in process (real model)
@pytest.mark.real_model
@pytest.mark.slow
def test_failed_queries_exit_3_are_named_and_retried_alone(tmp_path, monkeypatch, capsys, reference):
    """A query whose scoring fails: the run holds the others, the summary names it, the exit
    code is 3; the same command again scores only that query and exits 0."""
    out = tmp_path / "run.trec"
    argv = ["rerank-run", "--data", str(SLICE), "--depth", str(DEPTH), "--out", str(out), "--quiet",
            "--device", "cpu", "--dtype", "float32", "--max-doc-words", str(WORDS), "--threads", "1"]  # fmt: skip
    load = RerankerSettings.load

    def flaky_load(self):
        reranker = load(self)
        real_score = reranker.score

        def score(query, documents):
            if query.startswith("1,000 genomes"):  # query 3
                raise RuntimeError("out of memory")
            return real_score(query, documents)

        reranker.score = score
        return reranker

    monkeypatch.setattr(RerankerSettings, "load", flaky_load)
    assert cli.main(argv) == 3
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["queries"]["failed"] == 1 and summary["input"]["failed"]["ids"] == ["3"]
    assert "RuntimeError: out of memory" in summary["input"]["failed"]["errors"]["3"]
    assert "exit code 3" in capsys.readouterr().err
    assert sorted(run_files.read_results(out)) == sorted(set(QIDS) - {"3"})
    monkeypatch.setattr(RerankerSettings, "load", load)
    assert cli.main(argv) == 0
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["queries"]["resumed"] == 4 and summary["queries"]["scored_now"] == 1
    assert_same_run(out, reference)


@pytest.mark.real_model
@pytest.mark.slow
def test_bad_input_job_finishes_and_writes_what_it_can(tmp_path, smollm2_dir):
    data = bad_folder(tmp_path)
    summary = job(tmp_path / "out.trec", data, run_file=data / "run.bad.trec")
    assert summary["queries"]["written"] == 1 and summary["lines"] == 2
    assert summary["input"]["no_candidates"]["ids"] == ["3"]
    lines = (tmp_path / "out.trec").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["1", "1"]
    assert float(lines[0].split()[4]) >= float(lines[1].split()[4])
    assert json.loads((tmp_path / "out.trec.summary.json").read_text())["input"]["malformed_lines"]["count"] == 2


@pytest.mark.real_model
@pytest.mark.slow
def test_reference_run_is_a_valid_trec_run(reference):
    lines = [line.split() for line in reference.read_text().splitlines()]
    assert [q for q in dict.fromkeys(parts[0] for parts in lines)] == QIDS
    for qid in QIDS:
        rows = [parts for parts in lines if parts[0] == qid]
        assert [int(parts[3]) for parts in rows] == list(range(1, DEPTH + 1))
        scores = [float(parts[4]) for parts in rows]
        assert scores == sorted(scores, reverse=True)
        assert {parts[5] for parts in rows} == {"core-rerank.smollm2-135m-instruct.core"}
    assert not Path(str(reference) + ".parts").exists()


@pytest.mark.real_model
@pytest.mark.slow
def test_interrupted_job_resumes_only_the_missing_queries(tmp_path, reference):
    out = tmp_path / "run.core.trec"
    seen: list[str] = []

    def interrupt_after_two(result):
        seen.append(result["query_id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job(out, on_result=interrupt_after_two)
    assert not out.exists()
    store = run_files.PartStore(out)
    assert set(store.done()) == set(seen)
    with open(next(store.folder.glob("part-*.jsonl")), "a") as handle:
        handle.write('{"qid": "36", "doc_ids": ["4')  # killed while writing a third result

    redone: list[str] = []
    summary = job(out, on_result=lambda r: redone.append(r["query_id"]))
    assert sorted(redone) == sorted(set(QIDS) - set(seen))
    assert summary["queries"]["resumed"] == 2 and summary["queries"]["scored_now"] == 3
    assert_same_run(out, reference)
    assert not store.folder.exists()

    # Finished: the same command again scores nothing and writes the same run.
    before = out.read_text()
    assert job(out)["queries"]["scored_now"] == 0
    assert out.read_text() == before
    # Other settings: refused, not mixed.
    with pytest.raises(ValueError, match="depth: 5 then, 4 now"):
        job(out, depth=4)


# ---------------------------------------------------------------------- Ray (real local cluster)
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from core_rerank.ray import init_ray

    init_ray(workers=2, threads_per_worker=1)
    yield ray
    ray.shutdown()


@pytest.mark.real_model
@pytest.mark.slow
def test_two_ray_workers_give_the_one_process_run(tmp_path, reference, ray_cluster):
    out = tmp_path / "run.ray.trec"
    summary = job(out, workers=2, threads_per_worker=1)
    assert summary["queries"]["scored_now"] == 5 and summary["workers"] == 2
    assert_same_run(out, reference)


@pytest.mark.real_model
@pytest.mark.slow
def test_a_killed_actor_is_restarted_and_its_batch_retried(reference, ray_cluster):
    """Ten queries (the slice twice); one actor is killed with ray.kill after the first result.

    Ray Data's pool actors are unnamed, so the handle comes from the actor table and the core
    worker (Ray internals: ``ray._private.state.actors`` and ``get_actor_handle``).
    ``no_restart=False``: Ray restarts the actor and retries the batches it was running.
    """
    import ray
    from ray._private import state

    from core_rerank.ray import rerank_dataset

    items = plan_job(SLICE, depth=DEPTH).items
    rows = [{**item, "query_id": f"{item['query_id']}#{copy}"} for copy in (1, 2) for item in items]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))
    settings = scorer()
    reranked = rerank_dataset(ds, workers=2, threads_per_worker=1, settings=settings)
    killed = []
    results = {}
    for row in reranked.iter_rows():
        results.setdefault(row["query_id"], []).append(row)
        if not killed:
            alive = [
                actor_id
                for actor_id, info in state.actors().items()
                if "RerankActor" in info.get("ActorClassName", "") and info["State"] == "ALIVE"
            ]
            handle = ray._private.worker.global_worker.core_worker.get_actor_handle(ray.ActorID.from_hex(alive[0]))
            ray.kill(handle, no_restart=False)
            killed.append(alive[0])
    assert sorted(results) == sorted(row["query_id"] for row in rows)
    assert all(len(copies) == 1 and copies[0]["error"] is None for copies in results.values())
    assert state.actors(killed[0])["NumRestarts"] >= 1
    expected = run_files.read_results(reference)
    for qid, (row,) in results.items():
        doc_ids, scores = expected[qid.split("#")[0]]
        assert list(row["doc_ids"]) == doc_ids
        assert list(row["scores"]) == pytest.approx(scores, abs=1e-6)


@pytest.mark.real_model
@pytest.mark.slow
def test_interrupted_ray_job_resumes_on_ray(tmp_path, reference, ray_cluster):
    """Interrupt a 2-worker job after its first result (Ctrl-C in the driver), restart it on Ray."""
    out = tmp_path / "run.core.trec"
    first: list[str] = []

    def stop_after_one(result):
        first.append(result["query_id"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job(out, workers=2, threads_per_worker=1, on_result=stop_after_one)
    assert set(run_files.PartStore(out).done()) == set(first)
    redone: list[str] = []
    summary = job(out, workers=2, threads_per_worker=1, on_result=lambda r: redone.append(r["query_id"]))
    assert sorted(redone) == sorted(set(QIDS) - set(first))
    assert summary["queries"]["resumed"] == 1
    assert_same_run(out, reference)
