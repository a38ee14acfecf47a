#!/usr/bin/env bash
# Python packages the test suite uses as reference implementations and readers:
# numpy + safetensors (shards load in Python), pydicom + pillow (DICOM pixels vs pydicom),
# pandas (metadata benchmark peer), pyyaml (the Kubernetes manifests), webdataset and
# datasets (the exports' readers). Creates .venv-test; prints the interpreter path.
# Then: COVIDX_PYTHON=.venv-test/bin/python cargo test
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${COVIDX_VENV:-.venv-test}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check numpy safetensors pydicom pillow pyyaml \
  webdataset datasets >&2
echo "$venv/bin/python"
