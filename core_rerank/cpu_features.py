"""Does this CPU multiply bfloat16 matrices natively? (What ``dtype="auto"`` asks on a CPU.)

x86 CPUs with AVX512-BF16 (Intel Cooper Lake, Sapphire Rapids and later Xeons; AMD Zen 4 and
later) or AMX-BF16 (Intel Sapphire Rapids and later) run torch's bfloat16 matrix kernels
(oneDNN) in hardware; elsewhere bfloat16 is emulated (its speed was not measured here). The
check asks, in this order:

1. ``torch.cpu.get_capabilities()`` (public in recent torch; 2.13 here): the ``avx512_bf16`` and
   ``amx_bf16`` entries;
2. torch's older private probes ``torch.cpu._is_avx512_bf16_supported`` /
   ``_is_amx_tile_supported``, where they exist;
3. the ``flags`` line of ``/proc/cpuinfo`` (Linux).

If none answers, the answer is no (float32 stays). ARM CPUs with BF16 instructions are not
counted: their speed and rankings were not measured here.
"""

from __future__ import annotations

import functools
from pathlib import Path

BF16_FEATURES = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def _from_torch_capabilities() -> bool | None:
    import torch

    probe = getattr(getattr(torch, "cpu", None), "get_capabilities", None)
    if probe is None:
        return None
    try:
        capabilities = probe()
    except Exception:  # a torch build without cpuinfo support: ask the next source
        return None
    if not any(name in capabilities for name in BF16_FEATURES):
        return None
    return any(bool(capabilities.get(name)) for name in BF16_FEATURES)


def _from_torch_probes() -> bool | None:
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not any(probes):
        return None
    try:
        return any(bool(probe()) for probe in probes if probe is not None)
    except Exception:
        return None


def _from_cpuinfo(path: Path = CPUINFO) -> bool | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return any(name in value.split() for name in BF16_FEATURES)
    return None


@functools.cache
def has_native_bf16() -> bool:
    """True when this CPU has AVX512-BF16 or AMX-BF16 (cached; see the module docstring)."""
    for source in (_from_torch_capabilities, _from_torch_probes, _from_cpuinfo):
        answer = source()
        if answer is not None:
            return answer
    return False
