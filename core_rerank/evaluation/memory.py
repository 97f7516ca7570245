"""Peak memory of one evaluation entry: the CUDA allocator's peak, or the process's peak RSS on CPU.

On CPU the peak resident set (``VmHWM`` in ``/proc/self/status``) is reset before each entry
by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0). It includes the process's
baseline (Python, torch, the loaded data), reported as ``baseline_mb``; where the reset is not
possible the peak is a running maximum and :attr:`MemoryMeter.kind` says so.
"""

from __future__ import annotations

import gc
from typing import Any

from ..utils import proc_status_mb


class MemoryMeter:
    """Peak memory of one method: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: Any = None):
        self.cuda = str(device or "").startswith("cuda")
        self.resettable = False
        self.baseline_mb: float | None = None

    def start(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.baseline_mb = torch.cuda.memory_allocated() / 2**20
            return
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        self.baseline_mb = proc_status_mb("VmRSS")

    def peak_mb(self) -> float | None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated()) / 2**20
        return proc_status_mb("VmHWM")

    @property
    def kind(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated (reset per method)"
        if self.resettable:
            return "peak RSS, /proc/self/status VmHWM (reset per method via /proc/self/clear_refs)"
        return "peak RSS, /proc/self/status VmHWM (not resettable here: running maximum)"
