"""The default dtype on a CPU, and bfloat16 scoring against the naive eager reference.

``dtype="auto"`` picks bfloat16 on a CPU with native bfloat16 matrix kernels (AVX512-BF16 or
AMX-BF16, ``core_rerank.cpu_features``) and float32 elsewhere; the detection is mocked here, so
these tests mean the same on any machine. The float32 parity tests elsewhere pin
``dtype="float32"`` and keep their float32 tolerances.

Tolerance of the bfloat16 parity tests: ``BF16_TOLERANCE`` = 8 u of the largest |score|, with
u = 2**-8 the unit roundoff of bfloat16 (8 significant bits). Why several u and not one: the
eager reference returns every attention probability rounded to bfloat16 (each off by up to u),
while the fast path computes the captured rows in float32 from the bfloat16 queries and keys;
the layers below run in bfloat16 through different kernels (sdpa with KV-cache reuse against
one eager pass), so their hidden states differ by a few roundings per layer; and a document's
score is a sum of many calibrated token values (query minus N/A) that largely cancel, so its
error relative to the largest score is a few u. Measured: at most 3.1 u on the tiny models
below, 1.7 u for SmolLM2's CoRe heads (1.8 u from float32), and the bfloat16 reference itself
is up to 4.3 u away from its float32 twin, so the fast path adds no more than bfloat16 itself
costs. A bug is far outside it: another query moves the tiny models' scores by 500-900 u
(the test asks for more than 80 u).
"""

import copy

import naive_reference
import pytest
import torch
from test_capture import DOCS, QUERY, _tiny
from test_reranker import DOCS as REAL_DOCS
from test_reranker import QUERY as REAL_QUERY
from transformers import AutoModelForCausalLM, AutoTokenizer

from core_rerank import CoReReranker, HeadConfig, cpu_features, loading

BF16_UNIT_ROUNDOFF = 2.0**-8
BF16_TOLERANCE = 8 * BF16_UNIT_ROUNDOFF  # of the largest |score|; see the module docstring
CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    """``native_bf16(True)`` makes this CPU look like one with (or without) bf16 kernels."""

    def set_answer(answer: bool) -> None:
        monkeypatch.setattr(cpu_features, "has_native_bf16", lambda: answer)

    return set_answer


def _largest_gap(got, expected):
    return max(abs(a - b) for a, b in zip(got, expected)) / max(abs(v) for v in expected)


# ---------------------------------------------------------------------- the choice
@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bfloat16_only_on_a_cpu_with_native_bf16(native_bf16, native):
    native_bf16(native)
    assert loading.resolve_dtype("auto", CPU) == (torch.bfloat16 if native else torch.float32)
    assert loading.resolve_dtype(None, CPU) == (torch.bfloat16 if native else torch.float32)
    # an explicit dtype is always kept
    assert loading.resolve_dtype("float32", CPU) == torch.float32
    assert loading.resolve_dtype("bf16", CPU) == torch.bfloat16
    assert loading.resolve_dtype(torch.float16, CPU) == torch.float16
    assert loading.resolve_dtype("auto", torch.device("mps")) == torch.float16  # other devices unchanged


def test_the_dtype_that_ran_is_in_settings(native_bf16):
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        native_bf16(native)
        reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", method="qr", device="cpu")
        assert reranker.settings()["dtype"] == expected
        assert {p.dtype for p in reranker.model.parameters()} == {getattr(torch, expected)}
    explicit = CoReReranker.from_pretrained("smollm2-135m-instruct", method="qr", device="cpu", dtype="float32")
    assert explicit.settings()["dtype"] == "float32"


def test_detection_reads_torch_then_cpuinfo(monkeypatch, tmp_path):
    with_bf16, without = tmp_path / "with", tmp_path / "without"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nflags\t: fpu\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert cpu_features._from_cpuinfo(with_bf16) is True
    assert cpu_features._from_cpuinfo(without) is False
    assert cpu_features._from_cpuinfo(tmp_path / "missing") is None
    assert cpu_features._from_cpuinfo(tmp_path) is None  # a directory: unreadable, no answer

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_bf16": True}, raising=False)
    assert cpu_features._from_torch_capabilities() is True
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False})
    assert cpu_features._from_torch_capabilities() is False
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "aarch64", "bf16": True})
    assert cpu_features._from_torch_capabilities() is None  # ARM bf16 is not counted: ask the next source

    # the first source that answers decides; none answering means float32
    cpu_features.has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr(cpu_features, "_from_torch_capabilities", lambda: None)
        monkeypatch.setattr(cpu_features, "_from_torch_probes", lambda: None)
        monkeypatch.setattr(cpu_features, "_from_cpuinfo", lambda: True)
        assert cpu_features.has_native_bf16() is True
        cpu_features.has_native_bf16.cache_clear()
        monkeypatch.setattr(cpu_features, "_from_cpuinfo", lambda: None)
        assert cpu_features.has_native_bf16() is False
    finally:
        cpu_features.has_native_bf16.cache_clear()


# ---------------------------------------------------------------------- faithfulness in bfloat16
@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.mark.parametrize("kind", ["llama", "qwen2", "granite", "gemma3"])
@pytest.mark.parametrize("heads", [[(1, 3), (2, 0), (3, 2)], "all"])
def test_bf16_fast_scores_equal_eager_recomputation_in_bf16(tokenizer, kind, heads):
    model = _tiny(kind, len(tokenizer)).to(torch.bfloat16).eval()
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    if heads == "all":
        reranker, head_list = CoReReranker(model, tokenizer, method="icr"), naive_reference.all_heads(model.config)
    else:
        reranker, head_list = CoReReranker(model, tokenizer, heads=HeadConfig(heads=heads)), heads
    assert reranker.settings()["dtype"] == "bfloat16"
    expected = naive_reference.document_scores(eager, reranker.prepare(QUERY, DOCS), head_list)
    got = reranker.score(QUERY, DOCS)
    assert _largest_gap(got, expected) <= BF16_TOLERANCE
    assert _largest_gap(reranker.score("bananas", DOCS), expected) > 10 * BF16_TOLERANCE  # not vacuous


def test_bf16_smollm2_core_equals_eager_in_bf16_and_ranks_as_float32(smollm2_dir, make_reranker):
    reranker = CoReReranker.from_pretrained("smollm2-135m-instruct", device="cpu", dtype="bfloat16")
    eager = AutoModelForCausalLM.from_pretrained(smollm2_dir, attn_implementation="eager", dtype=torch.bfloat16)
    expected = naive_reference.document_scores(
        eager.eval(), reranker.prepare(REAL_QUERY, REAL_DOCS), reranker.heads.heads
    )
    got = reranker.score(REAL_QUERY, REAL_DOCS)
    assert _largest_gap(got, expected) <= BF16_TOLERANCE
    # Against float32: every score within the same tolerance, so two documents whose float32
    # scores are more than twice the tolerance apart keep their order: 9 of the 10 pairs here
    # (the two least relevant documents are closer than that).
    float32 = make_reranker(method="core").score(REAL_QUERY, REAL_DOCS)
    assert _largest_gap(got, float32) <= BF16_TOLERANCE
    margin = 2 * BF16_TOLERANCE * max(abs(v) for v in float32)
    pairs = [(i, j) for i in range(len(got)) for j in range(len(got)) if float32[i] - float32[j] > margin]
    assert len(pairs) == 9 and all(got[i] > got[j] for i, j in pairs)
