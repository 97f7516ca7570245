"""Head detection: which attention heads rerank best for a model, found on data you choose.

- :func:`detect_heads` runs the detection pass and returns a :class:`HeadScoreTable`
  (``core_rerank.detection.detect``; the batched capture is in ``.masses``);
- :class:`HeadScoreTable` holds every head's scores, reads and writes them, and turns them into
  head configs (``table.top_heads(8)``); it needs no torch (``.score_table``);
- the inputs: :func:`read_jsonl_examples` (the CoRe/ICR JSONL layout), :func:`beir_examples`
  (a BEIR folder and a qrels split), :class:`Example`, :class:`ExampleSet` and
  :class:`DetectionDataError` (``.data``).

Choosing the number of heads and the temperature on held-out data is evaluation work:
``core_rerank.evaluation.head_selection``.
"""

from __future__ import annotations

from .data import DetectionDataError, Example, ExampleSet, beir_examples, read_jsonl_examples
from .detect import detect_heads
from .score_table import DEFAULT_TEMPERATURE, HeadScoreTable, core_key

__all__ = [
    "DEFAULT_TEMPERATURE",
    "DetectionDataError",
    "Example",
    "ExampleSet",
    "HeadScoreTable",
    "beir_examples",
    "core_key",
    "detect_heads",
    "read_jsonl_examples",
]
