"""Prompt windows (``window_tokens``): what the windowed reranker runs, and what it leaves alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from slice_prompts import SLICE, candidates, recording

from core_rerank import CoReReranker, HeadConfig
from core_rerank.datasets import load_eval_data
from core_rerank.evaluation import parse_sweep_window, plan_entries
from core_rerank.windows import MARKER_TOKENS, parse_window_tokens, plan_windows

DATA = Path(__file__).parent / "data"
QUERY = "Does statin therapy reduce cardiovascular events?"


@pytest.fixture(scope="module")
def slice_data():
    return load_eval_data(SLICE)


def test_windowed_scores_equal_each_window_scored_on_its_own(make_reranker, slice_data):
    one_prompt = make_reranker(method="core", window_tokens=None, max_doc_words=80)
    windowed = CoReReranker(
        one_prompt.model, one_prompt.tokenizer, heads=one_prompt.heads, max_doc_words=80, window_tokens=300
    )
    qid = next(iter(slice_data.queries))
    query, docs = slice_data.queries[qid], candidates(slice_data, qid)
    windows = windowed.windows(query, docs)
    assert len(windows) >= 4 and sorted(i for w in windows for i in w) == list(range(len(docs)))
    prompts = recording(windowed)
    scores = windowed.score(query, docs)
    assert len(prompts) == len(windows)
    for window, prompt in zip(windows, prompts):
        alone = one_prompt.prepare(query, [docs[i] for i in window])  # same prompt, same spans
        assert prompt.input_ids == alone.input_ids and prompt.document_spans == alone.document_spans
        # to 1e-4: the packed pass's rounding depends on what shares it (tests/test_order.py)
        assert [scores[i] for i in window] == pytest.approx(
            one_prompt.score(query, [docs[i] for i in window]), rel=1e-4, abs=1e-6
        )
    # the deal: every window got one of the first four first-stage candidates
    assert sorted(min(w) for w in windows[:4]) == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["core", "qr", "icr"])
def test_window_tokens_none_gives_the_scores_from_before_windows(make_reranker, slice_data, method):
    fixture = json.loads((DATA / "scores_before_windows.json").read_text())
    cases = [case for case in fixture["cases"] if case["method"] == method]
    assert len(cases) == 4
    for case in cases:
        reranker = make_reranker(method=method, window_tokens=None, max_doc_words=80, max_length=case["max_length"])
        docs = candidates(slice_data, case["qid"], case["depth"])
        got = reranker.score(slice_data.queries[case["qid"]], docs)
        # The stored scores came from an older library stack; float32 reductions in a newer
        # transformers/numpy move the 5th-7th digit (at most 1.2e-5 relative, ICR, seen on 5.24.0).
        assert got == pytest.approx(case["scores"], rel=5e-5, abs=1e-9)


def test_window_setting_comes_from_the_heads_and_can_be_overridden(make_reranker):
    base = make_reranker(method="core", window_tokens=None)
    heads = base.heads.model_copy(update={"scoring": base.heads.scoring.model_copy(update={"window_tokens": 64})})
    from_heads = CoReReranker(base.model, base.tokenizer, heads=heads)
    assert from_heads.window_tokens == 64 and from_heads.settings()["window_tokens"] == 64
    assert CoReReranker(base.model, base.tokenizer, heads=heads, window_tokens=None).window_tokens is None
    assert CoReReranker(base.model, base.tokenizer, heads=heads, window_tokens=128).window_tokens == 128
    assert HeadConfig.from_dict(heads.to_dict()).scoring.window_tokens == 64  # saved and read back
    docs = [f"Document {i} says statins lower LDL cholesterol in patients." for i in range(10)]
    assert len(from_heads.windows(QUERY, docs)) > 1
    assert base.windows(QUERY, docs) == [list(range(10))]
    # empty documents are in no window; identical texts share one slot (and one score)
    assert base.windows(QUERY, ["a", "", "a", "b"]) == [[0, 2, 3]]
    assert from_heads.windows(QUERY, ["", " "]) == []
    for bad in (0, 8, "600", 3.5, True):
        with pytest.raises(ValueError, match="window_tokens"):
            CoReReranker(base.model, base.tokenizer, heads=heads, window_tokens=bad)
    with pytest.raises(ValueError, match="window_tokens"):
        HeadConfig(heads=[(1, 1)], scoring={"window_tokens": 4})


def test_a_document_longer_than_the_window_gets_a_window_of_its_own(make_reranker):
    reranker = CoReReranker(
        make_reranker(method="core").model, make_reranker().tokenizer, max_doc_words=None, window_tokens=64
    )
    long_doc = " ".join(["statins lower cholesterol"] * 60)  # far over 64 tokens
    docs = ["short one", long_doc, "short two"]
    windows = reranker.windows(QUERY, docs)
    assert [1] in windows and sorted(i for w in windows for i in w) == [0, 1, 2]
    scores = reranker.score(QUERY, docs)
    assert all(s > float("-inf") for s in scores)


def test_plan_windows_deals_first_stage_order_round_robin():
    # ten equal documents, two per window: candidate i goes to window i mod 5
    assert plan_windows([50] * 10, 2 * (50 + MARKER_TOKENS)) == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]


def test_window_option_parsing():
    assert parse_window_tokens("auto") == "auto"
    assert parse_window_tokens("None") is None and parse_window_tokens("600") == 600
    for bad in ("abc", "-5", "4"):
        with pytest.raises(ValueError, match="window size"):
            parse_window_tokens(bad)
    assert parse_sweep_window("300, 600,none") == [300, 600, None]
    assert parse_sweep_window(None) == []
    with pytest.raises(ValueError, match="twice"):
        parse_sweep_window("600,600")
    with pytest.raises(ValueError, match="auto"):
        parse_sweep_window("auto")
    from core_rerank.cli import build_parser

    args = build_parser().parse_args(["rerank", "--window-tokens", "none", "--query", "q"])
    assert args.window_tokens is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rerank", "--window-tokens", "lots", "--query", "q"])
    assert isinstance(args, argparse.Namespace)


def test_window_sweep_plans_one_entry_per_method_and_size():
    core = HeadConfig(heads=[(2, 1), (3, 0)], scoring={"window_tokens": 600})
    qr = HeadConfig(method="qr", heads=[(1, 1)])
    entries = plan_entries(["first-stage", "icr", "qr", "core"], {"core": core, "qr": qr}, 30, sweep_window=[600, None])
    by_label = {e.label: e for e in entries}
    assert by_label["core"].window_tokens == 600 and by_label["qr"].window_tokens is None
    assert by_label["icr"].window_tokens is None
    assert by_label["core@window=600"].same_as == "core" and by_label["core@window=none"].same_as is None
    assert by_label["qr@window=none"].same_as == "qr" and by_label["icr@window=600"].window_tokens == 600
    assert by_label["core"].fingerprint()["window_tokens"] == 600
    assert "window_tokens" not in by_label["qr"].fingerprint()  # one-prompt entries of older files still match
    overridden = plan_entries(["core"], {"core": core}, 30, window_tokens=None)
    assert overridden[0].window_tokens is None


def test_eval_window_sweep_end_to_end(smollm2_dir, tmp_path):
    """``eval --sweep-window``: every method at every size, from one model per query with
    ``--one-pass`` and from one reranker per entry without; both give the windowed reranker's scores."""
    from core_rerank import cli

    common = ["eval", "--data", str(DATA / "scifact_slice"), "--depth", "6", "--max-doc-words", "25"]
    common += ["--device", "cpu", "--dtype", "float32", "--quiet", "--sweep-window", "100,none"]
    shared_out, plot = tmp_path / "shared.json", tmp_path / "windows.png"
    argv = [*common, "--methods", "first-stage,qr,core", "--one-pass", "--out", str(shared_out), "--plot", str(plot)]
    assert cli.main(argv) == 0
    assert plot.stat().st_size > 1000
    separate_out = tmp_path / "separate.json"
    assert cli.main([*common, "--methods", "core", "--out", str(separate_out)]) == 0
    shared = json.loads(shared_out.read_text())["entries"]
    separate = json.loads(separate_out.read_text())["entries"]
    assert {"core@window=100", "core@window=none", "qr@window=100", "qr@window=none"} <= set(shared)
    for label in ("core", "core@window=100", "core@window=none"):
        if shared[label].get("same_as"):
            continue
        assert shared[label]["one_pass"] and shared[label]["summary"]["time_per_query_s"] > 0
        for qid, record in separate[label]["per_query"].items():
            assert shared[label]["per_query"][qid]["scores"] == pytest.approx(record["scores"], rel=1e-6, abs=1e-9)
    assert shared["core@window=100"]["window_tokens"] == 100 and shared["core@window=none"]["window_tokens"] is None
    data = load_eval_data(DATA / "scifact_slice")
    qid = next(iter(data.queries))
    reranker = CoReReranker.from_pretrained(
        "smollm2-135m-instruct", device="cpu", dtype="float32", max_doc_words=25, window_tokens=100
    )
    docs = candidates(data, qid, 6)
    assert len(reranker.windows(data.queries[qid], docs)) >= 3
    expected = reranker.score(data.queries[qid], docs)
    assert separate["core@window=100"]["per_query"][qid]["scores"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
