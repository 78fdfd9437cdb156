#!/usr/bin/env bash
# Installs the PP-OCRv4 text detection and recognition models the edge's
# state reader uses into the project-local folder .runtime/ppocr/
# (gitignored), taken from the `rapidocr-onnxruntime` wheel on PyPI
# (Apache-2.0), whose SHA-256 is checked before anything is extracted.
# Idempotent: a second run does nothing. The recognition model carries its
# character list in its ONNX metadata, so the two .onnx files are all.
# Prints the folder on stdout; point ALPR_PPOCR at it (the edge also finds it
# there by itself). The edge checks each model's own SHA-256 when it loads.
#
# usage: bash scripts/install-ppocr.sh
#   PPOCR_WHEEL=path/to/rapidocr_onnxruntime-1.4.4-py3-none-any.whl uses a
#   wheel already on disk instead of downloading it (its hash is checked all
#   the same).
set -euo pipefail

version="1.4.4"
wheel_sha256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
models=(ch_PP-OCRv4_det_infer.onnx ch_PP-OCRv4_rec_infer.onnx)
# The same hashes are pinned in edge/src/recognise/state/models.rs.
model_sha256=(d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9
              48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.runtime/ppocr"

# True when every model is in place with its pinned hash.
installed() {
    local i
    for i in "${!models[@]}"; do
        [[ -f "$dest/${models[$i]}" ]] || return 1
        [[ "$(sha256sum "$dest/${models[$i]}" | cut -d' ' -f1)" == "${model_sha256[$i]}" ]] || return 1
    done
}
have_all=0
installed && have_all=1
if [[ $have_all -eq 1 ]]; then
    echo "$dest"
    exit 0
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
    echo "install-ppocr: python3 with pip is needed to fetch the rapidocr-onnxruntime wheel" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
if [[ -n "${PPOCR_WHEEL:-}" ]]; then
    wheel="$PPOCR_WHEEL"
else
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$tmp" "rapidocr-onnxruntime==$version" >&2
    wheel="$(ls "$tmp"/rapidocr_onnxruntime-*.whl 2>/dev/null | head -n1 || true)"
fi
if [[ -z "$wheel" || ! -f "$wheel" ]]; then
    echo "install-ppocr: no rapidocr-onnxruntime $version wheel was found" >&2
    exit 1
fi
actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
if [[ "$actual" != "$wheel_sha256" ]]; then
    echo "install-ppocr: $wheel has SHA-256 $actual, expected $wheel_sha256" >&2
    exit 1
fi
mkdir -p "$tmp/x"
"$python" - "$wheel" "$tmp/x" "${models[@]}" <<'PY'
import sys, zipfile
wanted = {"rapidocr_onnxruntime/models/" + m for m in sys.argv[3:]}
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n in wanted:
            z.extract(n, sys.argv[2])
PY
mkdir -p "$dest"
for m in "${models[@]}"; do
    src="$tmp/x/rapidocr_onnxruntime/models/$m"
    if [[ ! -f "$src" ]]; then
        echo "install-ppocr: the wheel holds no rapidocr_onnxruntime/models/$m" >&2
        exit 1
    fi
    cp "$src" "$dest/$m.tmp"
    mv "$dest/$m.tmp" "$dest/$m"
done
if ! installed; then
    echo "install-ppocr: the models in $dest do not have their pinned SHA-256" >&2
    exit 1
fi
echo "$dest"
