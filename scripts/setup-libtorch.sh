#!/usr/bin/env bash
# Installs libtorch 2.11.0 for the trainer (cargo feature `train`, tch 0.24.0): the PyPI torch
# wheel (its torch/lib holds libtorch, CPU and CUDA), with torchvision 0.26.0 and safetensors
# (the tests' reference DenseNet-121), into .venv-torch (override: COVIDX_TORCH_VENV). About 4.7 GB; libtorch's own
# download host is unreachable here, PyPI works. Prints the LIBTORCH directory on stdout.
#   export LIBTORCH=$(bash scripts/setup-libtorch.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${COVIDX_TORCH_VENV:-.venv-torch}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import torch, torchvision, safetensors; assert torch.__version__.startswith('2.11.0')" >/dev/null 2>&1; then
  echo "installing torch 2.11.0, torchvision 0.26.0 and safetensors into $venv (PyPI, ~4.7 GB)" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check torch==2.11.0 torchvision==0.26.0 safetensors >&2
fi
"$venv/bin/python" -c "import os, torch; print(os.path.dirname(torch.__file__))"
