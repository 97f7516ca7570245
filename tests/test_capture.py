"""The fast selected-head capture equals eager attention, on tiny random models of several
architectures (GQA, sliding windows, custom attention scaling, KV-cache reuse, early stop)."""

import copy

import naive_reference
import pytest
import torch
from transformers import (
    AutoTokenizer,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GraniteConfig,
    GraniteForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from core_rerank import CoReReranker, HeadConfig

DOCS = [
    "The moon pulls the oceans and makes tides.",
    "Bananas are yellow fruit.",
    "Tides rise and fall twice a day because of gravity.",
    "Paris is in France.",
]
QUERY = "what causes tides?"
SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)


def _tiny(kind, vocab):
    torch.manual_seed(0)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **SMALL))
    if kind == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, **SMALL))
    if kind == "granite":  # attention_multiplier replaces 1/sqrt(d)
        return GraniteForCausalLM(GraniteConfig(vocab_size=vocab, attention_multiplier=0.05, **SMALL))
    if kind == "gemma3":  # sliding-window layers (window 16) and query_pre_attn_scalar scaling
        config = Gemma3TextConfig(
            vocab_size=vocab,
            head_dim=16,
            sliding_window=16,
            query_pre_attn_scalar=24,
            layer_types=["sliding_attention", "full_attention"] * 2,
            **SMALL,
        )
        return Gemma3ForCausalLM(config)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.mark.parametrize("forward", ["packed", "sequential"])
@pytest.mark.parametrize("kind", ["llama", "qwen2", "granite", "gemma3"])
@pytest.mark.parametrize("heads", [[(1, 3), (2, 0), (3, 2)], "all"])
def test_fast_scores_equal_eager_recomputation(tokenizer, kind, heads, forward):
    model = _tiny(kind, len(tokenizer)).float().eval()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    if heads == "all":
        reranker = CoReReranker(model, tokenizer, method="icr", forward=forward)
        head_list = naive_reference.all_heads(model.config)
    else:
        reranker, head_list = CoReReranker(model, tokenizer, heads=HeadConfig(heads=heads), forward=forward), heads
    assert reranker.forward == forward
    prepared = reranker.prepare(QUERY, DOCS)
    expected = naive_reference.document_scores(eager, prepared, head_list)
    got = reranker.score(QUERY, DOCS)
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-7)
    # a different query gives different scores (the capture really reads the query rows)
    assert reranker.score("bananas", DOCS) != got


@pytest.mark.parametrize("forward", ["packed", "sequential"])
def test_shared_full_model_stops_after_the_deepest_head(tokenizer, forward):
    model = _tiny("llama", len(tokenizer)).float().eval()
    reranker = CoReReranker(model, tokenizer, heads=HeadConfig(heads=[(1, 0)]), forward=forward)
    ran = []
    hooks = [
        layer.register_forward_hook(lambda m, i, o, n=n: ran.append(n)) for n, layer in enumerate(model.model.layers)
    ]
    reranker.score(QUERY, DOCS)
    for hook in hooks:
        hook.remove()
    assert set(ran) == {0}  # layer 1 stops inside its attention, layers 2-3 never run
    # sequential: shared prefix once, then the query and the N/A suffixes on its KV cache;
    # packed: all three in one pass
    assert len(ran) == (3 if forward == "sequential" else 1)
    # and the model still generates normally outside a capture
    ids = torch.tensor([tokenizer("hello")["input_ids"]])
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("sdpa")
    assert torch.equal(
        model.generate(ids, max_new_tokens=5, do_sample=False),
        reference.generate(ids, max_new_tokens=5, do_sample=False),
    )


def test_logit_scale_override_changes_the_softmax_temperature(tokenizer):
    model = _tiny("llama", len(tokenizer)).float().eval()
    base = CoReReranker(model, tokenizer, heads=HeadConfig(heads=[(2, 1)]))
    scaled = CoReReranker(model, tokenizer, heads=HeadConfig(heads=[(2, 1)], scoring={"logit_scale": 0.0}))
    # scale 0 makes attention uniform over the causal context: query and N/A rows see the same
    # distribution over the shared prefix except for the normaliser, so scores differ from the base
    assert base.score(QUERY, DOCS) != scaled.score(QUERY, DOCS)
    prepared = scaled.prepare(QUERY, DOCS)
    tokens = scaled.token_scores(prepared)

    def uniform(span):
        return sum(1.0 / (t + 1) for t in range(*span)) / (span[1] - span[0])

    expected = uniform(prepared.query_span) - uniform(prepared.null_query_span)
    assert float(tokens[0]) == pytest.approx(expected, rel=1e-4)


def test_packed_forward_equals_sequential_in_windows_and_both_orders(tokenizer):
    """Several windows, each in two orders, in one packed pass: the scores of one prompt at a time."""
    model = _tiny("gemma3", len(tokenizer)).float().eval()  # sliding-window layers: windows past 16 tokens
    docs = DOCS * 3 + ["Gravity of the sun also moves the sea a little."]
    packed = CoReReranker(model, tokenizer, heads=HeadConfig(heads=[(1, 3), (3, 2)]), window_tokens=40)
    packed.document_order = "both"
    assert packed.forward == "packed" and len(packed.windows(QUERY, docs)) > 2
    got = packed.score(QUERY, docs)
    packed.forward = "sequential"
    assert got == pytest.approx(packed.score(QUERY, docs), rel=1e-4, abs=1e-7)


def test_forward_setting_is_checked(tokenizer):
    model = _tiny("llama", len(tokenizer)).float().eval()
    with pytest.raises(ValueError, match="forward must be one of"):
        CoReReranker(model, tokenizer, method="icr", forward="fast")
    assert CoReReranker(model, tokenizer, method="icr").settings()["forward"] == "packed"  # auto on a CPU
