"""Packaging: the core-rerank wheel ships every integration package (run: pytest -k wheel).

Builds a wheel from a copy of the source tree (offline, ``--no-build-isolation`` with the
current environment's setuptools), checks its file list, installs it with ``--no-deps`` into
an empty target folder and imports everything from there in a fresh interpreter, with this
environment's site-packages providing only the dependencies (``python -S``: no .pth files, so
the editable install cannot leak in).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

IMPORT_CHECK = r"""
import sys
target = sys.argv[1]
import core_rerank, core_rerank.head_config as hc
import llama_index.postprocessor.core_rerank as li
import langchain_core_rerank as lc
import haystack_integrations.components.rankers.core_rerank as hs
import pyterrier_core_rerank as ptr
import lancedb_core_rerank as ldb
from lancedb.rerankers import Reranker
import pyterrier as pt
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from langchain_core.documents import BaseDocumentCompressor
for module in (core_rerank, li, lc, hs, ptr, ldb):
    assert module.__file__.startswith(target), (module.__name__, module.__file__)
assert issubclass(li.CoReRerank, BaseNodePostprocessor)
assert issubclass(lc.CoReRerank, BaseDocumentCompressor)
assert hasattr(hs.CoReRanker, "__haystack_input__") or callable(hs.CoReRanker.run)
assert issubclass(ptr.CoReReRanker, pt.Transformer)
assert issubclass(ldb.CoReReranker, Reranker)
assert hc.preset_names(), "no head presets in the installed wheel"
print("imported from", target)
"""


def _pip(*args: str, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_wheel_ships_every_integration_and_imports(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("llama_index.core")
    pytest.importorskip("langchain_core")
    pytest.importorskip("haystack")
    pytest.importorskip("pyterrier")
    pytest.importorskip("lancedb")
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for name in ("core_rerank", "integrations"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)

    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src))
    (wheel,) = (tmp_path / "dist").glob("core_rerank-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "core_rerank/__init__.py",
        "llama_index/postprocessor/core_rerank/__init__.py",
        "llama_index/postprocessor/core_rerank/base.py",
        "langchain_core_rerank/__init__.py",
        "langchain_core_rerank/compressor.py",
        "haystack_integrations/components/rankers/core_rerank/__init__.py",
        "haystack_integrations/components/rankers/core_rerank/ranker.py",
        "haystack_integrations/components/rankers/core_rerank/py.typed",
        "pyterrier_core_rerank/__init__.py",
        "pyterrier_core_rerank/reranker.py",
        "pyterrier_core_rerank/py.typed",
        "lancedb_core_rerank/__init__.py",
        "lancedb_core_rerank/reranker.py",
        "lancedb_core_rerank/py.typed",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    presets = {p.name for p in (ROOT / "core_rerank" / "heads").glob("*.json")}
    assert presets and presets <= {Path(n).name for n in names if n.startswith("core_rerank/heads/")}
    # Implicit namespace packages, like every LlamaHub integration: no __init__ above the leaf.
    assert "llama_index/__init__.py" not in names
    assert "llama_index/postprocessor/__init__.py" not in names
    # Haystack's integration namespace, as every *-haystack package leaves it (py.typed sits in our
    # leaf package, so no file is shared with another integration's wheel).
    for level in (
        "haystack_integrations",
        "haystack_integrations/components",
        "haystack_integrations/components/rankers",
    ):
        assert f"{level}/__init__.py" not in names and f"{level}/py.typed" not in names
    assert not any(n.startswith(("integrations/", "tests/", "examples/")) for n in names)

    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel))
    site_packages = sysconfig.get_paths()["purelib"]
    platlib = sysconfig.get_paths()["platlib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), site_packages, platlib])}
    result = subprocess.run(
        [sys.executable, "-S", "-c", IMPORT_CHECK, str(target)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported from" in result.stdout
