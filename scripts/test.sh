#!/usr/bin/env bash
# The full CPU test run (README "Set up and run the tests"; CI's .ci/run calls exactly this):
#   1. scripts/setup.sh: packages + the Release build in build/, then `ctest -L cpu` on it;
#   2. scripts/sanitize.sh: the same suite under ASan + UBSan (build-asan/);
#   3. scripts/fuzz.sh: every libFuzzer target for FUZZ_SECONDS (default 60) seconds (build-fuzz/).
# Stops at the first failing stage. Prints each stage's wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
stage() {
  local name="$1" s
  shift
  s=$(date +%s)
  echo "test: == $name ==" >&2
  "$@"
  echo "test: $name passed in $(( $(date +%s) - s )) s" >&2
}
stage "build" bash scripts/setup.sh
stage "ctest -L cpu" ctest --test-dir build -L cpu --output-on-failure
stage "sanitizers" bash scripts/sanitize.sh
stage "fuzzing" bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
echo "test: all stages passed in $(( $(date +%s) - t0 )) s" >&2
