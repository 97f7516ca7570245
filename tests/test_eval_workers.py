"""``core-rerank eval --workers 2``: an entry's queries scored on the Ray Data actor pool give the
scores of the in-process loop (real SmolLM2, SciFact slice, a real local Ray cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core_rerank import cli

SLICE = Path(__file__).parent / "data" / "scifact_slice"
COMMON = ["eval", "--data", str(SLICE), "--depth", "4", "--max-doc-words", "25", "--device", "cpu",
          "--dtype", "float32", "--methods", "first-stage,core", "--quiet", "--threads", "1"]  # fmt: skip


@pytest.mark.real_model
@pytest.mark.slow
def test_eval_on_two_workers_equals_the_in_process_eval(smollm2_dir, tmp_path):
    ray = pytest.importorskip("ray")
    from core_rerank.ray import init_ray

    local, pooled = tmp_path / "local.json", tmp_path / "pooled.json"
    assert cli.main([*COMMON, "--out", str(local)]) == 0
    init_ray(workers=2, threads_per_worker=1)
    try:
        assert cli.main([*COMMON, "--workers", "2", "--threads-per-worker", "1", "--out", str(pooled)]) == 0
    finally:
        ray.shutdown()
    a, b = json.loads(local.read_text())["entries"]["core"], json.loads(pooled.read_text())["entries"]["core"]
    assert b["workers"] == 2 and b["num_layers_built"] == a["num_layers_built"]
    assert set(a["per_query"]) == set(b["per_query"]) and len(a["per_query"]) == 5
    for qid, record in a["per_query"].items():
        assert b["per_query"][qid]["scores"] == pytest.approx(record["scores"], rel=1e-6, abs=1e-9), qid
    assert b["summary"]["ndcg@10"] == pytest.approx(a["summary"]["ndcg@10"], abs=1e-9)


def test_one_pass_does_not_combine_with_workers(tmp_path, capsys):
    pytest.importorskip("ray")
    assert cli.main([*COMMON, "--one-pass", "--workers", "2", "--out", str(tmp_path / "r.json")]) == 2
    assert "does not combine with --workers" in capsys.readouterr().err
