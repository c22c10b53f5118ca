#!/usr/bin/env bash
# One call on a GPU machine: CPU/CUDA agreement, then MovieLens-20M-scale simulation and training timings.
#   bash benchmarks/gpu_check.sh [--quick] [--budget-s 280] [--json results.json]
# Uses the repo's code from this checkout and installs nothing. Python: $PYTHON, else .venv/bin/python,
# else python3. Without CUDA (or without torch) it says why and exits 0. See benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "gpu_check: SKIP: $PY cannot import torch (set PYTHON=... or run make setup)"
  exit 0
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
