#!/usr/bin/env bash
# Run HERE (the dev machine; no GPU needed): builds bench_cuda_backend for sm_90 once per A/B variant into
# .ab/bin/NAME.xz, so that scripts/device_ab.sh on the GPU machine runs them without building (device time is the
# scarce resource; a build there costs ~75-100 s of it per call, here ~15-50 s per variant).
#   cur   this tree as it is
#   NAME  this tree after .ab/NAME.sh or bench/ab/NAME.sh (a patch script, run from the copy's root)
# Usage: bash scripts/prebuild_ab.sh cur NAME...; then carry [".debs", ".ab"] with the run tool and
#   TRACE=1 bash scripts/device_ab.sh 3 cur NAME... (the binaries link Debian 12's libraries from .debs; they run
#   on the device's Ubuntu 24.04, whose glibc and libstdc++ are newer).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${PREBUILD_DIR:-/tmp/qtts-prebuild}
mkdir -p .ab/bin
for v in "$@"; do
  d=$work/$v
  rm -rf "$d"; mkdir -p "$d"
  tar --exclude='./build*' --exclude='./.ab/bin' --exclude='./.debs' --exclude='./.oracle' -cf - . | tar -xf - -C "$d"
  patch=
  if [ "$v" != cur ]; then
    patch=$(for f in ".ab/$v.sh" "bench/ab/$v.sh"; do [ -f "$f" ] && { echo "$f"; break; }; done)
    [ -n "$patch" ] || { echo "prebuild_ab: no .ab/$v.sh or bench/ab/$v.sh" >&2; exit 2; }
    (cd "$d" && bash "$patch") || { echo "prebuild_ab: variant $v: patch failed" >&2; exit 2; }
  fi
  cmake -S "$d" -B "$d/b" -DCMAKE_BUILD_TYPE=Release -DQTTS_BUILD_TESTS=ON -DQTTS_CUDA_ARCHITECTURES=90 \
    -DQTTS_GIT_REVISION="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$d/configure.log" 2>&1 \
    || { tail -20 "$d/configure.log"; exit 1; }
  cmake --build "$d/b" -j "$(nproc)" --target bench_cuda_backend >"$d/build.log" 2>&1 \
    || { grep -E "error" "$d/build.log" | head -20; exit 1; }
  # Stripped and xz-compressed (~1.3 MB instead of 5.5): the run tool carries at most 64 MiB with the checkout.
  strip -o "$d/bench_cuda_backend" "$d/b/bench_cuda_backend"
  xz -9 -T0 -c "$d/bench_cuda_backend" > "$root/.ab/bin/$v.xz"
  # What it was built from, printed by device_ab.sh: a prebuilt binary outlives later edits of this tree.
  echo "built $(date -u +%FT%TZ) from $(git describe --always --dirty 2>/dev/null || echo unknown)${patch:+ + $patch}" \
    > "$root/.ab/bin/$v.src"
  echo "prebuild_ab: .ab/bin/$v.xz ($(du -h "$root/.ab/bin/$v.xz" | cut -f1); $(cat "$root/.ab/bin/$v.src"))"
done
