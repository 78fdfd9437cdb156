#!/usr/bin/env bash
# One-time set-up of a fresh Debian machine that has Rust: system packages,
# `just`, cargo-nextest, Python `cryptography`, the ONNX Runtime library and
# the PP-OCR text models of the state reader:
# everything `just test`, `just check` and `just demo` need. Idempotent and
# quiet when all is there. Called by the README's two commands and by CI
# (.ci/run).
#
# usage: scripts/setup.sh [--dry-run]
#   --dry-run   print what would be installed, install nothing.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

dry_run=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

# Run a command, or only say it under --dry-run (on stderr, which no
# caller silences).
act() {
    if [[ $dry_run -eq 1 ]]; then
        echo "setup: would run: $*" >&2
    else
        "$@"
    fi
}

sudo=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo"

# pip install that also works where the distribution marks its Python as
# externally managed (PEP 668).
pip_install() {
    act python3 -m pip install --quiet --disable-pip-version-check "$@" >&2 \
        || act python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@" >&2
}

# System packages: libclang for nokhwa's bindgen (camera feature, built by
# `just check`), openssl's command line and Python `cryptography` for the
# tests that check our key files with other people's tools, pkg-config for
# -sys crates, gpsd and gpsfake (in gpsd-clients) for the vehicle GPS test,
# chromium and chromium-driver (chromedriver) for the web console's browser
# tests (tests/tests/console_browser.rs).
# ffmpeg makes the live-camera tests' video and probes streams; the RTSP
# camera is GStreamer's RTSP server driven from Debian's own Python
# (/usr/bin/python3 with python3-gi): its typelib, and the plugins for
# qtdemux and matroskademux (good), h264parse and h265parse (bad),
# rtph264pay, rtph265pay, rtpbin and multifilesrc (good)
# (tests/support/rtsp-server.py, tests/support/README.md).
# nasm lets openh264 build its SIMD decoder (without it the crate quietly
# falls back to plain C, about twice the CPU per camera); it must be here
# before the first `cargo build`.
# python3-pip only where the machine has no pip of its own.
pkgs=(nasm libclang-dev pkg-config openssl gpsd gpsd-clients chromium chromium-driver postgresql postgresql-contrib)
pkgs+=(ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad)
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
py_crypto=0
python3 -c 'import cryptography.hazmat.primitives.serialization' >/dev/null 2>&1 || py_crypto=1
if [[ $py_crypto -eq 1 && "$(command -v python3)" == /usr/bin/python3 ]]; then
    # Debian's own Python: its package is the clean way.
    pkgs+=(python3-cryptography)
    py_crypto=0
fi
need=()
for pkg in "${pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
    echo "setup: installing ${need[*]}" >&2
    act $sudo apt-get update -qq >&2
    act $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Python `cryptography` for another Python (pyenv, a venv): from PyPI.
if [[ $py_crypto -eq 1 ]]; then
    echo "setup: installing Python cryptography" >&2
    pip_install cryptography
fi

# just, from its PyPI wheel (Debian 12 has no package for it).
if ! command -v just >/dev/null 2>&1; then
    echo "setup: installing just" >&2
    pip_install rust-just
    hash -r
    if [[ $dry_run -eq 0 ]]; then
        command -v just >/dev/null || { echo "setup: just was installed but is not on PATH (add ~/.local/bin)" >&2; exit 1; }
    fi
fi

# cargo-nextest runs the tests (`just test`), from crates.io (its release
# binaries live on GitHub, which some networks do not reach). Several
# minutes of compiling, once.
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "setup: installing cargo-nextest from crates.io (compiles for a few minutes)" >&2
    act cargo install --locked --quiet cargo-nextest
    if [[ $dry_run -eq 0 ]]; then
        cargo nextest --version >/dev/null 2>&1 \
            || { echo "setup: cargo-nextest was installed but cargo does not find it (add ~/.cargo/bin to PATH)" >&2; exit 1; }
    fi
fi

# ONNX Runtime shared library, into .runtime/ (found there by the edge).
if [[ $dry_run -eq 1 ]]; then
    [[ -n "$(ls "$root"/.runtime/onnxruntime/libonnxruntime.so.* 2>/dev/null)" ]] \
        || echo "setup: would run: bash $root/scripts/install-ort.sh"
else
    bash "$root/scripts/install-ort.sh" >/dev/null
fi

# PP-OCRv4 text models for the state reader, into .runtime/ppocr/ (found
# there by the edge).
if [[ $dry_run -eq 1 ]]; then
    [[ -f "$root/.runtime/ppocr/ch_PP-OCRv4_rec_infer.onnx" ]] \
        || echo "setup: would run: bash $root/scripts/install-ppocr.sh"
else
    bash "$root/scripts/install-ppocr.sh" >/dev/null
fi
