#!/usr/bin/env bash
# Create .venv-ref with the reference implementation (PyTorch CPU + transformers) used to generate
# fixtures and to run models/bench_reference.py. Needs PyPI; CI does not run this (fixtures are committed).
# torchvision is deliberately absent: with it, CLIPImageProcessor switches to a different backend.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-ref/bin/python ]; then
  python3 -m venv .venv-ref
fi
.venv-ref/bin/pip install -q -r models/requirements-reference.txt
.venv-ref/bin/python -c "import torch, transformers; print('reference ready: torch', torch.__version__, 'transformers', transformers.__version__)"
