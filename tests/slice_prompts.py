"""Helpers of the window and order tests: the SciFact slice's candidates, and a recorder of the
prompts a reranker runs."""

from __future__ import annotations

from pathlib import Path

SLICE = Path(__file__).parent / "data" / "scifact_slice"


def candidates(data, qid, depth=12):
    return [data.corpus[d] for d in data.candidates(qid, depth)]


def recording(reranker):
    """Record every prompt the reranker runs (its PreparedPrompt objects)."""
    prompts = []
    prepare = reranker.builder.prepare

    def recorded(query, documents):
        prompts.append(prepare(query, documents))
        return prompts[-1]

    reranker.builder.prepare = recorded
    return prompts
