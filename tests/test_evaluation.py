"""The evaluation harness: planning, evaluate_heads, and `core-rerank eval` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from core_rerank import evaluation
from core_rerank.datasets import load_eval_data
from core_rerank.evaluation import (
    EvalSettings,
    evaluate_heads,
    format_table,
    layers_after_pruning,
    loop,
    parse_prune,
    parse_sweep_num_heads,
    passes,
    plan_entries,
    read_results,
    run_evaluation,
    upgrade_results,
)
from core_rerank.head_config import HeadConfig

SLICE = Path(__file__).parent / "data" / "scifact_slice"


def _naive_ndcg10(ranked, judged):
    """Independent nDCG@10 of a ranked list (linear gains)."""
    dcg = sum(judged.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if judged.get(d, 0) > 0)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


class _ConstantReranker:
    """Scores every document alike: the ranking must stay the first-stage order."""

    def __init__(self):
        self.calls = []

    def score(self, query, documents):
        self.calls.append((query, len(documents)))
        assert all(isinstance(d, dict) and d["text"] for d in documents)
        return [1.0] * len(documents)


class _ReverseReranker:
    def score(self, query, documents):
        return [float(i) for i in range(len(documents))]  # last candidate first


def test_evaluate_heads_uses_the_folder_run_and_first_stage_tie_break():
    data = load_eval_data(SLICE)
    fake = _ConstantReranker()
    value = evaluate_heads(fake, SLICE, depth=20)
    expected = [_naive_ndcg10(data.candidates(q, 20), data.qrels[q]) for q in data.queries]
    assert value == pytest.approx(sum(expected) / 5)
    assert len(fake.calls) == 5 and {n for _, n in fake.calls} == {20}
    # trec_eval's doc-id tie-break on the raw (all equal) scores would give another value here
    by_doc_id = [_naive_ndcg10(sorted(data.candidates(q, 20), reverse=True), data.qrels[q]) for q in data.queries]
    assert sum(by_doc_id) / 5 != pytest.approx(value)
    reverse = evaluate_heads(_ReverseReranker(), SLICE, depth=5, max_queries=3)
    expected = [_naive_ndcg10(data.candidates(q, 5)[::-1], data.qrels[q]) for q in list(data.queries)[:3]]
    assert reverse == pytest.approx(sum(expected) / 3)


def _config(heads, method="core"):
    return HeadConfig(method=method, heads=heads, name="test", model_ids=["smollm2-135m-instruct"])


def test_plan_sweeps_and_pruning_aware_reselection():
    table = {"20-1": 0.9, "3-2": 0.8, "12-0": 0.7, "25-4": 0.6, "5-5": 0.5}
    core = _config([[20, 1], [3, 2], [12, 0]])
    assert parse_sweep_num_heads("1,2,all") == [1, 2, "all"] and parse_prune("0,0.5") == [0.0, 0.5]
    with pytest.raises(ValueError):
        parse_prune("1.0")
    assert layers_after_pruning(30, 0.5) == 15 and layers_after_pruning(30, 0.7) == 9
    entries = {
        e.label: e
        for e in plan_entries(
            ["first-stage", "icr", "core"],
            {"core": core},
            30,
            sweep_num_heads=[1, 4, "all"],
            prune=[0, 0.5],
            head_scores={"core": table},
        )
    }
    assert [tuple(h) for h in entries["core@num_heads=4"].heads.heads] == [(20, 1), (3, 2), (12, 0), (25, 4)]
    assert entries["core@num_heads=all"].method == "icr" and entries["core@num_heads=all"].same_as == "icr"
    pruned = entries["core@prune=0.5"]
    assert pruned.num_layers_to_keep == 15
    assert [tuple(h) for h in pruned.heads.heads] == [(3, 2), (12, 0), (5, 5)]  # top-3 inside 15 layers
    assert entries["core@prune=0"].num_layers_to_keep == "all"  # every layer built
    assert entries["core"].num_layers_to_keep is None  # as many as the heads need
    assert "icr@prune=0.5" not in entries
    # without a score table: keep the given heads that fit, or skip the level
    plain = {e.label: e for e in plan_entries(["core"], {"core": core}, 30, prune=[0.5, 0.9])}
    assert [tuple(h) for h in plain["core@prune=0.5"].heads.heads] == [(3, 2), (12, 0)]
    assert plain["core@prune=0.9"].heads is None and "skipped" in plain["core@prune=0.9"].note


@pytest.mark.real_model
@pytest.mark.slow
def test_eval_end_to_end_on_scifact_slice(smollm2_dir, tmp_path, monkeypatch):
    from core_rerank import cli

    heads = tmp_path / "heads.json"
    _config([[4, 3], [2, 1], [6, 0]]).to_json(heads)
    table = tmp_path / "scores.json"
    table.write_text(json.dumps({"4-3": 0.9, "2-1": 0.8, "6-0": 0.7, "1-5": 0.6, "8-2": 0.95}))
    out, plot = tmp_path / "results.json", tmp_path / "sweep.png"
    argv = [
        "eval",
        "--data",
        str(SLICE),
        "--depth",
        "3",
        "--max-doc-words",
        "25",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--methods",
        "first-stage,icr,core",
        "--heads",
        str(heads),
        "--head-scores",
        str(table),
        "--sweep-num-heads",
        "1,all",
        "--prune",
        "0.8",
        "--out",
        str(out),
        "--plot",
        str(plot),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    results = json.loads(out.read_text())
    data = load_eval_data(SLICE)
    entries = results["entries"]
    assert set(entries) == {"first-stage", "icr", "core", "core@num_heads=1", "core@num_heads=all", "core@prune=0.8"}
    assert results["settings"]["depth"] == 3 and results["versions"]["torch"]
    assert results["data"]["candidates"] == {q: data.candidates(q, 3) for q in data.queries}
    for label in ("first-stage", "icr", "core", "core@num_heads=1", "core@prune=0.8"):
        entry = entries[label]
        assert entry["summary"]["queries"] == 5 and entry["summary"]["complete"]
        per_query = []
        for qid, record in entry["per_query"].items():
            docs = results["data"]["candidates"][qid]
            scores = [-math.inf if s is None else s for s in record["scores"]]
            if label == "first-stage":
                ranked = [d for _, d in sorted(zip(scores, docs), reverse=True)]
            else:  # score descending, ties by first-stage rank
                ranked = [docs[i] for i in sorted(range(len(docs)), key=lambda i: (-scores[i], i))]
            per_query.append(_naive_ndcg10(ranked, data.qrels[qid]))
            assert record["metrics"]["ndcg@10"] == pytest.approx(per_query[-1], abs=1e-6)
        assert entry["summary"]["ndcg@10"] == pytest.approx(sum(per_query) / 5, abs=1e-5)
    assert entries["core"]["num_layers_built"] == 7  # deepest head (6) + 1
    assert entries["core@num_heads=1"]["heads"]["heads"] == [[8, 2]]
    assert entries["core@prune=0.8"]["num_layers_built"] == 6  # 24 of 30 layers dropped
    assert entries["core@prune=0.8"]["heads"]["heads"] == [[4, 3], [2, 1], [1, 5]]
    assert entries["core@num_heads=all"]["summary"] == entries["icr"]["summary"]
    for label in ("icr", "core"):
        assert entries[label]["summary"]["time_per_query_s"] > 0
        assert entries[label]["peak_mem_mb"] > 0
    assert entries["icr"]["heads"] is None and entries["core"]["heads"]["model_ids"] == ["smollm2-135m-instruct"]
    assert plot.stat().st_size > 1000

    # --one-pass: one all-heads model per query gives every entry the same scores.
    loads = []
    real_load = passes.build_reranker
    monkeypatch.setattr(
        passes, "build_reranker", lambda settings, spec: loads.append(spec) or real_load(settings, spec)
    )
    shared = run_evaluation(
        EvalSettings(
            data_dir=str(SLICE),
            depth=3,
            max_doc_words=25,
            device="cpu",
            dtype="float32",
            methods=("first-stage", "icr", "core"),
            heads=str(heads),
            head_scores=str(table),
            sweep_num_heads=(1, "all"),
            prune=(0.8,),
            progress=False,
            one_pass=True,
            compare_heads=(("again", str(heads)),),
        ),
        out=tmp_path / "one_pass.json",
        log=lambda msg: None,
    )
    assert [spec.method for spec in loads] == ["icr"]
    assert shared["entries"]["core[again]"]["per_query"] == shared["entries"]["core"]["per_query"]
    assert shared["settings"]["one_pass"] is True
    for label in ("icr", "core", "core@num_heads=1", "core@prune=0.8"):
        one, alone = shared["entries"][label], entries[label]
        assert one["one_pass"] and one["num_layers_built"] == 30 and evaluation.ONE_PASS_NOTE in one["note"]
        assert evaluation.ONE_PASS_NOTE not in (alone["note"] or "")
        for qid, record in alone["per_query"].items():
            assert one["per_query"][qid]["scores"] == pytest.approx(record["scores"], rel=1e-6, abs=1e-9), label
        assert one["summary"]["ndcg@10"] == pytest.approx(alone["summary"]["ndcg@10"], abs=1e-9)
    assert (
        evaluation.plot_results(shared, tmp_path / "one_pass.png") and (tmp_path / "one_pass.png").stat().st_size > 1000
    )
    monkeypatch.undo()

    # Resume: a finished file is read back, nothing is recomputed.
    def fail(*args, **kwargs):
        raise AssertionError("resumed entries must not be recomputed")

    monkeypatch.setattr(passes, "build_reranker", fail)
    again = run_evaluation(
        EvalSettings(
            data_dir=str(SLICE),
            depth=3,
            max_doc_words=25,
            device="cpu",
            dtype="float32",
            methods=("first-stage", "icr", "core"),
            heads=str(heads),
            head_scores=str(table),
            sweep_num_heads=(1, "all"),
            prune=(0.8,),
            progress=False,
        ),
        out=out,
        log=lambda msg: None,
    )
    assert again["entries"]["core"]["summary"] == entries["core"]["summary"]
    # A partial file (one query lost) resumes only that query; other settings are refused.
    partial = json.loads(out.read_text())
    del partial["entries"]["core"]["per_query"]["13"]
    out.write_text(json.dumps(partial))
    calls = []
    real_score_query = loop.score_query
    stub = SimpleNamespace(
        model=SimpleNamespace(config=SimpleNamespace(num_hidden_layers=7)),
        device="cpu",
        settings=lambda: {"heads": SimpleNamespace(name="stub", method="core", heads=[(0, 0)]), "dtype": "float32"},
    )
    monkeypatch.setattr(passes, "build_reranker", lambda settings, spec: stub)
    monkeypatch.setattr(
        loop,
        "score_query",
        lambda r, d, q, depth: calls.append(q) or real_score_query(_ConstantReranker(), d, q, depth),
    )
    run_evaluation(
        EvalSettings(
            data_dir=str(SLICE),
            depth=3,
            max_doc_words=25,
            device="cpu",
            dtype="float32",
            methods=("first-stage", "core"),
            heads=str(heads),
            progress=False,
        ),
        out=out,
        log=lambda msg: None,
    )
    assert calls == ["13"]
    with pytest.raises(ValueError, match="depth"):
        run_evaluation(
            EvalSettings(data_dir=str(SLICE), depth=4, max_doc_words=25, dtype="float32", methods=("first-stage",)),
            out=out,
            log=lambda msg: None,
        )


def test_score_tables_from_files_and_detected_configs(tmp_path):
    from core_rerank.evaluation import load_score_table

    detected = HeadConfig(heads=[[1, 2]], provenance={"score": "core@0.1", "head_scores": {"1-2": 0.5, "3-4": 0.1}})
    assert load_score_table(None, detected) == ({"1-2": 0.5, "3-4": 0.1}, "provenance.head_scores of the head config")
    assert load_score_table(None, _config([[1, 2]])) == (None, None)
    full = tmp_path / "table.json"
    full.write_text(
        json.dumps({"format": "t", "tables": {"core@0.1": {"1-1": 1.0}, "qr": {"2-2": 1.0}}, "scores": {"0-0": 1.0}})
    )
    assert load_score_table(full, detected)[0] == {"1-1": 1.0}
    assert load_score_table(full, _config([[1, 2]]))[0] == {"0-0": 1.0}
    (tmp_path / "bad.json").write_text('{"heads": 3}')
    with pytest.raises(ValueError, match="score table"):
        load_score_table(tmp_path / "bad.json", None)


ROOT = Path(__file__).resolve().parents[1]


def test_version_1_results_files_are_read_with_the_new_names():
    v1 = json.loads((ROOT / "results" / "dl19_depth20_w80_sweeps.json").read_text(encoding="utf-8"))
    assert v1["format_version"] == 1 and "core@k=1" in v1["entries"]
    v2 = upgrade_results(v1)
    assert "core@k=1" in v1["entries"] and v1["entries"]["core"]["fingerprint"]["num_layers_to_keep"] == "auto"
    assert v2["format_version"] == 2 and v2["settings"]["sweep_num_heads"] == v1["settings"]["sweep_k"]
    assert v2["entries"]["core@num_heads=1"]["group"] == "sweep-num-heads"
    assert v2["entries"]["core@num_heads=8"]["same_as"] == "core"
    layers = {label: e["fingerprint"]["num_layers_to_keep"] for label, e in v2["entries"].items()}
    assert layers["core"] is None and layers["icr"] == "all" and layers["core@prune=0.3"] == 21
    assert v2["entries"]["core"]["summary"] == v1["entries"]["core"]["summary"]
    assert upgrade_results(v2) == v2
    # The same table from either version (labels apart): nothing is recomputed.
    assert (
        format_table(v1)
        == format_table(v2)
        == format_table(read_results(ROOT / "results" / "dl19_depth20_w80_sweeps.json"))
    )
    assert "core@num_heads=1" in format_table(v1)


def test_docs_results_tables_reprint_from_the_committed_json():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_results_tables", ROOT / "scripts" / "check_results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.check(ROOT / "docs" / "results.md") == []
