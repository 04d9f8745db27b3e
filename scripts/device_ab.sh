#!/usr/bin/env bash
# Run ON THE GPU MACHINE: an A/B of kernel variants in one session (one machine, alternating runs, so the
# comparison holds across machines of one kind). Each variant is built in its own copy of this tree:
#   cur   the tree as it is
#   base  the tree with .ab/base/ copied over it (e.g. `git show REV:cuda/x.cu > .ab/base/cuda/x.cu`; give it every
#         file that differs, headers included, or base fails to build:
#         `for f in $(git diff --name-only REV -- cuda); do git show REV:$f > .ab/base/$f; done`)
#   NAME  the tree after .ab/NAME.sh has run in the copy (a patch, e.g. a sed on a constant)
# then `bench_cuda_backend --no-variants --steps 30 --frames 30` runs ROUNDS times per variant, alternating, and
# prints each run's table rows and last codes (equal codes: the variants compute the same bits). .ab/NAME.args, if
# present, adds bench arguments for variant NAME (e.g. `--variant pace=10 --variant pace=12`: one build, several
# runtime settings); bench/ab/NAME.sh and .args are the staged variants, used where .ab/ has none; BENCH_ARGS adds
# arguments for every variant, and REUSE=1 runs the builds of a previous call.
# TRACE=1 ends with one traced run per variant (the phase-trace tables of both kernels), then the rounds again in
# one compact line each ([config] talker-ms predictor-ms), since the run tool returns only the output's end.
# .ab/ is ignored by git (.git/info/exclude); name it in the run tool's carry with .debs.
# Prebuilt variants: .ab/bin/NAME.xz (stripped and compressed: the run tool carries 64 MiB in all; made here by scripts/prebuild_ab.sh, sm_90) is run as it is, without a build on
# the device (saves ~75-100 s of device time per call; the .debs are still unpacked for the shared libraries).
# Usage: bash scripts/device_ab.sh ROUNDS variant...
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=$1; shift
# A variant's patch (NAME.sh) and bench arguments (NAME.args): .ab/ (local, ignored by git) first, then bench/ab/
# (staged in the repository; see bench/ab/README.md).
variant_file() {
  local f
  for f in ".ab/$1.$2" "bench/ab/$1.$2"; do [ -f "$f" ] && { echo "$f"; return 0; }; done
  return 1
}
. scripts/device_deps.sh  # the .debs unpacked (prebuilt variants need their shared libraries)
export LD_LIBRARY_PATH="$lib"
# The variants build in parallel (one build is mostly a few long nvcc jobs; they share the cores well).
for v in "$@"; do
  [ "${REUSE:-0}" = 1 ] && [ -x "/tmp/ab_$v/build-device/bench_cuda_backend" ] && continue
  if [ -f ".ab/bin/$v.xz" ]; then
    mkdir -p "/tmp/ab_$v/build-device"
    python3 -c 'import lzma, sys; open(sys.argv[2], "wb").write(lzma.open(sys.argv[1]).read())' \
      ".ab/bin/$v.xz" "/tmp/ab_$v/build-device/bench_cuda_backend" && chmod +x "/tmp/ab_$v/build-device/bench_cuda_backend"
    echo "$v: prebuilt (.ab/bin/$v.xz, $(cat ".ab/bin/$v.src" 2>/dev/null || echo 'source unknown'))"
    continue
  fi
  d=/tmp/ab_$v
  rm -rf "$d"; mkdir -p "$d"
  tar --exclude='./build*' -cf - . | tar -xf - -C "$d"
  case $v in
    cur) ;;
    base) cp -r .ab/base/. "$d/" ;;
    *) patch=$(variant_file "$v" sh) || { echo "no .ab/$v.sh or bench/ab/$v.sh" >&2; exit 2; }
       (cd "$d" && bash "$patch") || { echo "variant $v: patch failed" >&2; exit 2; } ;;
  esac
  (cd "$d" && OUT=/tmp/ab_out_$v TARGETS="bench_cuda_backend" SKIP_TESTS=1 SKIP_BENCH=1 \
    bash scripts/device_build_and_test.sh >/dev/null 2>&1; grep -E "built|FAILED" /tmp/ab_out_$v/summary.txt | sed "s/^/$v: /") &
done
wait
rounds_log=$(mktemp)
for r in $(seq "$rounds"); do
  for v in "$@"; do
    args=$(f=$(variant_file "$v" args) && cat "$f")
    # shellcheck disable=SC2086
    line=$(timeout 120 "/tmp/ab_$v/build-device/bench_cuda_backend" --no-variants --steps 30 --frames 30 ${BENCH_ARGS:-} $args 2>&1 |
      grep -E "^\| [^v-]|last codes|rror" | tr '\n' ' ')
    echo "round $r $v: $line" | tee -a "$rounds_log"
  done
done
if [ "${TRACE:-0}" = 1 ]; then
  for v in "$@"; do
    echo "== phase trace of $v"
    # shellcheck disable=SC2086
    timeout 120 "/tmp/ab_$v/build-device/bench_cuda_backend" --variant trace=1 --steps 30 --frames 30 ${BENCH_ARGS:-} 2>&1 |
      sed -n '/phase trace/,$p'
  done
  # The run tool returns only the end of the output: the rounds again, compactly, after the long trace tables.
  echo "== rounds (device ms: talker step, predictor frame; codes: the last frame's, equal = same bits)"
  sed -E 's/\[[^]]*\] logits finite: yes; //g; s/last codes:([ 0-9]*)/codes\1 /g; s/\| ([^|]*) \| [0-9.]+ \/ ([0-9.]+) \| [0-9]+% \| [0-9.]+ \/ ([0-9.]+) \|[^|]*\|[^|]*\|/[\1] \2 \3/g' "$rounds_log"
fi
rm -f "$rounds_log"
