"""Write tests/data/scores_before_windows.json: scores of the code before prompt windows existed.

    PYTHONPATH=<checkout of b244fd5> python tests/data/make_score_fixture.py

Run once from commit b244fd5 (the last commit before ``window_tokens``). The file pins what
``window_tokens=None`` must still give: the SmolLM2 presets' CoRe, QR and ICR scores of the first
two queries of the SciFact slice (BM25 top 12, 80 words), in one prompt and, with
``max_length=700``, split into windows because the list does not fit.
"""

import json
from pathlib import Path

import torch

from core_rerank import CoReReranker
from core_rerank.datasets import load_eval_data

HERE = Path(__file__).resolve().parent
torch.set_num_threads(1)
data = load_eval_data(HERE / "scifact_slice")
cases = []
for max_length in (None, 700):
    for method in ("core", "qr", "icr"):
        reranker = CoReReranker.from_pretrained(
            "smollm2-135m-instruct",
            method=method,
            device="cpu",
            dtype="float32",
            max_doc_words=80,
            max_length=max_length,
        )
        for qid in list(data.queries)[:2]:
            docs = [data.corpus[d] for d in data.candidates(qid, 12)]
            cases.append(
                {
                    "method": method,
                    "max_length": max_length,
                    "qid": qid,
                    "depth": 12,
                    "scores": reranker.score(data.queries[qid], docs),
                }
            )
record = {"generated_by": "tests/data/make_score_fixture.py at b244fd5", "cases": cases}
(HERE / "scores_before_windows.json").write_text(json.dumps(record, indent=1) + "\n")
