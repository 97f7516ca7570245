"""Package-level contracts: cheap import, windows, CLI."""

import argparse
import json
import subprocess
import sys

import pytest

from core_rerank import cli
from core_rerank.cli.rerank import read_docs_file
from core_rerank.windows import MARKER_TOKENS, plan_windows


def test_import_does_not_load_torch_or_frameworks():
    code = (
        "import sys, core_rerank; core_rerank.HeadConfig; "
        "print(sorted(m for m in ('torch', 'transformers', 'llama_index', 'langchain_core') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_windows_fit_the_budget_cover_every_document_and_balance():
    counts = [30, 5, 80, 12, 44, 7, 60, 25, 9, 33] * 10
    capacity = 400
    windows = plan_windows(counts, capacity)
    assert sorted(i for w in windows for i in w) == list(range(len(counts)))
    loads = [sum(counts[i] + MARKER_TOKENS for i in w) for w in windows]
    assert max(loads) <= capacity
    assert max(loads) - min(loads) <= max(counts) + MARKER_TOKENS  # about equal
    assert all(w == sorted(w) for w in windows)  # first-stage order inside a window
    # the top candidates are spread over the windows, not packed into the first one
    assert len({next(k for k, w in enumerate(windows) if i in w) for i in range(5)}) == 5
    assert plan_windows([10, 10], 1000) == [[0, 1]]
    assert plan_windows([], 100) == []
    with pytest.raises(ValueError, match="do not fit"):
        plan_windows([500], 100)


def test_cli_heads_show_lists_and_prints_presets(capsys):
    assert cli.main(["heads", "show"]) == 0
    listing = capsys.readouterr().out
    assert "mistral-7b-instruct" in listing and "llama-3.1-8b-instruct-qr" in listing
    assert cli.main(["heads", "show", "mistral-7b-instruct", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["heads"][0] == [15, 21]
    assert cli.main(["heads", "show", "no-such-preset"]) == 2
    assert "not a shipped preset" in capsys.readouterr().err


def test_cli_has_every_command_and_one_set_of_model_options():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"rerank", "heads", "models", "detect", "eval", "serve", "rerank-run"} <= set(commands.choices)
    for name in ("rerank", "detect", "eval"):
        flags = {flag for action in commands.choices[name]._actions for flag in action.option_strings}
        assert {"--model", "--device", "--dtype", "--max-doc-words", "--threads"} <= flags, name
        assert "--top-k" not in flags or name == "rerank"  # top-k means documents returned, nothing else


def test_cli_docs_file_errors_name_the_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine", "id": "a"}\n{"title": "no text"}\n')
    with pytest.raises(ValueError, match=r"docs.jsonl:2: each line needs a 'text' string"):
        read_docs_file(str(path))
    plain = tmp_path / "docs.txt"
    plain.write_text("first document\n\nsecond document\n")
    assert read_docs_file(str(plain)) == (["first document", "second document"], [None, None])


def test_cli_rerank_end_to_end_on_the_real_model(smollm2_dir, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "\n".join(
            json.dumps(d)
            for d in [
                {"id": "t1", "title": "Tides", "text": "The Moon's gravity raises ocean tides twice a day."},
                {"id": "b1", "text": "Bananas are rich in potassium."},
            ]
        )
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "core_rerank.cli",
            "rerank",
            "--query",
            "what causes tides?",
            "--docs-file",
            str(docs),
            "--doc",
            "Paris is the capital of France.",
            "--method",
            "icr",
            "--device",
            "cpu",
            "--json",
            "--top-k",
            "2",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    printed = json.loads(out)
    results = printed["results"]
    assert len(results) == 2
    assert {r["doc_id"] for r in results} <= {"t1", "b1", None}
    assert results[0]["raw_score"] >= results[1]["raw_score"]
    assert results[0]["relevance_score"] == 1.0 >= results[1]["relevance_score"] >= 0.0
    assert printed["reranker"]["method"] == "icr" and printed["reranker"]["device"] == "cpu"
    failed = subprocess.run(
        [sys.executable, "-m", "core_rerank.cli", "rerank", "--query", "q"], capture_output=True, text=True
    )
    assert failed.returncode == 2 and "no documents" in failed.stderr


def test_a_long_document_late_in_the_list_does_not_split_everything():
    counts = [8] * 500 + [380]  # the last document nearly fills a window on its own
    windows = plan_windows(counts, 400)
    assert sorted(i for w in windows for i in w) == list(range(501))
    total = sum(c + MARKER_TOKENS for c in counts)
    assert len(windows) <= -(-total // 400) + 1  # ceil(total / capacity) + 1, not one per document
    assert all(sum(counts[i] + MARKER_TOKENS for i in w) <= 400 for w in windows)


def test_every_public_name_resolves():
    import core_rerank

    assert {"CoReReranker", "HeadConfig", "detect_heads", "read_jsonl_examples"} <= set(core_rerank.__all__)
    for name in core_rerank.__all__:
        assert getattr(core_rerank, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute"):
        _ = core_rerank.adapter_settings
