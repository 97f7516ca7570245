"""Smoke tests for the example QA apps in examples/ (offline, CPU, the default model).

The apps run in-process on the shared model (``qa_common.load_reranker`` is pointed at the
session's one loaded model) with a couple of questions; each script is also started once as
a user would (``--help``) to check its imports outside pytest.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["llamaindex_qa.py", "langchain_qa.py", "langchain_lcel_qa.py", "haystack_qa.py"]
SLICE = Path(__file__).resolve().parents[1] / "data" / "scifact_slice"
ARGS = ["--questions", "2", "--top-k", "5", "--top-n", "2", "--max-new-tokens", "12"]

pytestmark = [pytest.mark.real_model, pytest.mark.slow]


@pytest.fixture
def examples(monkeypatch, shared_reranker):
    pytest.importorskip("llama_index.retrievers.bm25")
    pytest.importorskip("langchain_classic")
    pytest.importorskip("rank_bm25")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import qa_common

    monkeypatch.setattr(qa_common, "load_reranker", lambda *args, **kwargs: shared_reranker)
    return shared_reranker


def check_output(text: str) -> None:
    assert text.count("BM25 order (top 5)") == 2
    assert text.count("CoReRerank order (top 2") == 2
    assert text.count("  Answer: ") == 2
    assert "Gold passage in the top 2: BM25" in text
    for block in text.split("\nQ")[1:]:
        reranked = block.split("CoReRerank order")[1].split("Answer:")[0]
        assert len([line for line in reranked.splitlines() if line.strip()[:2].rstrip(".").isdigit()]) == 2
        assert block.split("Answer:")[1].strip(), "the local LLM produced no answer"


@pytest.mark.parametrize("module", [s[:-3] for s in SCRIPTS])
def test_example_app_runs(module, examples, capsys):
    import importlib

    if module == "haystack_qa":
        pytest.importorskip("haystack")

    importlib.import_module(module).main(ARGS)
    check_output(capsys.readouterr().out)


def test_lancedb_example_runs_hybrid_search_then_core(examples, capsys):
    pytest.importorskip("lancedb")
    import lancedb_qa
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lancedb_qa.main([*ARGS, "--questions", "1", "--embedding", "hashing"])  # hashing: no embedding model
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "LanceDB table: 275 passages" in out and out.count("Hybrid (RRF) order (top 5)") == 1
    assert out.count("CoRe order (top 2") == 1 and "Gold passage in the top 2: hybrid" in out
    assert out.split("  Answer: ")[1].split("\n")[0].strip(), "the local LLM produced no answer"


def test_spans_app_sends_fewer_tokens(examples, capsys):
    import re

    import spans_qa

    spans_qa.main([*ARGS, "--max-spans", "1"])
    out = capsys.readouterr().out
    assert out.count("  Answer: ") == 2 and out.count("as spans; answer in spans: ") == 2
    per_question = [(int(a), int(b)) for a, b in re.findall(r"Context: (\d+) tokens in full, (\d+) as spans", out)]
    assert len(per_question) == 2 and all(0 < cut < full for full, cut in per_question)
    total = re.search(r"Context tokens: (\d+) in full, (\d+) as spans .* full passages (\d)/2, spans (\d)/2", out)
    assert (
        total and int(total[1]) == sum(f for f, _ in per_question) and int(total[2]) == sum(c for _, c in per_question)
    )
    assert int(total[4]) <= int(total[3])  # spans are part of the passages: never more answers than in full


def test_scripts_start_as_a_user_runs_them():
    import importlib.util

    scripts = [*SCRIPTS, "spans_qa.py", *(["pyterrier_experiment.py"] if importlib.util.find_spec("pyterrier") else [])]
    scripts += ["lancedb_qa.py"] if importlib.util.find_spec("lancedb") else []
    procs = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / s), "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for s in scripts
    ]
    for script, proc in zip(scripts, procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{script}: {err[-2000:]}"
        if script == "pyterrier_experiment.py":
            assert "--queries" in out and "--methods" in out and "--max-doc-words" in out
        else:
            assert "--questions" in out and "--method" in out


def test_pyterrier_experiment_runs_on_the_scifact_slice(monkeypatch, shared_reranker, capsys):
    """CoRe-R, QR-R and ICR around the session's one model, in one pt.Experiment against BM25."""
    pytest.importorskip("pyterrier")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import pyterrier_experiment
    import torch

    monkeypatch.setattr(pyterrier_experiment, "load_model", lambda *args: shared_reranker)
    threads = torch.get_num_threads()
    argv = ["--data", str(SLICE), "--queries", "2", "--depth", "4", "--max-doc-words", "15", "--threads", "1"]
    try:
        table = pyterrier_experiment.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert table["name"].tolist() == ["BM25", "CoRe-R", "QR-R", "ICR"]
    assert table["nDCG@10"].between(0, 1).all() and "nDCG@10 p-value" in table.columns
    out = capsys.readouterr().out
    assert "| name | nDCG@10 | RR@10 | R@10 |" in out and "2 scifact_slice test queries, BM25 top 4" in out


def test_one_model_reranks_for_both_frameworks_and_generates(shared_reranker):
    """Both adapters and answer generation share one loaded model; scores survive generation."""
    pytest.importorskip("llama_index.core")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.postprocessor.core_rerank import CoReRerank as LlamaIndexCoReRerank

    from langchain_core_rerank import CoReRerank as LangChainCoReRerank

    sys.path.insert(0, str(EXAMPLES))
    try:
        from qa_common import answer_messages, generate
    finally:
        sys.path.remove(str(EXAMPLES))
    from integration_data import DOCS, QUERY

    li = LlamaIndexCoReRerank.from_reranker(shared_reranker, top_n=2)
    lc = LangChainCoReRerank.from_reranker(shared_reranker, top_n=2)
    assert li.reranker is lc.reranker is shared_reranker
    nodes = [NodeWithScore(node=TextNode(id_=str(i), text=t)) for i, t in enumerate(DOCS)]
    before = [n.node.node_id for n in li.postprocess_nodes(nodes, query_str=QUERY)]
    assert [
        d.id for d in lc.compress_documents([Document(page_content=t, id=str(i)) for i, t in enumerate(DOCS)], QUERY)
    ] == before
    answer = generate(
        shared_reranker.model,
        shared_reranker.tokenizer,
        answer_messages(QUERY, [DOCS[int(before[0])]]),
        max_new_tokens=8,
    )
    assert answer.strip()
    assert [n.node.node_id for n in li.postprocess_nodes(nodes, query_str=QUERY)] == before


def test_adapters_load_the_model_once_from_their_settings(shared_reranker, monkeypatch):
    """Built from settings (not from_reranker), each adapter loads once, in its constructor."""
    pytest.importorskip("llama_index.core")
    from integration_data import DOCS, QUERY
    from llama_index.postprocessor.core_rerank import CoReRerank as LlamaIndexCoReRerank

    from core_rerank import CoReReranker
    from langchain_core_rerank import CoReRerank as LangChainCoReRerank

    calls = []

    def fake_from_pretrained(model_name_or_path, **kwargs):
        calls.append((model_name_or_path, kwargs))
        return shared_reranker

    monkeypatch.setattr(CoReReranker, "from_pretrained", staticmethod(fake_from_pretrained))
    settings = dict(
        method=shared_reranker.method,
        device="cpu",
        dtype="float32",
        num_layers_to_keep="all",
        max_doc_words=200,
        window_tokens=None,
    )
    lc = LangChainCoReRerank(model="smollm2-135m-instruct", top_n=2, **settings)
    li = LlamaIndexCoReRerank(model="smollm2-135m-instruct", top_n=2, **settings)
    assert [c[0] for c in calls] == ["smollm2-135m-instruct"] * 2
    for _, kwargs in calls:
        assert {k: kwargs[k] for k in settings} == settings and kwargs["heads"] is None
    from llama_index.core.schema import NodeWithScore, TextNode

    for _ in range(2):
        lc.compress_documents([], QUERY)
        li.postprocess_nodes([NodeWithScore(node=TextNode(text=t)) for t in DOCS[:2]], query_str=QUERY)
    assert len(calls) == 2  # no reload per call
    assert li.to_dict()["max_doc_words"] == 200 and lc.max_doc_words == 200
    assert li.reranker is lc.reranker is shared_reranker
