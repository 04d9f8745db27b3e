#!/usr/bin/env bash
# Run ON THE GPU MACHINE (nvcc 13, CMake 4, g++ 13, no Debian -dev packages): unpacks .debs/ (made by
# scripts/device_fetch_debs.sh, carried with the run tool) into a private prefix, configures a CUDA build
# with tests, builds, runs `ctest -L gpu` and the benchmark. Logs go to $OUT (default /tmp/qtts-out).
# Usage: bash scripts/device_build_and_test.sh [bench args...]
#   Env: OUT, BUILD_DIR (build-device), JOBS (nproc), ARCHS (90), SKIP_TESTS=1, SKIP_BENCH=1, NCU=1 (profile),
#        QTTS_REV (the commit measured, printed by `qtts bench`; write the hash into the run command, e.g.
#        QTTS_REV=68918f7 bash scripts/...: the copy here has no usable git history, so it is "unknown" otherwise),
#        TARGETS (default: qtts_cuda_tests bench_cuda_backend; add qtts for the CLI),
#        SOAK=N (also build qtts_soak and synthesize N utterances on random 0.6B weights),
#        SANITIZE=1 (compute-sanitizer memcheck, racecheck and synccheck on qtts_cuda_tests, watchdog 600 s; SANITIZE_TOOLS to pick; SANITIZE_ARGS:
#        doctest filters, e.g. -tce='*full-size*'; SANITIZE_TIMEOUT_S: each tool's limit, default 300), E2E=1 (qtts bench, random 0.6B, vocoder chunks 1, 4 and the 1-32 ramp;
#        E2E_CHUNKS to pick, e.g. "ramp16 ramp16host": a "host" suffix runs the host frame loop),
#        NCU_PREFILL=1 (GPU time per kernel kind of one talker prefill of NCU_PREFILL_N=20 positions),
#        NCU_SOURCE=1 (warp-stall samples of one talker step and one predictor frame per SASS instruction, joined
#        with the source lines: $OUT/hotspots_{talker,predictor}.txt, $OUT/ncu_sass_*.csv.gz, by scripts/ncu_hotspots.py;
#        NCU_SOURCE_KERNELS picks the kernels, e.g. gemm_bf16 for the prefill GEMM),
#        CMAKE_EXTRA (more configure arguments, e.g. -DQTTS_FINE_TRACE=ON for the per-segment phase trace)
# From the dev machine: run(command="bash scripts/device_build_and_test.sh", carry=[".debs"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/qtts-out}"
mkdir -p "$out"
build="${BUILD_DIR:-build-device}"
log() { echo "== $*" | tee -a "$out/summary.txt"; }

. scripts/device_deps.sh  # $deps, $lib: the .debs unpacked
export PATH="/usr/local/cuda/bin:$PATH"
command -v pkg-config >/dev/null || export PATH="$PATH:$deps/usr/bin"
export PKG_CONFIG_PATH="$lib/pkgconfig:$deps/usr/share/pkgconfig"
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)

log "device: $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader 2>/dev/null)"
log "tools: $(nvcc --version | tail -1); $(cmake --version | head -1); $(g++ --version | head -1)"
t0=$(date +%s)
configure_build() {  # $1: build dir
  cmake -S . -B "$1" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DQTTS_BUILD_TESTS=ON \
    -DQTTS_CUDA_ARCHITECTURES="${ARCHS:-90}" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DQTTS_GIT_REVISION="${QTTS_REV:-unknown}" \
    -DCMAKE_PREFIX_PATH="$deps/usr" -Dfmt_DIR="$lib/cmake/fmt" \
    -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json" -DCLI11_DIR="$deps/usr/share/cmake/CLI11" \
    -DCMAKE_CXX_FLAGS="-isystem $deps/usr/include" ${CMAKE_EXTRA:-} >"$out/configure.log" 2>&1 \
    || { tail -40 "$out/configure.log"; log "configure FAILED"; exit 1; }
  # shellcheck disable=SC2086  # TARGETS is a list
  cmake --build "$1" -j "${JOBS:-$(nproc)}" --target ${TARGETS:-qtts_cuda_tests bench_cuda_backend} >"$out/build.log" 2>&1 \
    || { grep -E "error|Error" "$out/build.log" | head -40; log "build FAILED"; exit 1; }
}
configure_build "$build"
log "configured and built in $(( $(date +%s) - t0 )) s"

rc=0
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  (cd "$build" && timeout 200 ctest -L gpu -V) >"$out/ctest_gpu.log" 2>&1
  rc=$?
  grep -E "worst rel err|identical|device:|test cases:|assertions:|tests passed|ERROR|FAILED" "$out/ctest_gpu.log" | tee -a "$out/summary.txt"
  log "ctest -L gpu exit $rc"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  timeout 150 "$build/bench_cuda_backend" "$@" 2>&1 | tee "$out/bench.log"
  log "bench exit ${PIPESTATUS[0]}"
fi
if [ "${SOAK:-0}" != 0 ]; then
  cmake --build "$build" -j "${JOBS:-$(nproc)}" --target qtts_soak >>"$out/build.log" 2>&1 || log "qtts_soak build FAILED"
  timeout 400 "$build/qtts_soak" --random 0.6b --device cuda --count "$SOAK" --json "$out/soak.json" 2>&1 | tee "$out/soak.log"
  log "soak exit ${PIPESTATUS[0]}"
fi
if [ "${SANITIZE:-0}" = 1 ]; then
  # The tools slow the persistent kernels by orders of magnitude: a poll can outlast the 2 s default watchdog.
  export QTTS_WATCHDOG_S="${QTTS_WATCHDOG_S:-600}"
  for tool in ${SANITIZE_TOOLS:-memcheck racecheck synccheck}; do
    timeout "${SANITIZE_TIMEOUT_S:-300}" compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/qtts_cuda_tests" ${SANITIZE_ARGS:-} >"$out/sanitize_$tool.log" 2>&1
    log "compute-sanitizer $tool exit $? ($(grep -cE '^========= (Invalid|Race|Barrier|Error)' "$out/sanitize_$tool.log") reports): $(tail -1 "$out/sanitize_$tool.log")"
  done
fi
if [ "${E2E:-0}" = 1 ]; then
  cmake --build "$build" -j "${JOBS:-$(nproc)}" --target qtts >>"$out/build.log" 2>&1 || log "qtts build FAILED"
  # ramp32: calls of 1, 2, 4, 8, 16, 32 frames, as qtts speak streams; a "host" suffix: the host frame loop (--host-loop)
  for chunk in ${E2E_CHUNKS:-1 4 ramp32}; do
    c=${chunk%host}; args=(--vocoder-chunk "${c#ramp}"); [ "${c#ramp}" != "$c" ] && args+=(--vocoder-ramp)
    [ "$c" != "$chunk" ] && args+=(--host-loop)
    timeout 200 "$build/qtts" --device cuda bench --random-weights --frames 100 --reps 9 "${args[@]}" \
      --json "$out/e2e_chunk$chunk.json" 2>&1 | tee "$out/e2e_chunk$chunk.log"
  done
fi
if [ "${NCU:-0}" = 1 ] && command -v ncu >/dev/null; then
  timeout 100 ncu --clock-control none --kernel-name regex:"talker_step|predictor_frame" --launch-skip 5 --launch-count 2 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
    "$build/bench_cuda_backend" --no-variants --steps 10 --frames 8 >"$out/ncu.log" 2>&1
  grep -E "Duration|Memory Throughput|DRAM Throughput|Registers|Achieved Occupancy|==PROF==|L2 Hit" "$out/ncu.log" | head -40
fi
if [ "${NCU_PREFILL:-0}" = 1 ] && command -v ncu >/dev/null; then
  # Per-kernel GPU time of one 20-position talker prefill (the bench's first), summed by kernel name.
  timeout 150 ncu --clock-control none --cache-control none --launch-count "${NCU_PREFILL_LAUNCHES:-420}" \
    --kernel-name regex:"gemm|rms_norm|qk_norm|attention_prefill|silu" --metrics gpu__time_duration.sum --csv \
    "$build/bench_cuda_backend" --no-variants --steps 1 --frames 1 --prefill "${NCU_PREFILL_N:-20}" \
    >"$out/ncu_prefill.csv" 2>"$out/ncu_prefill.log"
  log "ncu prefill exit $?"
  # One qkv GEMM of that prefill in detail (throughput, occupancy, warp stalls).
  timeout 100 ncu --clock-control none --cache-control none --kernel-name regex:gemm_bf16 --launch-skip 0 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    "$build/bench_cuda_backend" --no-variants --steps 1 --frames 1 --prefill "${NCU_PREFILL_N:-20}" >"$out/ncu_prefill_gemm.txt" 2>&1
  grep -E "Duration|DRAM Throughput|Memory Throughput|Achieved Occupancy|Theoretical Occupancy|Block Limit|Registers Per|Grid Size|Stall|Dynamic Shared" "$out/ncu_prefill_gemm.txt" | head -30
  python3 - "$out/ncu_prefill.csv" <<'PY' | tee -a "$out/summary.txt"
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; ki = head.index("Kernel Name"); vi = head.index("Metric Value"); ui = head.index("Metric Unit")
tot = collections.defaultdict(lambda: [0, 0.0])
for r in rows[1:]:
    v = float(r[vi].replace(",", "")); v = v / 1000 if r[ui] in ("ns", "nsecond") else v * (1000 if r[ui] in ("ms", "msecond") else 1)
    k = r[ki].split("(")[0].split("::")[-1]; tot[k][0] += 1; tot[k][1] += v
for k, (n, us) in sorted(tot.items(), key=lambda x: -x[1][1]): print(f"prefill kernel {k:32s} {n:4d} launches {us:9.1f} us")
print(f"prefill kernels in all: {sum(n for n, _ in tot.values())} launches, {sum(us for _, us in tot.values()):.1f} us")
PY
fi
if [ "${NCU_SOURCE:-0}" = 1 ] && command -v ncu >/dev/null; then
  # The kernels carry -lineinfo (CMakeLists.txt); nvdisasm -gi of the same cubin names each instruction's .cu
  # line and the lines it was inlined at, which scripts/ncu_hotspots.py joins with ncu's per-instruction samples.
  (mkdir -p "$out/cubin" && cd "$out/cubin" && cuobjdump -xelf all "$OLDPWD/$build/libqtts_cuda.a" >/dev/null &&
    for c in decode_megakernel prefill_kernels; do nvdisasm -gi -c $c.*.cubin; done >"$out/decode_megakernel.dis") ||
    log "nvdisasm FAILED"
  for k in ${NCU_SOURCE_KERNELS:-talker_step predictor_frame}; do
    name=${k%%_*}
    timeout 150 ncu --clock-control none --kernel-name regex:"$k" --launch-skip 5 --launch-count 1 \
      --section WarpStateStats --section SourceCounters --section InstructionStats --import-source yes \
      -f -o "$out/ncu_$name" "$build/bench_cuda_backend" --no-variants --steps 10 --frames 8 >"$out/ncu_$name.log" 2>&1
    log "ncu $k exit $?"
    timeout 100 ncu -i "$out/ncu_$name.ncu-rep" --page source --csv --print-source sass \
      >"$out/ncu_sass_$name.csv" 2>>"$out/ncu_$name.log"
    timeout 60 ncu -i "$out/ncu_$name.ncu-rep" --page details --print-details all >"$out/ncu_details_$name.txt" 2>&1
    rm -f "$out/ncu_$name.ncu-rep"  # large; the CSV and the details keep what is read
    python3 scripts/ncu_hotspots.py "$out/ncu_sass_$name.csv" --disasm "$out/decode_megakernel.dis" --function "$k" \
      --top 30 >"$out/hotspots_$name.txt" 2>&1
    head -60 "$out/hotspots_$name.txt" | tee -a "$out/summary.txt"
    gzip -f "$out/ncu_sass_$name.csv"
  done
fi
exit $rc
