"""LangChain pieces shared by langchain_qa.py and langchain_lcel_qa.py (no langchain-classic here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import qa_common as common
from langchain_community.retrievers import BM25Retriever
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompt_values import PromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda

_ROLES = {"human": "user", "ai": "assistant", "system": "system"}


def documents() -> list[Document]:
    """One Document per passage; the title leads the text, so BM25 and the reranker see it."""
    return [
        Document(page_content=f"{p['title']}\n{p['text']}", metadata={"title": p["title"]}, id=p["id"])
        for p in common.load_corpus()
    ]


def _tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_retriever(k: int = 10) -> BM25Retriever:
    """``langchain_community``'s BM25 (needs ``rank-bm25``), with lower-cased word tokens."""
    return BM25Retriever.from_documents(documents(), k=k, preprocess_func=_tokens)


def local_chat_model(model: Any, tokenizer: Any, max_new_tokens: int = 48) -> Runnable:
    """A Runnable chat model over the reranker's own HF model: PromptValue -> str."""

    def run(prompt: PromptValue) -> str:
        messages = [{"role": _ROLES.get(m.type, m.type), "content": m.content} for m in prompt.to_messages()]
        return common.generate(model, tokenizer, messages, max_new_tokens)

    return RunnableLambda(run, name="LocalSmolLM2")


PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", common.SYSTEM_PROMPT),
        ("human", "Passages:\n{context}\n\nQuestion: {question}?\nAnswer:"),
    ]
)


def format_docs(docs: Sequence[Document]) -> str:
    return "\n\n".join(f"[{i}] {doc.page_content}" for i, doc in enumerate(docs, start=1))


def answer_chain(llm: Runnable) -> Runnable:
    """{"docs", "question"} -> answer string (LCEL)."""
    return (
        RunnableLambda(lambda x: {"context": format_docs(x["docs"]), "question": x["question"]})
        | PROMPT
        | llm
        | StrOutputParser()
    )


def show(
    number: int,
    item: dict,
    retrieved: Sequence[Document],
    reranked: Sequence[Document],
    answer: str,
    top_k: int,
    top_n: int,
    summary: common.Summary,
) -> None:
    common.show_question(number, item)
    common.show_ranking(
        f"BM25 order (top {top_k})", [(d.id, d.metadata["title"], None) for d in retrieved], item["gold_ids"]
    )
    common.show_ranking(
        f"CoReRerank order (top {top_n}, raw_score)",
        [(d.id, d.metadata["title"], d.metadata["raw_score"]) for d in reranked],
        item["gold_ids"],
    )
    print(f"  Answer: {answer.strip()}")
    summary.add([d.id for d in retrieved], [d.id for d in reranked], item["gold_ids"])
