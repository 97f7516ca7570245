"""``--first-stage-scores`` on ``core-rerank rerank-run`` and ``core-rerank eval`` (real SmolLM2 on
the SciFact slice): the run file's scores, not its rank column, order the prompts, so a run with
its ranks shuffled (scores kept) reranks exactly like the sorted one; without the flag the rank
order is used as before. The records say it ran, and a resume across the setting is refused.
Also the pieces the Ray paths share: ``pool.score_item`` and the Ray Data actor's batch."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from core_rerank import cli, run_files
from core_rerank.pool import score_item
from core_rerank.settings import RerankerSettings
from core_rerank.utils import DEFAULT_MODEL

pytestmark = pytest.mark.real_model

SLICE = Path(__file__).parent / "data" / "scifact_slice"
DEPTH = 5
WORDS = 30
MODEL = ["--device", "cpu", "--dtype", "float32", "--max-doc-words", str(WORDS), "--threads", "1"]


def write_runs(folder: Path) -> tuple[Path, Path]:
    """The slice's top-DEPTH candidates per query twice: ranks as the scores give them, and the
    same lines (same scores) with the ranks shuffled."""
    run = run_files.read_run(SLICE / "run.bm25.top100.trec")
    rng = random.Random(7)
    sorted_lines, shuffled_lines = [], []
    for qid, docs in run.order.items():
        top = docs[:DEPTH]
        ranks = list(range(1, len(top) + 1))
        while len(top) > 1 and ranks == sorted(ranks):
            rng.shuffle(ranks)
        for rank, doc in enumerate(top, start=1):
            sorted_lines.append(f"{qid} Q0 {doc} {rank} {run.scores[qid][doc]} bm25\n")
        for rank, doc in sorted(zip(ranks, top)):
            shuffled_lines.append(f"{qid} Q0 {doc} {rank} {run.scores[qid][doc]} bm25\n")
    paths = folder / "sorted.trec", folder / "shuffled.trec"
    for path, lines in zip(paths, (sorted_lines, shuffled_lines)):
        path.write_text("".join(lines))
    return paths


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smollm2_dir):
    return write_runs(tmp_path_factory.mktemp("runs"))


def rerank_run(run: Path, out: Path, *flags: str, code: int = 0) -> dict:
    argv = ["rerank-run", "--data", str(SLICE), "--run", str(run), "--depth", str(DEPTH), "--out", str(out)]
    assert cli.main([*argv, "--quiet", *MODEL, *flags]) == code
    return json.loads(out.with_name(out.name + ".summary.json").read_text())


def test_rerank_run_orders_the_prompts_by_the_runs_scores(runs, tmp_path, capsys):
    sorted_run, shuffled_run = runs
    on_sorted = rerank_run(sorted_run, tmp_path / "a.trec", "--first-stage-scores")
    on_shuffled = rerank_run(shuffled_run, tmp_path / "b.trec", "--first-stage-scores")
    assert on_sorted["settings"]["first_stage_scores"] is True and on_shuffled["settings"]["first_stage_scores"]
    a, b = run_files.read_results(tmp_path / "a.trec"), run_files.read_results(tmp_path / "b.trec")
    assert a == b and len(a) == 5  # the very same prompts: same documents, same scores, same order
    off = rerank_run(shuffled_run, tmp_path / "c.trec")
    assert "first_stage_scores" not in off["settings"]  # off: the settings of before
    c = run_files.read_results(tmp_path / "c.trec")
    assert c != a  # the shuffled rank order made other prompts
    rerank_run(shuffled_run, tmp_path / "c.trec", "--first-stage-scores", code=2)  # bad input: exit 2
    assert "first_stage_scores: None then, True now" in capsys.readouterr().err


def eval_run(run: Path, out: Path, *flags: str, code: int = 0) -> dict:
    argv = ["eval", "--data", str(SLICE), "--run", str(run), "--depth", str(DEPTH), "--methods", "first-stage,core"]
    assert cli.main([*argv, "--out", str(out), "--quiet", *MODEL, *flags]) == code
    return json.loads(out.read_text()) if out.is_file() else {}


def per_document(results: dict) -> dict[str, dict[str, float]]:
    candidates = results["data"]["candidates"]
    return {q: dict(zip(candidates[q], r["scores"])) for q, r in results["entries"]["core"]["per_query"].items()}


def test_eval_orders_the_prompts_by_the_runs_scores_and_records_it(runs, tmp_path, capsys):
    sorted_run, shuffled_run = runs
    on_sorted = eval_run(sorted_run, tmp_path / "a.json", "--first-stage-scores")
    on_shuffled = eval_run(shuffled_run, tmp_path / "b.json", "--first-stage-scores")
    assert on_sorted["settings"]["first_stage_scores"] is True
    assert per_document(on_sorted) == per_document(on_shuffled)
    assert on_sorted["entries"]["core"]["summary"]["ndcg@10"] == on_shuffled["entries"]["core"]["summary"]["ndcg@10"]
    off = eval_run(shuffled_run, tmp_path / "c.json")
    assert off["settings"]["first_stage_scores"] is False
    assert per_document(off) != per_document(on_shuffled)
    capsys.readouterr()
    eval_run(shuffled_run, tmp_path / "c.json", "--first-stage-scores", code=2)  # no resume across the setting
    assert "first_stage_scores" in capsys.readouterr().err
    legacy = json.loads((tmp_path / "c.json").read_text())
    del legacy["settings"]["first_stage_scores"]  # a file from before the setting: resumed as off
    (tmp_path / "c.json").write_text(json.dumps(legacy))
    assert per_document(eval_run(shuffled_run, tmp_path / "c.json")) == per_document(off)
    eval_run(shuffled_run, tmp_path / "d.json", "--first-stage-scores", "--one-pass", code=2)
    assert "--one-pass" in capsys.readouterr().err


def test_work_items_carry_first_stage_scores_in_process_and_through_a_ray_batch(make_reranker):
    reranker = make_reranker()
    documents = ["Tides follow the moon.", "Bananas are yellow.", "The sea rises twice a day.", "Paris is in France."]
    item = {"query_id": "q", "query": "what causes tides?", "doc_ids": ["a", "b", "c", "d"], "documents": documents}
    first = [0.5, 3.0, 2.0, 1.0]
    with_scores = score_item(reranker, {**item, "first_stage_scores": first})
    expected = reranker.score(item["query"], documents, first_stage_scores=first)
    assert dict(zip(with_scores["doc_ids"], with_scores["scores"])) == dict(zip(item["doc_ids"], expected))
    plain = score_item(reranker, item)
    assert score_item(reranker, {**item, "first_stage_scores": None})["scores"] == plain["scores"]
    assert dict(zip(plain["doc_ids"], plain["scores"])) != pytest.approx(
        dict(zip(with_scores["doc_ids"], with_scores["scores"])), rel=1e-3
    )
    assert score_item(reranker, {**item, "first_stage_scores": [1.0]})["error"].startswith("InputError")

    pytest.importorskip("ray")
    import pyarrow as pa

    from core_rerank.ray import actor_class

    settings = RerankerSettings(model=DEFAULT_MODEL, device="cpu", dtype="float32", threads=1)
    actor = actor_class(settings)()  # what each pool member runs, here without a cluster
    batch = pa.Table.from_pylist([{**item, "first_stage_scores": first}])
    row = actor(batch).to_pylist()[0]
    assert row["error"] is None and dict(zip(row["doc_ids"], row["scores"])) == pytest.approx(
        dict(zip(item["doc_ids"], expected)), rel=1e-6
    )
