#!/usr/bin/env bash
# Create .venv with the CPU build of torch and auralens (editable) plus test/UI extras.
# Idempotent: a second run installs no dependency again (the editable auralens is rebuilt).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch first and pinned, so nothing can pull the multi-GB CUDA build. Where the configured
# indexes would bring CUDA packages along (plain PyPI on Linux), the CPU wheel comes from
# PyTorch's own index instead; a local CPU wheel (pip's find-links) is used as it is.
TORCH=(torch==2.13.0)
plan=$(.venv/bin/python -m pip install --disable-pip-version-check --dry-run -q --report - "${TORCH[@]}" 2>/dev/null || true)
if grep -q '"name": *"nvidia-' <<<"$plan"; then
  TORCH+=(--index-url https://download.pytorch.org/whl/cpu)
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "${TORCH[@]}"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[ui,dev]'
