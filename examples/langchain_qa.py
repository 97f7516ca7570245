"""Offline QA with LangChain: BM25 -> ContextualCompressionRetriever(CoReRerank) -> LCEL answer chain.

Runs on CPU with the default model (SmolLM2-135M-Instruct) over the NQ-open slice in
examples/data; one loaded model reranks and answers. Needs ``pip install "core-rerank[examples]"``
(langchain-classic for ContextualCompressionRetriever, langchain-community + rank-bm25 for BM25).

    python examples/langchain_qa.py                  # 5 questions
    python examples/langchain_qa.py --questions 2 --method icr
"""

from __future__ import annotations

import langchain_common as lc
import qa_common as common
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.runnables import RunnableParallel, RunnablePassthrough

from langchain_core_rerank import CoReRerank


def main(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv)
    reranker = common.load_announced(args)

    bm25 = lc.bm25_retriever(k=args.top_k)
    retriever = ContextualCompressionRetriever(
        base_compressor=CoReRerank.from_reranker(reranker, top_n=args.top_n), base_retriever=bm25
    )
    llm = lc.local_chat_model(reranker.model, reranker.tokenizer, args.max_new_tokens)
    # question -> {"docs": reranked documents, "question"} -> + "answer"
    chain = RunnableParallel(docs=retriever, question=RunnablePassthrough()) | RunnablePassthrough.assign(
        answer=lc.answer_chain(llm)
    )

    summary = common.Summary(args.top_n)
    for number, item in enumerate(common.load_questions(args.questions), start=1):
        retrieved = bm25.invoke(item["question"])  # only to show the order before reranking
        result = chain.invoke(item["question"])
        lc.show(number, item, retrieved, result["docs"], result["answer"], args.top_k, args.top_n, summary)
    summary.show()


if __name__ == "__main__":
    main()
