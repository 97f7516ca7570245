"""Running prompts through the decoder: the selected heads' calibrated rows of each prompt.

Two ways, the reranker's ``forward`` setting:

- ``"packed"`` (``core_rerank.packed``): every prompt of a ``score()`` call and its N/A twin in
  one forward pass (split at ``PACKED_TOKENS``), so every matrix product has thousands of rows.
  The CPU default: measured there (docs/results.md "CPU forward (packed)").
- ``"sequential"``: one prompt at a time, as three passes on a KV cache (the document prefix,
  then the query suffix and the N/A suffix on the prefix's cache). The GPU default, where the
  small passes cost little and it was measured.

Both give the same rows up to float rounding (the parity tests hold both to the eager reference).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from .errors import InputError
from .prompt import PreparedPrompt
from .utils import text_config

PACKED_TOKENS = 8192  # tokens per packed forward pass (more prompts are split over several passes)
FORWARDS = ("auto", "packed", "sequential")


def resolve_forward(forward: str, model: Any) -> str:
    """``"packed"`` or ``"sequential"`` for ``forward``. ``"auto"`` is packed on the CPU for
    kernels without logit soft-capping, and sequential elsewhere (GPUs keep the path measured
    there)."""
    if forward not in FORWARDS:
        raise InputError(f"forward must be one of {', '.join(FORWARDS)}, got {forward!r}")
    if forward != "auto":
        return forward
    device = next(model.parameters()).device
    softcap = getattr(text_config(model.config), "attn_logit_softcapping", None)
    return "packed" if device.type == "cpu" and not softcap else "sequential"


class PromptRunner:
    """Runs prepared prompts through ``model``'s decoder and returns, per prompt and layer, each
    selected head's query-span attention on the prefix minus the N/A twin's ([heads, prefix])."""

    def __init__(self, model: Any, heads_by_layer: dict[int, list[int]], stop_after: int, scoring: Any):
        self.model = model
        self.heads_by_layer = heads_by_layer
        self.stop_after = stop_after
        self.scoring = scoring  # the head config's scoring settings (calibration, logit scale)
        self.decoder = model.base_model
        parameters = inspect.signature(self.decoder.forward).parameters
        self.cache_arg = "cache" if "cache" in parameters else "past_key_values"

    @property
    def calibrate(self) -> bool:
        return self.scoring.calibration != "none"

    def rows(self, prompts: Sequence[PreparedPrompt], forward: str) -> list[dict[int, Any]]:
        """Calibrated rows of each prompt, with ``forward`` ``"packed"`` or ``"sequential"``."""
        import torch

        for prepared in prompts:
            if prepared.document_spans and prepared.document_spans[-1][1] > prepared.prefix_length:
                raise RuntimeError("the tokenizer merged document and query tokens; cannot calibrate")
        with torch.inference_mode():
            if forward == "packed":
                return self._packed(prompts)
            return [self._sequential(prepared) for prepared in prompts]

    def _packed(self, prompts: Sequence[PreparedPrompt]) -> list[dict[int, Any]]:
        import torch

        from .capture import StopForward, capture
        from .packed import PackedRequest, pack, packed_groups

        device = next(self.model.parameters()).device
        out: list[dict[int, Any]] = []
        for group in packed_groups(prompts, PACKED_TOKENS, self.calibrate):
            ids, positions, segments = pack(group, self.calibrate)
            request = PackedRequest(segments, self.heads_by_layer, self.stop_after, self.scoring.logit_scale)
            with capture(request):
                try:
                    self.decoder(
                        input_ids=torch.tensor([ids], device=device),
                        position_ids=torch.tensor([positions], device=device),
                        use_cache=False,
                    )
                except StopForward:
                    pass
            for rows, null_rows in zip(request.rows, request.null_rows):
                out.append({layer: rows[layer] - null_rows[layer] for layer in rows} if self.calibrate else rows)
        return out

    def _sequential(self, prepared: PreparedPrompt) -> dict[int, Any]:
        """The prefix pass, then the query and N/A suffixes on the prefix's KV cache."""
        import torch
        from transformers import DynamicCache

        prefix = prepared.prefix_length
        device = next(self.model.parameters()).device
        ids = torch.tensor([prepared.input_ids], device=device)
        cache = DynamicCache(config=self.model.config)
        self._run(ids[:, :prefix], cache, rows=None)
        query_rows = self._run(ids[:, prefix:], cache, rows=_shift(prepared.query_span, prefix))
        rows = {layer: values[:, :prefix] for layer, values in query_rows.items()}
        if not self.calibrate:
            return rows
        null_ids = torch.tensor([prepared.null_input_ids], device=device)
        try:  # rewind the cache to the shared prefix (a negative count removes tokens)
            cache.crop(prefix - cache.get_seq_length())
        except (RuntimeError, ValueError):  # e.g. a sliding-window cache past its window
            cache = DynamicCache(config=self.model.config)
            self._run(null_ids[:, :prefix], cache, rows=None)
        null_rows = self._run(null_ids[:, prefix:], cache, rows=_shift(prepared.null_query_span, prefix))
        return {layer: values - null_rows[layer][:, :prefix] for layer, values in rows.items()}

    def _run(self, ids, cache, rows):
        from .capture import CaptureRequest, StopForward, capture

        request = CaptureRequest(
            self.heads_by_layer,
            rows,
            self.stop_after,
            self.scoring.logit_scale,
            past_length=cache.get_seq_length(),
        )
        with capture(request):
            try:
                self.decoder(input_ids=ids, use_cache=True, **{self.cache_arg: cache})
            except StopForward:
                pass
        return request.results


def _shift(span: tuple[int, int], offset: int) -> tuple[int, int]:
    return span[0] - offset, span[1] - offset
