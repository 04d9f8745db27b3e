#!/usr/bin/env bash
# Installs qtts's build dependencies (Debian 12 / Ubuntu 24.04 packages) when missing, then configures
# and builds into ./build (Release). CUDA is used when nvcc is found (PATH or /usr/local/cuda).
# Usage: scripts/setup.sh [extra cmake args...]   Env: BUILD_DIR (default build), JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libcli11-dev libfmt-dev libsndfile1-dev doctest-dev
          nlohmann-json3-dev libpcre2-dev libutf8proc-dev libsamplerate0-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

build_dir="${BUILD_DIR:-build}"
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j "${JOBS:-$(nproc)}"
echo "setup: built $build_dir/qtts" >&2
