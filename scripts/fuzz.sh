#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ with clang (ASan + UBSan, build-fuzz/) and runs each for a fixed time
# on a working copy of its seed corpus (build-fuzz/corpus/<target>, grown across runs; seeds from
# fuzz/corpus/<target>). Fails when any target finds a crash, leak, timeout or out-of-memory; the input
# is kept in build-fuzz/artifacts/<target>/. Needs the packages of scripts/setup.sh; installs clang,
# libFuzzer's runtime and clang's OpenMP when missing.
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 60)
# Env:   FUZZ_TARGETS="safetensors config tokenizer wav parity" (subset), JOBS, FUZZ_NICE (default 19),
#        FUZZ_SEED (default 1: the same mutation sequence in every CI run, so a result reproduces; 0 = random).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets=(${FUZZ_TARGETS:-safetensors config tokenizer wav parity})

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_install() {
  echo "fuzz: installing $*" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
command -v clang++ >/dev/null 2>&1 || apt_install clang
# libFuzzer's runtime and clang's OpenMP are separate packages (only recommended by clang).
clang_major="$(clang++ -dumpversion | cut -d. -f1)"
runtime_dir="$(clang++ -print-runtime-dir 2>/dev/null || true)"
missing=()
[ -f "$runtime_dir/libclang_rt.fuzzer-x86_64.a" ] || [ -f "$runtime_dir/libclang_rt.fuzzer.a" ] ||
  missing+=("libclang-rt-${clang_major}-dev")
dpkg-query -W -f='${Status}' "libomp-${clang_major}-dev" 2>/dev/null | grep -q "install ok installed" ||
  missing+=("libomp-${clang_major}-dev")
if ((${#missing[@]})); then apt_install "${missing[@]}"; fi

build=build-fuzz
cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQTTS_CUDA=OFF \
  -DQTTS_BUILD_TESTS=OFF -DQTTS_FUZZ=ON -DQTTS_SANITIZE=address,undefined >/dev/null
cmake --build "$build" --target qtts_fuzzers -j "${JOBS:-$(nproc)}"

declare -A max_len=([safetensors]=8192 [config]=16384 [tokenizer]=65536 [wav]=65536 [parity]=16384)
export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:abort_on_error=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
failed=()
summary=()
for t in "${targets[@]}"; do
  [ -d "fuzz/corpus/$t" ] || { echo "fuzz: unknown target '$t'" >&2; exit 2; }
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  cp -n fuzz/corpus/"$t"/* "$work"/
  dict=()
  case "$t" in safetensors|config|parity) dict=(-dict=fuzz/json.dict) ;; esac
  log="$build/fuzz-$t.log"
  echo "fuzz: $t for $seconds s (log $log)" >&2
  start=$(date +%s)
  rc=0
  nice -n "${FUZZ_NICE:-19}" "$build/fuzz/fuzz_$t" "$work" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
    -seed="${FUZZ_SEED:-1}" \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len="${max_len[$t]}" -print_final_stats=1 \
    -artifact_prefix="$artifacts" >"$log" 2>&1 || rc=$?
  elapsed=$(( $(date +%s) - start ))
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  line="$(printf '%-12s %10s executions in %4d s, corpus %d files' "$t" "${execs:-?}" "$elapsed" \
    "$(ls "$work" | wc -l)")"
  summary+=("$line")
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $t FAILED (exit $rc); log $log, input in $artifacts:" >&2
    grep -E "ERROR|SUMMARY|runtime error|Test unit written|deadly|multi-line" "$log" | head -20 >&2 || tail -30 "$log" >&2
    failed+=("$t")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} targets clean (${seconds} s each)"
