"""Framework-free helpers shared by the example QA apps: data, the shared model, generation.

One model serves everything: ``load_reranker`` loads SmolLM2-135M-Instruct *in full*
(``num_layers_to_keep="all"``) so that the same weights rerank (the reranker still stops after
the deepest head's layer) and generate answers (``reranker.model.generate``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core_rerank.utils import DEFAULT_MODEL

DATA_DIR = Path(__file__).resolve().parent / "data" / "nq_slice"
SYSTEM_PROMPT = (
    "You answer questions using the passages you are given. "
    "Reply with a short answer of a few words, taken from the passages."
)


def load_corpus() -> list[dict]:
    """The example corpus: ``{"id", "title", "text"}`` Wikipedia passages (NQ-open slice)."""
    with open(DATA_DIR / "corpus.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def load_questions(limit: int | None = None) -> list[dict]:
    """``{"id", "question", "answers", "gold_ids"}``; ``gold_ids`` are the answer passages."""
    with open(DATA_DIR / "questions.jsonl", encoding="utf-8") as handle:
        questions = [json.loads(line) for line in handle]
    return questions[:limit] if limit else questions


def load_reranker(
    model: str = DEFAULT_MODEL, method: str | None = None, heads: str | None = None, device: str | None = None
) -> Any:
    """Load the model once, in full, so it can both rerank and generate."""
    from core_rerank import CoReReranker

    try:
        return CoReReranker.from_pretrained(model, method=method, heads=heads, device=device, num_layers_to_keep="all")
    except ValueError as error:  # no heads for this model, or a method that contradicts --heads
        raise SystemExit(
            f"{error}\n(for these examples: add --method icr, or --method qr if a QR preset exists)"
        ) from None


def parse_arguments(description: str, argv=None, extra=None):
    """The options every example app takes (``extra(parser)`` may add an app's own)."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--questions", type=int, default=5, help="how many questions to ask")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--method", choices=["core", "qr", "icr"], help="default: the method of --heads, else core")
    parser.add_argument("--heads", help="head preset name or head-config JSON (default: the model's preset)")
    parser.add_argument("--top-k", type=int, default=10, help="BM25 candidates")
    parser.add_argument("--top-n", type=int, default=3, help="passages kept for the answer")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    if extra is not None:
        extra(parser)
    return parser.parse_args(argv)


def load_announced(args) -> Any:
    """``load_reranker`` for the parsed options, saying what was loaded and how fast."""
    started = time.perf_counter()
    reranker = load_reranker(args.model, method=args.method, heads=args.heads)
    print(
        f"Loaded {reranker.model_id} (heads: {reranker.heads.name or reranker.method}) "
        f"in {time.perf_counter() - started:.1f} s; one model reranks and answers."
    )
    return reranker


def generate(model: Any, tokenizer: Any, messages: Sequence[dict], max_new_tokens: int = 48) -> str:
    """Greedy chat completion with a Hugging Face causal LM (the reranker's own model)."""
    import torch

    encoded = tokenizer.apply_chat_template(
        list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    encoded = {key: value.to(model.device) for key, value in encoded.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with torch.inference_mode():
        output = model.generate(
            **encoded,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=pad,
        )
    return tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def answer_messages(question: str, passages: Iterable[str]) -> list[dict]:
    context = "\n\n".join(f"[{i}] {text}" for i, text in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Passages:\n{context}\n\nQuestion: {question}?\nAnswer:"},
    ]


def show_question(number: int, item: dict) -> None:
    print(f"\nQ{number}: {item['question']}")
    print(f"    gold passage: {', '.join(item['gold_ids'])}; reference answer: {' | '.join(item['answers'])}")


def show_ranking(label: str, rows: Sequence[tuple[str, str, float | None]], gold: Iterable[str]) -> None:
    """``rows``: (passage id, title, score). Gold passages are marked with ``*``."""
    gold = set(gold)
    print(f"  {label}:")
    for rank, (doc_id, title, score) in enumerate(rows, start=1):
        mark = "*" if doc_id in gold else " "
        value = f"{score:8.3f}" if score is not None else "       -"
        print(f"    {rank:2d}. {mark}{doc_id:<5} {value}  {title[:60]}")


def gold_rank(ids: Sequence[str], gold: Iterable[str]) -> int | None:
    gold = set(gold)
    return next((rank for rank, doc_id in enumerate(ids, start=1) if doc_id in gold), None)


class Summary:
    """Counts how often the gold passage made the context the LLM sees, before and after."""

    def __init__(self, cut: int, first_stage: str = "BM25"):
        self.cut = cut
        self.first_stage = first_stage
        self.before = self.after = self.total = 0
        self.started = time.perf_counter()

    def add(self, retrieved_ids: Sequence[str], reranked_ids: Sequence[str], gold: Iterable[str]) -> None:
        gold = list(gold)
        self.total += 1
        self.before += (gold_rank(retrieved_ids[: self.cut], gold) or 0) > 0
        self.after += (gold_rank(reranked_ids[: self.cut], gold) or 0) > 0

    def show(self) -> None:
        seconds = time.perf_counter() - self.started
        print(
            f"\nGold passage in the top {self.cut}: {self.first_stage} {self.before}/{self.total}, "
            f"after CoRe reranking {self.after}/{self.total} ({seconds:.1f} s for {self.total} questions)"
        )
