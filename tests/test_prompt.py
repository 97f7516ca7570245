"""Prompt layout and token spans, across chat-template styles and tokenizer kinds."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from core_rerank.prompt import INSTRUCTION, PromptBuilder, _token_spans, truncate_words

LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)
DOCS = [
    "The moon's gravity pulls on the oceans, causing tides twice a day.",
    "Bananas are rich in potassium.",
    "Unicode: naïve café — 東京 🚀 and a bell\x07 and\ttabs\nnewlines.",
    "[document 9] a document that quotes a marker, and ends with punctuation!!",
]
QUERY = "what causes tides?"


@pytest.fixture(scope="module")
def smol_tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


def _metaspace_tokenizer():
    """A sentencepiece-style (Metaspace) BPE tokenizer, trained here on the test texts."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = DOCS * 20 + [INSTRUCTION, QUERY, "Here are some paragraphs: Query: N/A"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = MISTRAL_TEMPLATE
    return fast


def _variants(smol):
    llama = AutoTokenizer.from_pretrained(smol.name_or_path)
    llama.chat_template = LLAMA3_TEMPLATE
    # as in Llama 3, the header and turn markers are special tokens
    llama.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    mistral = AutoTokenizer.from_pretrained(smol.name_or_path)
    mistral.chat_template = MISTRAL_TEMPLATE
    plain = AutoTokenizer.from_pretrained(smol.name_or_path)
    plain.chat_template = None
    return {
        "chatml": smol,
        "llama3": llama,
        "mistral": mistral,
        "none": plain,
        "metaspace-mistral": _metaspace_tokenizer(),
    }


@pytest.mark.parametrize("style", ["chatml", "llama3", "mistral", "none", "metaspace-mistral"])
def test_spans_decode_back_to_documents_and_query(smol_tokenizer, style):
    tokenizer = _variants(smol_tokenizer)[style]
    docs = [truncate_words(d, 300) for d in DOCS]
    prepared = PromptBuilder(tokenizer).prepare(QUERY, docs)

    def decode(span, ids=prepared.input_ids):
        return tokenizer.decode(ids[span[0] : span[1]]).strip()

    for span, doc in zip(prepared.document_spans, docs):
        assert decode(span) == doc
    query_text = decode(prepared.query_span)
    assert query_text.startswith("Please find information") and query_text.endswith(QUERY)
    assert "[document" not in decode(prepared.document_spans[0])
    # spans are ordered, disjoint and all inside the prefix shared with the N/A prompt
    ends = [0] + [e for _, e in prepared.document_spans]
    starts = [s for s, _ in prepared.document_spans] + [prepared.query_span[0]]
    assert all(a <= b for a, b in zip(ends, starts))
    assert prepared.document_spans[-1][1] <= prepared.prefix_length <= prepared.query_span[0]
    assert prepared.input_ids[: prepared.prefix_length] == prepared.null_input_ids[: prepared.prefix_length]
    null_text = decode(prepared.null_query_span, prepared.null_input_ids)
    assert null_text.startswith("Please find information") and null_text.endswith("Query: N/A")
    # the whole prompt is one tokenization of the rendered text
    assert tokenizer.decode(prepared.input_ids, skip_special_tokens=False).count("[document ") == len(docs) + 1


def test_template_roles_wrap_the_content(smol_tokenizer):
    prepared = PromptBuilder(smol_tokenizer).prepare(QUERY, ["a doc"])
    assert prepared.text.startswith("<|im_start|>system")
    assert prepared.text.endswith(f"Query: {QUERY}<|im_end|>\n<|im_start|>assistant\n")
    assert "Here are some paragraphs:\n\n[document 1] a doc\n\nPlease find" in prepared.text


def test_truncation_counts_words_and_normalises_whitespace():
    text = " ".join(f"w{i}" for i in range(500))
    assert truncate_words(text, 300).split() == [f"w{i}" for i in range(300)]
    assert truncate_words("  a\n\tb  ", 300) == "a b"
    assert truncate_words("a b c", None) == "a b c"


def test_spans_of_many_documents_are_exact(smol_tokenizer):
    builder = PromptBuilder(smol_tokenizer)
    docs = [f"document number {i} about topic {i % 7}" for i in range(2000)]
    prepared = builder.prepare(QUERY, docs)
    assert len(prepared.document_spans) == 2000
    last = prepared.document_spans[-1]
    assert smol_tokenizer.decode(prepared.input_ids[last[0] : last[1]]).strip() == docs[-1]


class CountingInt(int):
    """An int that counts the comparisons made with it (on either side)."""

    comparisons = 0

    def _count(self, other, op):
        CountingInt.comparisons += 1
        return op(int(self), int(other))

    def __lt__(self, other):
        return self._count(other, int.__lt__)

    def __le__(self, other):
        return self._count(other, int.__le__)

    def __gt__(self, other):
        return self._count(other, int.__gt__)

    def __ge__(self, other):
        return self._count(other, int.__ge__)

    def __eq__(self, other):
        return self._count(other, int.__eq__)

    __hash__ = int.__hash__


def _span_search_comparisons(num_docs: int) -> int:
    """Comparisons `_token_spans` makes for `num_docs` documents of 10 three-character tokens each
    (a zero-width special token after every document)."""
    offsets, ranges, position = [], [], 0
    for _ in range(num_docs):
        start = position
        for _ in range(10):
            offsets.append((CountingInt(position), CountingInt(position + 3)))
            position += 3
        ranges.append((CountingInt(start), CountingInt(position)))
        offsets.append((CountingInt(position), CountingInt(position)))
    CountingInt.comparisons = 0
    spans = _token_spans(offsets, ranges)
    assert spans[-1] == (len(offsets) - 11, len(offsets) - 1) and len(spans) == num_docs
    return CountingInt.comparisons


def test_span_search_grows_linearly_not_quadratically():
    # Twice the documents (and tokens): about twice the work (n log n), not four times (n^2).
    small, large = _span_search_comparisons(1000), _span_search_comparisons(2000)
    assert 1.8 < large / small < 2.5


def test_slow_tokenizers_are_refused_with_a_hint():
    class Slow:
        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        PromptBuilder(Slow())
