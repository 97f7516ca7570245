"""Small helpers that several wings share (reading files, hashing, progress, memory, versions).

Nothing here imports torch or transformers at module level, so every wing can use it cheaply.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import platform
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

DEFAULT_MODEL = "smollm2-135m-instruct"
"""The registered offline model every command and adapter uses unless told otherwise."""

DEFAULT_MAX_DOC_WORDS = 300
"""Each document is cut to its first 300 words, as in the CoRe paper."""

T = TypeVar("T")


def open_text(path: "str | Path") -> IO[str]:
    """Open a UTF-8 text file for reading, gzip-compressed or not (told by its magic bytes)."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def file_sha256(*paths: "str | Path") -> str:
    """SHA-256 of the files' bytes, read in order as one stream."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def join_title(title: Any, text: str) -> str:
    """``title + " " + text`` as BEIR builds a passage; a missing or non-string title is left out."""
    if isinstance(title, str) and title.strip():
        return f"{title} {text}".strip()
    return text.strip()


def atomic_write(path: str | Path, lines: Iterable[str]) -> None:
    """Write ``lines`` to ``path`` through a temporary file in the same folder, flushed to disk
    (fsync), then ``os.replace``: a reader never sees half a file, a crash never leaves one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def json_float(value: float | None) -> float | None:
    """A score JSON can carry, at full precision (rounding could create ties); -inf and NaN
    (empty documents) as null."""
    return None if value is None or math.isinf(value) or math.isnan(value) else float(value)


def text_config(config: Any) -> Any:
    """The decoder's own config: ``config.text_config`` for multimodal wrappers, else ``config``."""
    return getattr(config, "text_config", None) or config


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int | None, desc: str, unit: str = "it", enabled: bool = True) -> Any:
    """A tqdm bar on stderr (``update``/``close``), or a silent stand-in when disabled or tqdm is missing."""
    if enabled:
        try:
            from tqdm.auto import tqdm

            return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True)
        except ImportError:
            pass
    return _NoProgress()


def progress_iter(items: Iterable[T], desc: str, unit: str = "it", enabled: bool = True) -> Iterator[T]:
    """``items`` with a progress bar on stderr when enabled (and tqdm is installed)."""
    items = list(items)
    bar = progress_bar(len(items), desc, unit, enabled)
    try:
        for item in items:
            yield item
            bar.update(1)
    finally:
        bar.close()


def proc_status_mb(key: str) -> float | None:
    """A ``/proc/self/status`` figure in MiB (``VmRSS``, ``VmHWM``); ``VmHWM`` falls back to
    ``getrusage`` where there is no procfs. ``None`` when neither is available."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if key == "VmHWM":
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except (ImportError, OSError):
            return None
    return None


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory in bytes (``None`` where the OS does not say)."""
    peak = proc_status_mb("VmHWM")
    return int(peak * 1024 * 1024) if peak is not None else None


def versions() -> dict[str, Any]:
    """Versions of core-rerank, Python, the platform and the numeric stack, for provenance."""
    from . import __version__

    found: dict[str, Any] = {
        "core_rerank": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or None,
    }
    for name in ("torch", "transformers", "numpy"):
        try:
            found[name] = __import__(name).__version__
        except Exception:
            found[name] = None
    try:
        import torch

        found["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            found["cuda_device"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    return found
