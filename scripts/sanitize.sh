#!/usr/bin/env bash
# Builds the CPU test suite with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan, RelWithDebInfo,
# no CUDA; the tests run the sanitized qtts binary too) and runs `ctest -L cpu`. Every report is fatal:
# the build uses -fno-sanitize-recover=all and the runtime options below halt on the first error, with
# leak checking on. Needs the packages of scripts/setup.sh.
# Usage: scripts/sanitize.sh [extra ctest args...]   Env: JOBS.
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-asan
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQTTS_CUDA=OFF -DQTTS_SANITIZE=address,undefined >/dev/null
cmake --build "$build" --target qtts_tests -j "${JOBS:-$(nproc)}"  # the tests build qtts too
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
# Only third-party leaks with a stated reason (tests/fuzz_regression_test.cpp opens a corrupt Ogg file).
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
ctest --test-dir "$build" -L cpu --output-on-failure "$@"
echo "sanitize: ctest -L cpu clean under ASan + UBSan" >&2
