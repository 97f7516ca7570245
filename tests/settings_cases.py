"""The two reranker settings the every-path tests send, and what the built reranker must report.

- ``NONE_SETTINGS``: one prompt (the preset has 600-token windows), no word cut, the layers the
  heads need, the model's own budget, the preset's method, heads and document order, float32;
- ``SET_SETTINGS``: 123-token windows, 17 words, 27 layers, a 3,000-token budget, QR-R with the
  QR preset, documents in reversed order, bfloat16, the sequential forward.
"""

from __future__ import annotations

NONE_SETTINGS = dict(
    window_tokens=None, max_doc_words=None, num_layers_to_keep=None, max_length=None, method=None, heads=None
)
NONE_BUILT = dict(
    window_tokens=None,
    max_doc_words=None,
    num_layers_to_keep=24,  # the CoRe preset's deepest head is in layer 23
    max_length=8192,  # SmolLM2's context
    method="core",
    heads="smollm2-135m-instruct",
    dtype="float32",
    document_order="first_stage",  # the preset's ("auto")
    forward="packed",  # "auto" on a CPU
)
SET_SETTINGS = dict(
    window_tokens=123,
    max_doc_words=17,
    num_layers_to_keep=27,
    max_length=3000,
    method="qr",
    heads="smollm2-135m-instruct-qr",
    dtype="bfloat16",
    document_order="reversed",
    forward="sequential",
)
SET_BUILT = {**SET_SETTINGS}


def cli_options(settings: dict, *, dtype: str = "float32", with_method: bool = True) -> list[str]:
    """Command-line options for ``settings`` (``None`` spelt as each option spells it)."""
    spelt = {"window_tokens": "none", "max_doc_words": "none", "num_layers_to_keep": None}
    args = ["--device", "cpu", "--threads", "1", "--dtype", settings.get("dtype", dtype)]
    for name, value in settings.items():
        if name == "dtype" or (name == "method" and not with_method):
            continue
        text = spelt.get(name) if value is None else str(value)
        if text is not None:
            args += [f"--{name.replace('_', '-')}", text]
    return args


def check_built(built: dict, expected: dict) -> None:
    got = {name: built[name] for name in expected if name != "heads"}
    assert got == {k: v for k, v in expected.items() if k != "heads"}
    assert built["heads"]["name"] == expected["heads"]
