#!/usr/bin/env bash
# Create (or update) .venv-ref at the repository root with the reference implementation (PyTorch CPU +
# transformers) used to regenerate the fixtures (models/generate_fixtures.py) and to run
# models/bench_reference.py. Needs PyPI. Idempotent: re-running only installs what is missing.
# CI does not run this: the fixtures are committed.
#
# torch from PyPI is the CUDA build on Linux (it runs fine on CPU). For the smaller CPU-only wheel:
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu models/setup-reference.sh
# torchvision is deliberately absent: with it, CLIPImageProcessor switches to a different backend.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv-ref/bin/python ]; then
  "$PYTHON" -m venv .venv-ref
fi
.venv-ref/bin/python -m pip install -q --disable-pip-version-check -r models/requirements-reference.txt
if .venv-ref/bin/python -c "import torchvision" 2>/dev/null; then
  echo "error: torchvision is installed in .venv-ref; remove it (pip uninstall torchvision) or the fixtures change" >&2
  exit 1
fi
.venv-ref/bin/python -c "import torch, transformers; print('reference ready: torch', torch.__version__, 'transformers', transformers.__version__)"
echo "regenerate fixtures: HF_HUB_OFFLINE=1 .venv-ref/bin/python models/generate_fixtures.py"
