"""Every reranker setting reaches the reranker that is actually built, on every path, ``None``
included (issue 16): ``rerank``, ``rerank-run`` (in process and on a 2-worker Ray pool),
``eval`` (in process and ``--workers 2``) and both adapters. The servers (``serve`` and
``serve --replicas 2``) are checked the same way in tests/serving/test_serve_settings.py.

Two settings cover each option with ``None`` and with a value that is not its default:

- ``NONE_SETTINGS``: one prompt (the preset has 600-token windows), no word cut, the layers
  the heads need, the model's own budget, the preset's method and heads, float32;
- ``SET_SETTINGS``: 123-token windows, 17 words, 27 layers, a 3,000-token budget, QR-R with
  the QR preset, documents in reversed order, bfloat16.

And the scores: ``rerank-run --window-tokens none`` equals ``CoReReranker(window_tokens=None)``
to 1e-6, with one worker and with two, and differs from the preset's windowed scores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from settings_cases import NONE_BUILT, NONE_SETTINGS, SET_BUILT, SET_SETTINGS, check_built, cli_options

from core_rerank import cli, run_files
from core_rerank.settings import RerankerSettings, built_settings
from core_rerank.utils import DEFAULT_MODEL

SLICE = Path(__file__).parent / "data" / "scifact_slice"
DEPTH = 5


# ---------------------------------------------------------------------- no model
def test_none_is_passed_on_not_dropped():
    settings = RerankerSettings(**NONE_SETTINGS)
    kwargs = settings.from_pretrained_kwargs()
    assert kwargs["window_tokens"] is None and kwargs["max_doc_words"] is None and "threads" not in kwargs
    assert set(kwargs) >= {"model_name_or_path", *NONE_SETTINGS}


@pytest.mark.parametrize(("native_bf16", "dtype"), [(True, "bfloat16"), (False, "float32")])
def test_a_job_fingerprint_records_what_auto_dtype_gives_on_this_cpu(monkeypatch, native_bf16, dtype):
    # A rerank-run resumed on a CPU where "auto" gives another dtype must not mix the two.
    from core_rerank import cpu_features

    monkeypatch.setattr(cpu_features, "has_native_bf16", lambda: native_bf16)
    assert RerankerSettings(device="cpu").fingerprint()["dtype"] == dtype
    assert RerankerSettings(device="cpu", dtype="float16").fingerprint()["dtype"] == "float16"


def test_unknown_setting_names_are_refused():
    with pytest.raises(TypeError, match="windows_tokens"):
        RerankerSettings.from_mapping({"model_name_or_path": DEFAULT_MODEL, "windows_tokens": None})


def test_cli_max_doc_words_accepts_none():
    args = cli.build_parser().parse_args(["rerank", "--query", "q", "--doc", "d", "--max-doc-words", "none"])
    assert args.max_doc_words is None


# ---------------------------------------------------------------------- rerank, adapters
@pytest.mark.real_model
@pytest.mark.parametrize(("settings", "expected"), [(NONE_SETTINGS, NONE_BUILT), (SET_SETTINGS, SET_BUILT)])
def test_cli_rerank_builds_what_it_is_told(smollm2_dir, capsys, settings, expected):
    argv = ["rerank", "--query", "what causes tides?", "--doc", "The moon pulls the sea.", "--json"]
    assert cli.main([*argv, *cli_options(settings)]) == 0
    check_built(json.loads(capsys.readouterr().out)["reranker"], expected)


@pytest.mark.real_model
@pytest.mark.parametrize(("settings", "expected"), [(NONE_SETTINGS, NONE_BUILT), (SET_SETTINGS, SET_BUILT)])
def test_adapters_build_what_they_are_told(smollm2_dir, settings, expected):
    llama_index = pytest.importorskip("llama_index.postprocessor.core_rerank")
    langchain = pytest.importorskip("langchain_core_rerank")
    fields = {"dtype": "float32", **settings, "device": "cpu"}
    for adapter in (llama_index.CoReRerank(**fields), langchain.CoReRerank(**fields)):
        check_built(built_settings(adapter.reranker), expected)
        shared = type(adapter).from_reranker(adapter.reranker)
        assert {name: getattr(shared, name) for name in ("window_tokens", "max_doc_words", "max_length")} == {
            name: expected[name] for name in ("window_tokens", "max_doc_words", "max_length")
        }


# ---------------------------------------------------------------------- rerank-run and eval
@pytest.fixture(scope="module")
def one_prompt_scores(smollm2_dir):
    """``{qid: {doc_id: score}}`` from ``CoReReranker(window_tokens=None, max_doc_words=None)``
    (checked to differ from the preset's windowed scores, so the test can tell them apart)."""
    from core_rerank.rerank_job import plan_job

    plan = plan_job(SLICE, depth=DEPTH)
    base = RerankerSettings(device="cpu", dtype="float32", max_doc_words=None, threads=1)
    one_prompt, windowed = base.replace(window_tokens=None).load(), base.load()
    assert windowed.window_tokens == 600 and one_prompt.window_tokens is None
    scores = {
        item["query_id"]: dict(zip(item["doc_ids"], one_prompt.score(item["query"], item["documents"])))
        for item in plan.items
    }
    first = plan.items[0]
    assert len(windowed.windows(first["query"], first["documents"])) > 1, "the slice fits one window"
    in_windows = windowed.score(first["query"], first["documents"])
    assert max(abs(a - scores[first["query_id"]][d]) for a, d in zip(in_windows, first["doc_ids"])) > 1e-3
    return scores


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    from core_rerank.ray import init_ray

    init_ray(workers=2, threads_per_worker=1)
    yield
    ray.shutdown()


def rerank_run(tmp_path: Path, settings: dict, workers: int) -> dict:
    out = tmp_path / f"run.{workers}.trec"
    argv = ["rerank-run", "--data", str(SLICE), "--depth", str(DEPTH), "--out", str(out), "--quiet"]
    if workers > 1:
        argv += ["--workers", str(workers), "--threads-per-worker", "1"]
    assert cli.main([*argv, *cli_options(settings)]) == 0
    summary = json.loads(out.with_name(out.name + ".summary.json").read_text())
    assert summary["queries"]["failed"] == 0 and summary["queries"]["written"] == 5
    return {"summary": summary, "run": run_files.read_results(out)}


def assert_scores(run: dict, expected: dict) -> None:
    for qid, (doc_ids, scores) in run.items():
        got = dict(zip(doc_ids, scores))
        assert got == pytest.approx(expected[qid], abs=1e-6), qid


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_rerank_run_window_tokens_none_is_one_prompt(tmp_path, one_prompt_scores, workers, request):
    if workers > 1:
        request.getfixturevalue("ray_cluster")
    out = rerank_run(tmp_path, {**NONE_SETTINGS, "dtype": "float32"}, workers)
    check_built(out["summary"]["reranker"], NONE_BUILT)
    assert out["summary"]["settings"]["window_tokens"] is None
    assert_scores(out["run"], one_prompt_scores)


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_rerank_run_builds_what_it_is_told(tmp_path, workers, request):
    if workers > 1:
        request.getfixturevalue("ray_cluster")
    check_built(rerank_run(tmp_path, SET_SETTINGS, workers)["summary"]["reranker"], SET_BUILT)


def eval_entry(tmp_path: Path, settings: dict, workers: int) -> dict:
    """The one scored entry of ``core-rerank eval`` (eval exposes no --method or --num-layers-to-keep)."""
    method = settings["method"] or "core"
    out = tmp_path / f"eval.{method}.{workers}.json"
    heads_flag = "--qr-heads" if method == "qr" else "--heads"
    exposed = {k: v for k, v in settings.items() if k not in ("method", "num_layers_to_keep", "heads")}
    argv = ["eval", "--data", str(SLICE), "--depth", str(DEPTH), "--methods", method, "--quiet", "--out", str(out)]
    if settings["heads"]:
        argv += [heads_flag, settings["heads"]]
    if workers > 1:
        argv += ["--workers", str(workers), "--threads-per-worker", "1"]
    assert cli.main([*argv, *cli_options(exposed)]) == 0
    return json.loads(out.read_text())["entries"][method]


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_eval_builds_what_it_is_told(tmp_path, workers, request):
    if workers > 1:
        request.getfixturevalue("ray_cluster")
    check_built(eval_entry(tmp_path, {**NONE_SETTINGS, "dtype": "float32"}, workers)["reranker"], NONE_BUILT)
    set_built = {**SET_BUILT, "num_layers_to_keep": 9}  # eval builds what the QR heads need
    entry = eval_entry(tmp_path, SET_SETTINGS, workers)
    check_built(entry["reranker"], set_built)
    assert entry["num_layers_built"] == 9
