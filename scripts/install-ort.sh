#!/usr/bin/env bash
# Installs the ONNX Runtime shared library for the edge's recogniser into the
# project-local folder .runtime/onnxruntime/ (gitignored), taken from the
# `onnxruntime` wheel on PyPI. Idempotent: a second run does nothing.
# Prints the path of libonnxruntime.so.* on stdout; point ORT_DYLIB_PATH at it
# (the edge also finds it there by itself).
#
# usage: bash scripts/install-ort.sh [VERSION]
set -euo pipefail

version="${1:-${ORT_VERSION:-1.24.4}}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.runtime/onnxruntime"
lib="$dest/libonnxruntime.so.$version"

if [[ -f "$lib" ]]; then
    echo "$lib"
    exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
    echo "install-ort: python3 with pip is needed to fetch the onnxruntime wheel" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
    --dest "$tmp" "onnxruntime==$version" >&2
wheel="$(ls "$tmp"/onnxruntime-*.whl | head -n1)"
if [[ -z "$wheel" ]]; then
    echo "install-ort: no onnxruntime $version wheel was downloaded" >&2
    exit 1
fi
mkdir -p "$tmp/x"
"$python" - "$wheel" "$tmp/x" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.startswith("onnxruntime/capi/libonnxruntime.so"):
            z.extract(n, sys.argv[2])
PY
found="$(ls "$tmp"/x/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -n1 || true)"
if [[ -z "$found" ]]; then
    echo "install-ort: the wheel holds no onnxruntime/capi/libonnxruntime.so.*" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$found" "$lib.tmp"
mv "$lib.tmp" "$lib"
ln -sf "$(basename "$lib")" "$dest/libonnxruntime.so"
echo "$lib"
