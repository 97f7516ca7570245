"""Offline QA that sends the local LLM only the evidence spans of the reranked passages.

BM25 -> CoReRerank(cut_to_spans=True) -> answer from the spans alone. The spans come from the
same forward pass that ranks (``rerank(relevant_spans=...)``): no extra model call. Per
question it prints the spans kept, the prompt tokens of the passages in full and of their spans,
and whether a reference answer is still in the context; then the totals. Runs on CPU with the
default model (SmolLM2-135M-Instruct) over the NQ-open slice in examples/data. Needs
``pip install "core-rerank[examples]"``.

    python examples/spans_qa.py                          # 5 questions, spans >= 0.1, at most 2 each
    python examples/spans_qa.py --questions 20 --threshold 0.5 --max-spans 1
"""

from __future__ import annotations

from typing import Any

import langchain_common as lc
import qa_common as common

from langchain_core_rerank import CoReRerank


def options(parser: Any) -> None:
    parser.add_argument("--threshold", type=float, default=0.1, help="lowest span score kept (0-1)")
    parser.add_argument("--max-spans", type=int, default=2, help="spans kept per passage")


def has_answer(text: str, answers: list[str]) -> bool:
    return any(a.lower() in text.lower() for a in answers)


class Savings:
    """Prompt tokens of the passages in full and of their spans, and answer recall in each."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.full_tokens = self.span_tokens = self.total = self.full_hits = self.span_hits = 0

    def add(self, full: str, spans: str, answers: list[str]) -> tuple[int, int]:
        counts = [len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (full, spans)]
        self.full_tokens += counts[0]
        self.span_tokens += counts[1]
        self.total += 1
        self.full_hits += has_answer(full, answers)
        self.span_hits += has_answer(spans, answers)
        return counts[0], counts[1]

    def show(self) -> None:
        saved = 1 - self.span_tokens / max(self.full_tokens, 1)
        print(
            f"\nContext tokens: {self.full_tokens} in full, {self.span_tokens} as spans ({saved:.0%} saved). "
            f"A reference answer in the context: full passages {self.full_hits}/{self.total}, "
            f"spans {self.span_hits}/{self.total}"
        )


def main(argv=None) -> None:
    args = common.parse_arguments(__doc__.splitlines()[0], argv, extra=options)
    reranker = common.load_announced(args)
    bm25 = lc.bm25_retriever(k=args.top_k)
    spans = {"threshold": args.threshold, "max_spans": args.max_spans}
    compressor = CoReRerank.from_reranker(reranker, top_n=args.top_n, relevant_spans=spans, cut_to_spans=True)
    llm = lc.answer_chain(lc.local_chat_model(reranker.model, reranker.tokenizer, args.max_new_tokens))
    savings = Savings(reranker.tokenizer)
    for number, item in enumerate(common.load_questions(args.questions), start=1):
        common.show_question(number, item)
        kept = compressor.compress_documents(bm25.invoke(item["question"]), item["question"])
        full = lc.format_docs([d.model_copy(update={"page_content": _full(d)}) for d in kept])
        cut = lc.format_docs(kept)
        before, after = savings.add(full, cut, item["answers"])
        for doc in kept:
            print(f"  {doc.id:<5} {doc.metadata['title'][:40]!r}: {doc.page_content[:150]!r}")
        print(
            f"  Context: {before} tokens in full, {after} as spans; answer in spans: {has_answer(cut, item['answers'])}"
        )
        with reranker.lock:
            print(f"  Answer: {llm.invoke({'docs': kept, 'question': item['question']}).strip()}")
    savings.show()


def _full(doc: Any) -> str:
    return doc.metadata.get("full_text", doc.page_content)


if __name__ == "__main__":
    main()
