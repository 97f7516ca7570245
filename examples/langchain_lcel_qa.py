"""Offline QA with plain LCEL (langchain-core + langchain-community, no langchain-classic).

BM25 retriever -> a RunnableLambda that calls CoReRerank.acompress_documents -> answer chain,
run with ``ainvoke`` to show the async path. Same output as langchain_qa.py.

    python examples/langchain_lcel_qa.py             # 5 questions
    python examples/langchain_lcel_qa.py --questions 2 --method icr
"""

from __future__ import annotations

import asyncio

import langchain_common as lc
import qa_common as common
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from langchain_core_rerank import CoReRerank


async def amain(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv)
    reranker = common.load_announced(args)

    bm25 = lc.bm25_retriever(k=args.top_k)
    compressor = CoReRerank.from_reranker(reranker, top_n=args.top_n)

    async def rerank(x: dict) -> list:
        return list(await compressor.acompress_documents(x["retrieved"], x["question"]))

    llm = lc.local_chat_model(reranker.model, reranker.tokenizer, args.max_new_tokens)
    chain = (
        RunnableParallel(retrieved=bm25, question=RunnablePassthrough())
        | RunnablePassthrough.assign(docs=RunnableLambda(rerank))
        | RunnablePassthrough.assign(answer=lc.answer_chain(llm))
    )

    summary = common.Summary(args.top_n)
    for number, item in enumerate(common.load_questions(args.questions), start=1):
        result = await chain.ainvoke(item["question"])
        lc.show(number, item, result["retrieved"], result["docs"], result["answer"], args.top_k, args.top_n, summary)
    summary.show()


def main(argv=None) -> None:
    asyncio.run(amain(argv))


if __name__ == "__main__":
    main()
