"""Rebuild ``nq_slice/`` from the team's NQ-open detection set (not needed to run the examples).

Source: ``nq_open_oracle_bm25neg.jsonl.gz`` (see ../../README or the shared data README): NQ-open
test questions, each with its gold Wikipedia passage (DPR 100-word split, from
nelson-liu/lost-in-the-middle) and 9 BM25 negatives drawn from other questions' gold passages.
This keeps 30 questions from the END of the file (head detection uses examples from the start,
so the example questions stay unseen), skipping ones whose answer changes with time or is
ambiguous; it pools all their passages into one deduplicated corpus and records which passage
is gold for which question.

    python examples/data/build_nq_slice.py /path/to/nq_open_oracle_bm25neg.jsonl.gz
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

NUM_QUESTIONS = 30
FIRST = 2600  # of 2,655 questions
SKIPPED = {f"nqopen-test-{i}" for i in (2604, 2605, 2606, 2616, 2617, 2619, 2623, 2626, 2631, 2637, 2649)}


def main(source: str) -> None:
    out = Path(__file__).with_name("nq_slice")
    out.mkdir(exist_ok=True)
    passages: dict[str, dict] = {}
    questions = []
    with gzip.open(source, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number < FIRST:
                continue
            row = json.loads(line)
            if row["idx"] in SKIPPED:
                continue
            gold = []
            for paragraph in row["paragraphs"]:
                text = " ".join(paragraph["paragraph_text"].split())
                key = paragraph["title"] + "\n" + text
                if key not in passages:
                    passages[key] = {"id": f"p{len(passages)}", "title": paragraph["title"], "text": text}
                if paragraph["is_positive"]:
                    gold.append(passages[key]["id"])
            questions.append(
                {"id": row["idx"], "question": row["question"], "answers": row["answers"], "gold_ids": gold}
            )
            if len(questions) == NUM_QUESTIONS:
                break
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for passage in passages.values():
            handle.write(json.dumps(passage, ensure_ascii=False) + "\n")
    with open(out / "questions.jsonl", "w", encoding="utf-8") as handle:
        for question in questions:
            handle.write(json.dumps(question, ensure_ascii=False) + "\n")
    print(f"{len(questions)} questions, {len(passages)} passages -> {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/head-detection/nq_open_oracle_bm25neg.jsonl.gz")
