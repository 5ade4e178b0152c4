#!/usr/bin/env bash
# Idempotent setup: system packages, a virtual environment in .venv, the project in it.
#   scripts/setup.sh          what `doit build` needs (clang for tinygrad's CPU device and, with lld's
#                             wasm-ld, for each model's WebAssembly CPU fallback)
#   scripts/setup.sh --test   plus what the test suite needs (Chromium, Firefox ESR, test extras)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(clang lld)
extras=""
if [[ "${1:-}" == "--test" ]]; then
  # postgresql: the sweep tests start a throwaway server to share an Optuna study through
  packages+=(chromium firefox-esr git postgresql)
  # node runs the JS unit tests and installs onnxruntime-web for the bench; keep a newer one if present
  command -v npm >/dev/null || packages+=(nodejs npm)
  extras="[test,bench]"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo -n true 2>/dev/null && sudo="sudo -n"
  if [[ $(id -u) -eq 0 || -n "$sudo" ]]; then
    echo "setup: installing system packages: ${missing[*]}"
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${missing[*]}" >&2
    echo "setup: run  sudo apt-get install ${missing[*]}  (or run this script as root), then again" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
if [[ "${1:-}" == "--test" ]]; then
  # axe-core for tests/browser/test_app_axe.py, from npm into a cache folder (the site never loads it)
  npm install --prefix "${XDG_CACHE_HOME:-$HOME/.cache}/mnist-webgpu-node" --no-audit --no-fund --silent axe-core@4
fi
echo "setup: ready (.venv)"
