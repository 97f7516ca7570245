"""The listwise prompt of method.md section 1, and its token spans from one tokenization pass.

The user turn holds every document, then the instruction and the query, in the model's own
chat format. Spans are found with the tokenizer's offset mapping: each document span is the
tokens overlapping that document's characters (its ``[document i]`` marker excluded); the
query span runs from "Please find information" to the end of the query text.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError
from .utils import join_title

INTRO = "Here are some paragraphs:\n\n"
INSTRUCTION = "Please find information that are relevant to the following query in the paragraphs above."
QUERY_PREFIX = "\n\nQuery: "
NULL_QUERY = "N/A"
_SENTINEL = "\u2063CORE_RERANK_CONTENT\u2063"


def truncate_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` whitespace-separated words (whitespace runs become one space)."""
    words = text.split()
    if max_words is not None:
        words = words[:max_words]
    return " ".join(words)


@dataclass(frozen=True)
class PreparedPrompt:
    """One tokenized prompt, with end-exclusive ``(start, end)`` token spans.

    ``document_spans[i]`` belongs to ``documents[i]`` (the truncated texts in prompt order).
    ``null_input_ids`` / ``null_query_span`` are the same prompt with the query replaced by
    the content-free query used for calibration; both share the first ``prefix_length`` tokens.
    ``token_offsets[j]`` is token j's ``(start, end)`` characters in ``text`` and
    ``document_chars[i]`` the characters of ``documents[i]`` in ``text`` (evidence spans).
    """

    input_ids: list[int]
    document_spans: list[tuple[int, int]]
    query_span: tuple[int, int]
    documents: list[str]
    query: str
    text: str
    null_input_ids: list[int]
    null_query_span: tuple[int, int]
    prefix_length: int
    token_offsets: Sequence[tuple[int, int]] = ()
    document_chars: Sequence[tuple[int, int]] = ()

    def __len__(self) -> int:
        return len(self.input_ids)


class PromptBuilder:
    """Builds prompts for one tokenizer (needs a fast tokenizer for offset mappings)."""

    def __init__(self, tokenizer: Any, null_query: str = NULL_QUERY):
        if not getattr(tokenizer, "is_fast", False):
            raise InputError(
                "core-rerank needs a fast (Rust) tokenizer for character offsets; "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        self.tokenizer = tokenizer
        self.null_query = null_query
        self.template_head, self.template_tail, self.add_special_tokens = self._split_template()

    def _split_template(self) -> tuple[str, str, bool]:
        """The chat format around the user content; a plain prompt when there is no template."""
        if getattr(self.tokenizer, "chat_template", None):
            rendered = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=True
            )
            if isinstance(rendered, str) and rendered.count(_SENTINEL) == 1:
                head, tail = rendered.split(_SENTINEL)
                # The template already holds its special tokens (BOS and so on).
                return head, tail, False
        return "", "\n\n", True

    def content(self, query: str, documents: Sequence[str]) -> tuple[str, list[tuple[int, int]], tuple[int, int]]:
        """The user-turn text with each document's and the query span's character ranges."""
        parts = [INTRO]
        position = len(INTRO)
        doc_chars = []
        for i, doc in enumerate(documents, start=1):
            marker = f"[document {i}] "
            parts.append(marker)
            position += len(marker)
            doc_chars.append((position, position + len(doc)))
            parts.append(doc)
            position += len(doc)
            parts.append("\n\n")
            position += 2
        query_start = position
        parts += [INSTRUCTION, QUERY_PREFIX, query]
        position += len(INSTRUCTION) + len(QUERY_PREFIX) + len(query)
        return "".join(parts), doc_chars, (query_start, position)

    def _tokenize(self, query: str, documents: Sequence[str]):
        content, doc_chars, query_chars = self.content(query, documents)
        text = self.template_head + content + self.template_tail
        shift = len(self.template_head)
        encoded = self.tokenizer(text, add_special_tokens=self.add_special_tokens, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        ranges = [(start + shift, end + shift) for start, end in [*doc_chars, query_chars]]
        *doc_spans, query_span = _token_spans(offsets, ranges)
        return list(encoded["input_ids"]), doc_spans, query_span, text, offsets, ranges[:-1]

    def prepare(self, query: str, documents: Sequence[str]) -> PreparedPrompt:
        """Tokenize the query prompt and its content-free twin (two linear passes)."""
        ids, doc_spans, query_span, text, offsets, doc_chars = self._tokenize(query, documents)
        null_ids, _, null_span, *_ = self._tokenize(self.null_query, documents)
        shared = 0
        limit = min(query_span[0], null_span[0])
        while shared < limit and ids[shared] == null_ids[shared]:
            shared += 1
        return PreparedPrompt(
            input_ids=ids,
            document_spans=doc_spans,
            query_span=query_span,
            documents=list(documents),
            query=query,
            text=text,
            null_input_ids=null_ids,
            null_query_span=null_span,
            prefix_length=shared,
            token_offsets=offsets,
            document_chars=doc_chars,
        )

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of texts on their own (for window planning; batched, linear)."""
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def overhead_tokens(self, query: str) -> int:
        """Tokens of a prompt with no documents (template, instruction and query)."""
        return len(self._tokenize(query, [])[0])


def _token_spans(offsets: Sequence[tuple[int, int]], char_ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each character range, the tokens overlapping it, as an end-exclusive token range.

    Zero-width tokens (special tokens) never overlap. An empty range gives an empty span
    placed where its text would have been. Binary search keeps this O(ranges * log tokens).
    """
    kept = [i for i, (s, e) in enumerate(offsets) if e > s]
    starts = [offsets[i][0] for i in kept]
    ends = [offsets[i][1] for i in kept]
    spans = []
    for start, end in char_ranges:
        first = bisect.bisect_right(ends, start)  # first token ending after `start`
        stop = bisect.bisect_left(starts, end)  # first token starting at or after `end`
        if first < stop:
            spans.append((kept[first], kept[stop - 1] + 1))
        else:
            at = kept[first] if first < len(kept) else len(offsets)
            spans.append((at, at))
    return spans


def check_query(query: Any) -> str:
    """The query with whitespace runs made one space; a non-string or empty query is refused."""
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise InputError("query is empty: reranking needs a query with some text")
    return " ".join(query.split())


def check_documents(documents: Any) -> Sequence[Any]:
    """``documents`` itself, if it is a list-like of documents (not one string)."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise InputError("documents must be a list of strings (or of {'text', 'title'} mappings)")
    return documents


def document_texts(documents: Sequence[Any]) -> list[str]:
    """The text of each document: a string as is, a ``{"text", "title"}`` mapping as
    ``title + " " + text`` (BEIR's passage form; a missing title is left out)."""
    texts = []
    for index, doc in enumerate(check_documents(documents)):
        if isinstance(doc, str):
            texts.append(doc)
        elif isinstance(doc, Mapping) and isinstance(doc.get("text"), str):
            texts.append(join_title(doc.get("title"), doc["text"]))
        else:
            raise InputError(
                f"document {index} is a {type(doc).__name__}; documents must be strings "
                "(or mappings with a 'text' string and an optional 'title')"
            )
    return texts
