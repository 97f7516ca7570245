"""``rerank_batch(..., first_stage_scores_per_query=...)``: each query's scores order its prompts,
as ``rerank(..., first_stage_scores=...)`` does (tiny Llama, real tokenizer)."""

import pytest
from test_capture import DOCS, QUERY, _tiny
from transformers import AutoTokenizer

from core_rerank import CoReReranker, HeadConfig, InputError

HEADS = [(1, 3), (2, 0), (3, 2)]
SECOND = "What pulls the sea?"


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def model(tokenizer):
    return _tiny("llama", len(tokenizer)).float().eval()


def test_rerank_batch_passes_each_querys_first_stage_scores(model, tokenizer):
    reranker = CoReReranker(model, tokenizer, heads=HeadConfig(heads=HEADS))
    firsts = [[0.1, 3.0, 2.0, -2.0], [5.0, -1.0, 0.5, 7.0]]
    batch = reranker.rerank_batch([QUERY, SECOND], [DOCS, DOCS], first_stage_scores_per_query=firsts)
    for results, query, first in zip(batch, [QUERY, SECOND], firsts):
        alone = reranker.rerank(query, DOCS, first_stage_scores=first)
        assert [(r.index, r.score) for r in results] == [(r.index, r.score) for r in alone]
    reversed_docs = DOCS[::-1]  # the same candidates in another order, their scores with them
    again = reranker.rerank_batch([QUERY], [reversed_docs], first_stage_scores_per_query=[firsts[0][::-1]])[0]
    assert [(r.text, r.score) for r in again] == [(r.text, r.score) for r in batch[0]]
    plain = reranker.rerank_batch([QUERY], [DOCS])[0]
    assert [r.score for r in plain] != pytest.approx([r.score for r in batch[0]], rel=1e-3)  # the order mattered
    with pytest.raises(InputError, match="first_stage_scores lists"):
        reranker.rerank_batch([QUERY, SECOND], [DOCS, DOCS], first_stage_scores_per_query=[firsts[0]])
    with pytest.raises(InputError, match="first_stage_scores"):
        reranker.rerank_batch([QUERY], [DOCS], first_stage_scores_per_query=[[1.0]])
    with pytest.raises(InputError, match="document lists"):
        reranker.rerank_batch([QUERY, SECOND], [DOCS])
