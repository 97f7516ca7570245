"""The order of the documents inside each prompt window (``document_order``, issue 19)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from slice_prompts import SLICE, candidates, recording

from core_rerank import CoReReranker, HeadConfig
from core_rerank.datasets import load_eval_data
from core_rerank.evaluation import parse_sweep_order, plan_entries
from core_rerank.evaluation.metrics import kendall_tau
from core_rerank.evaluation.sensitivity import add_order_sensitivity
from core_rerank.windows import WindowPlan, parse_document_order, score_plan, window_orders

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def slice_data():
    return load_eval_data(SLICE)


# ---------------------------------------------------------------------- no model
def test_window_orders():
    window = [0, 4, 8, 12, 16]
    assert window_orders(window, "first_stage") == [window]
    assert window_orders(window, "reversed") == [[16, 12, 8, 4, 0]]
    assert window_orders(window, "both") == [window, [16, 12, 8, 4, 0]]
    # the strongest nearest the query (last), the second first, the weakest in the middle
    assert window_orders(window, "ends") == [[4, 12, 16, 8, 0]]
    assert window_orders([3], "ends") == [[3]] and window_orders([], "both") == [[], []]
    with pytest.raises(ValueError, match="document_order"):
        window_orders(window, "random")


def test_score_plan_averages_the_orders_and_keeps_one_order_as_it_is():
    plan = WindowPlan(indices=[[0], [1, 3], [2]], slots=["a", "b", "c"], windows=[[0, 1], [2]])
    prompts = []

    def score_prompt(slots):  # the value depends on the place in the prompt
        prompts.append(list(slots))
        return {"s": [10.0 * slot + 0.1 * place for place, slot in enumerate(slots)]}

    first = score_plan(plan, 5, ["s"], "first_stage", score_prompt)["s"]
    assert first == [0.0, 10.1, 20.0, 10.1, -math.inf] and prompts == [[0, 1], [2]]
    prompts.clear()
    both = score_plan(plan, 5, ["s"], "both", score_prompt)["s"]
    assert prompts == [[0, 1], [1, 0], [2], [2]]
    assert both == [(0.0 + 0.1) / 2, (10.1 + 10.0) / 2, 20.0, (10.1 + 10.0) / 2, -math.inf]


def test_order_option_parsing():
    assert parse_document_order("auto") == "auto" and parse_document_order("Reversed") == "reversed"
    assert parse_document_order("first-stage") == "first_stage"
    with pytest.raises(ValueError, match="document_order"):
        parse_document_order("backwards")
    assert parse_sweep_order("first_stage, reversed,both") == ["first_stage", "reversed", "both"]
    assert parse_sweep_order(None) == []
    for bad, message in (("both,both", "twice"), ("auto", "auto"), ("up", "document_order")):
        with pytest.raises(ValueError, match=message):
            parse_sweep_order(bad)
    from core_rerank.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["rerank", "--query", "q"]).document_order == "auto"
    for command in (["rerank", "--query", "q"], ["rerank-run", "--data", "d", "--out", "o"], ["serve"]):
        assert parser.parse_args([*command, "--document-order", "both"]).document_order == "both"
    args = parser.parse_args(["eval", "--data", "d", "--document-order", "reversed", "--sweep-order", "both"])
    assert args.document_order == "reversed" and args.sweep_order == "both"
    with pytest.raises(SystemExit):
        parser.parse_args(["rerank", "--query", "q", "--document-order", "sideways"])


def test_order_sweep_plans_one_entry_per_method_and_order():
    core = HeadConfig(heads=[(2, 1), (3, 0)], scoring={"window_tokens": 600, "document_order": "reversed"})
    qr = HeadConfig(method="qr", heads=[(1, 1)])
    entries = plan_entries(
        ["first-stage", "icr", "qr", "core"], {"core": core, "qr": qr}, 30, sweep_order=["first_stage", "both"]
    )
    by_label = {e.label: e for e in entries}
    assert by_label["core"].document_order == "reversed" and by_label["qr"].document_order == "first_stage"
    assert by_label["icr"].document_order == "first_stage"
    assert by_label["core@order=both"].group == "sweep-order" and by_label["core@order=both"].window_tokens == 600
    assert by_label["qr@order=first_stage"].same_as == "qr" and by_label["core@order=first_stage"].same_as is None
    assert by_label["core"].fingerprint()["document_order"] == "reversed"
    assert "document_order" not in by_label["qr"].fingerprint()  # entries of older files still match
    overridden = plan_entries(["core"], {"core": core}, 30, document_order="both", sweep_window=[None])
    assert [e.document_order for e in overridden] == ["both", "both"]


def test_order_sensitivity_is_the_mean_kendall_tau_of_the_two_orders():
    assert kendall_tau([3, 2, 1], [3, 2, 1]) == 1.0 and kendall_tau([3, 2, 1], [1, 2, 3]) == -1.0
    assert kendall_tau([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(4 / 6)
    fingerprint = {"method": "core", "heads": [[1, 2]], "num_layers_to_keep": None}
    entries = {
        "core": {"method": "core", "document_order": "first_stage", "fingerprint": fingerprint, "per_query": {}},
        "core@order=reversed": {
            "method": "core",
            "document_order": "reversed",
            "fingerprint": {**fingerprint, "document_order": "reversed"},
            "per_query": {},
        },
    }
    entries["core"]["per_query"] = {"q1": {"scores": [3, 2, 1]}, "q2": {"scores": [1, 2, 3, 4]}}
    entries["core@order=reversed"]["per_query"] = {"q1": {"scores": [1, 2, 3]}, "q2": {"scores": [1, 2, 4, 3]}}
    add_order_sensitivity(entries)
    found = entries["core@order=reversed"]["order_sensitivity"]
    assert found == {"first_stage_entry": "core", "mean_kendall_tau": round((-1 + 4 / 6) / 2, 5), "queries": 2}
    assert entries["core@order=reversed"]["per_query"]["q1"]["kendall_tau_vs_first_stage"] == -1.0
    assert "order_sensitivity" not in entries["core"]


# ---------------------------------------------------------------------- SmolLM2
@pytest.mark.parametrize("order", ["first_stage", "reversed", "ends"])
def test_each_window_in_each_order_equals_it_scored_alone_in_that_order(make_reranker, slice_data, order):
    one_prompt = make_reranker(method="core", window_tokens=None, max_doc_words=60)
    ordered = CoReReranker(
        one_prompt.model,
        one_prompt.tokenizer,
        heads=one_prompt.heads,
        max_doc_words=60,
        window_tokens=300,
        document_order=order,
    )
    qid = next(iter(slice_data.queries))
    query, docs = slice_data.queries[qid], candidates(slice_data, qid)
    windows = ordered.windows(query, docs)
    assert len(windows) >= 3 and sorted(i for w in windows for i in w) == list(range(len(docs)))
    prompts = recording(ordered)
    scores = ordered.score(query, docs)
    assert len(prompts) == len(windows) == ordered.last_usage["prompts"]
    for window, prompt in zip(windows, prompts):
        in_order = window_orders(window, order)[0]
        alone = one_prompt.prepare(query, [docs[i] for i in in_order])  # the same prompt, the same spans
        assert prompt.input_ids == alone.input_ids and prompt.document_spans == alone.document_spans
        # the packed pass runs every window at once: the float rounding of its matrix products
        # depends on what shares the pass, hence equal to 1e-4 (the parity tolerance), not bit for bit
        assert [scores[i] for i in in_order] == pytest.approx(
            one_prompt.score(query, [docs[i] for i in in_order]), rel=1e-4, abs=1e-6
        )


def test_both_is_the_mean_of_the_two_orders_and_runs_both_prompts(make_reranker, slice_data):
    base = make_reranker(method="qr", window_tokens=None, max_doc_words=60)
    qid = list(slice_data.queries)[1]
    query, docs = slice_data.queries[qid], candidates(slice_data, qid)

    def build(order, window_tokens=250):
        return CoReReranker(
            base.model,
            base.tokenizer,
            heads=base.heads,
            max_doc_words=60,
            window_tokens=window_tokens,
            document_order=order,
        )

    for window_tokens in (250, None):
        first, backwards, both = (build(order, window_tokens) for order in ("first_stage", "reversed", "both"))
        first_scores, reversed_scores = first.score(query, docs), backwards.score(query, docs)
        assert first_scores != reversed_scores  # the order moves the scores
        both_scores = both.score(query, docs)
        assert both_scores == [(a + b) / 2 for a, b in zip(first_scores, reversed_scores)]
        assert both.last_usage == {k: first.last_usage[k] + backwards.last_usage[k] for k in first.last_usage}
        assert both.last_usage["prompts"] == 2 * first.last_usage["prompts"]


def test_order_setting_comes_from_the_heads_and_can_be_overridden(make_reranker):
    base = make_reranker(method="core", window_tokens=None)
    assert base.document_order == "first_stage" and base.settings()["document_order"] == "first_stage"
    scoring = base.heads.scoring.model_copy(update={"document_order": "both"})
    heads = base.heads.model_copy(update={"scoring": scoring})
    assert CoReReranker(base.model, base.tokenizer, heads=heads).settings()["document_order"] == "both"
    assert CoReReranker(base.model, base.tokenizer, heads=heads, document_order="reversed").document_order == "reversed"
    assert HeadConfig.from_dict(heads.to_dict()).scoring.document_order == "both"  # saved and read back
    for bad in ("random", None, 1):
        with pytest.raises(ValueError, match="document_order"):
            CoReReranker(base.model, base.tokenizer, heads=heads, document_order=bad)
    with pytest.raises(ValueError, match="document_order"):
        HeadConfig(heads=[(1, 1)], scoring={"document_order": "sideways"})


def test_eval_order_sweep_end_to_end(smollm2_dir, tmp_path):
    """``eval --sweep-order``: every method in every order, from one model per query with
    ``--one-pass`` and from one reranker per entry without; both give the reranker's scores,
    and the reversed entry records the order sensitivity."""
    from core_rerank import cli

    common = ["eval", "--data", str(DATA / "scifact_slice"), "--depth", "6", "--max-doc-words", "25"]
    common += ["--device", "cpu", "--dtype", "float32", "--quiet", "--window-tokens", "100", "--max-queries", "3"]
    common += ["--sweep-order", "first_stage,reversed,both"]
    shared_out, separate_out = tmp_path / "shared.json", tmp_path / "separate.json"
    assert cli.main([*common, "--methods", "first-stage,qr,core", "--one-pass", "--out", str(shared_out)]) == 0
    assert cli.main([*common, "--methods", "core", "--document-order", "reversed", "--out", str(separate_out)]) == 0
    shared = json.loads(shared_out.read_text())["entries"]
    separate = json.loads(separate_out.read_text())
    assert separate["settings"]["document_order"] == "reversed" and separate["settings"]["sweep_order"][1] == "reversed"
    separate = separate["entries"]
    assert separate["core"]["reranker"]["document_order"] == "reversed"
    assert separate["core@order=reversed"]["same_as"] == "core"
    for label in ("core@order=first_stage", "core@order=reversed", "core@order=both", "qr@order=both"):
        assert shared[label]["group"] == "sweep-order" and shared[label]["document_order"] == label.split("=")[1]
    assert shared["core@order=first_stage"]["same_as"] == "core" and shared["core"]["one_pass"]
    # (label in the one-pass run, label in the run whose main entry is reversed)
    for in_shared, in_separate in (
        ("core", "core@order=first_stage"),
        ("core@order=reversed", "core"),
        *[("core@order=both",) * 2],
    ):
        assert separate[in_separate]["per_query"]
        for qid, record in separate[in_separate]["per_query"].items():
            got = shared[in_shared]["per_query"][qid]["scores"]
            assert got == pytest.approx(record["scores"], rel=1e-6, abs=1e-9), (in_shared, qid)
    for entries in (shared, separate):
        found = entries["core@order=reversed"]["order_sensitivity"]
        assert found["first_stage_entry"] in ("core", "core@order=first_stage") and found["queries"] == 3
        assert -1 <= found["mean_kendall_tau"] <= 1
    data = load_eval_data(DATA / "scifact_slice")
    qid = next(iter(data.queries))
    reranker = CoReReranker.from_pretrained(
        "smollm2-135m-instruct",
        device="cpu",
        dtype="float32",
        max_doc_words=25,
        window_tokens=100,
        document_order="both",
    )
    expected = reranker.score(data.queries[qid], candidates(data, qid, 6))
    assert separate["core@order=both"]["per_query"][qid]["scores"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
