#!/usr/bin/env bash
# Installs the comparison peer for `alpr-bench edge recognize`: fast-alpr 0.4 (Python)
# in a project-local virtualenv .runtime/peer-venv/ (gitignored). Idempotent.
# Prints the path of the venv's python; the bench finds it there by itself.
#
# usage: bash scripts/install-peer.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.runtime/peer-venv"
ort_version="${ORT_VERSION:-1.24.4}"

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import fast_alpr, onnxruntime, cv2' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
python="$(command -v python3 || command -v python)"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "fast-alpr==0.4.0" "onnxruntime==$ort_version" opencv-python-headless >&2
"$venv/bin/python" -c 'import fast_alpr, onnxruntime, cv2' >&2
echo "$venv/bin/python"
