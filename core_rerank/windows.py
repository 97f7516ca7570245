"""Splitting a candidate list that does not fit one prompt into balanced windows.

Attention scores are listwise: a document's calibrated mass depends on what else shares its
prompt. To keep scores comparable across windows, the windows are made alike: about the same
number of document tokens each (so attention is spread over the same amount of text), and
filled by dealing documents in first-stage order to the emptiest window (so every window gets
a similar mix of strong and weak candidates, not rank 1-20 in one and 81-100 in another).
Inside a window, documents keep their first-stage order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Tokens a document costs beyond its own text: "[document 123] " and the blank line after it.
MARKER_TOKENS = 8


def plan_windows(doc_tokens: Sequence[int], capacity: int) -> list[list[int]]:
    """Group document indices into windows whose token cost stays within ``capacity``.

    ``capacity`` is the prompt budget minus the tokens the template, instruction and query
    take. Every document must fit on its own (the caller truncates longer ones).
    """
    costs = [count + MARKER_TOKENS for count in doc_tokens]
    if not costs:
        return []
    too_long = [i for i, cost in enumerate(costs) if cost > capacity]
    if too_long:
        raise ValueError(f"documents {too_long} do not fit the token budget on their own")
    groups: list[list[int]] = [[] for _ in range(max(1, math.ceil(sum(costs) / capacity)))]
    loads = [0] * len(groups)
    for index, cost in enumerate(costs):
        fitting = [w for w in range(len(groups)) if loads[w] + cost <= capacity]
        if not fitting:  # a long document late in the list: give it a window of its own
            groups.append([])
            loads.append(0)
            fitting = [len(groups) - 1]
        target = min(fitting, key=lambda w: (loads[w], w))
        groups[target].append(index)
        loads[target] += cost
    return [group for group in groups if group]
