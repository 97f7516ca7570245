"""An independent, deliberately naive recomputation of method.md section 1.

Eager attention with ``output_attentions=True`` over the full prompt, once with the query and
once with "N/A" (no cache reuse, no pruning), then the formula in plain Python.
"""

from __future__ import annotations

import statistics

import torch


def head_token_scores(eager_model, input_ids, query_span, heads):
    """sum over heads of mean over query rows of a^{l,h}_{t->j}, for every token j."""
    with torch.no_grad():
        out = eager_model(torch.tensor([input_ids]), output_attentions=True)
    total = [0.0] * len(input_ids)
    start, end = query_span
    for layer, head in heads:
        rows = out.attentions[layer][0, head, start:end].double()
        mean = rows.mean(dim=0).tolist()
        total = [a + b for a, b in zip(total, mean)]
    return total


def document_scores(eager_model, prepared, heads, calibrate=True, outlier_std=2.0):
    scores_q = head_token_scores(eager_model, prepared.input_ids, prepared.query_span, heads)
    if calibrate:
        scores_n = head_token_scores(eager_model, prepared.null_input_ids, prepared.null_query_span, heads)
        calibrated = [q - n for q, n in zip(scores_q, scores_n)]
    else:
        calibrated = scores_q
    result = []
    for start, end in prepared.document_spans:
        values = calibrated[start:end]
        if outlier_std is not None and len(values) > 1:
            threshold = statistics.mean(values) - outlier_std * statistics.stdev(values)
            values = [v for v in values if v > threshold]
        result.append(sum(values))
    return result


def all_heads(config):
    return [(l, h) for l in range(config.num_hidden_layers) for h in range(config.num_attention_heads)]


def span_masses(per_head_scores, spans):
    """Attention mass of each head on each document: ``[heads, tokens] -> [heads, documents]``."""
    import numpy as np

    return np.stack([per_head_scores[:, start:end].sum(axis=1) for start, end in spans], axis=1)


def position_calibrated_scores(eager_model, prepared, heads, weight, filler_id, outlier_std=2.0):
    """``s - weight * b``: ``b`` the same naive scores of the prompt with every document token
    (in the query and the N/A prompt) replaced by ``filler_id`` (core_rerank.position)."""
    twin_ids, twin_null = list(prepared.input_ids), list(prepared.null_input_ids)
    for start, end in prepared.document_spans:
        for j in range(start, end):
            twin_ids[j] = twin_null[j] = filler_id
    twin = type(prepared)(**{**vars(prepared), "input_ids": twin_ids, "null_input_ids": twin_null})
    real = document_scores(eager_model, prepared, heads, outlier_std=outlier_std)
    prior = document_scores(eager_model, twin, heads, outlier_std=outlier_std)
    return [s - weight * b for s, b in zip(real, prior)]
