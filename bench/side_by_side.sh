#!/usr/bin/env bash
# The figure we quote: the official PyTorch implementation and qtts on the same GPU, same random-weight 0.6B
# checkpoint (official layout, made by the oracle driver), same text and frame count, in one run; prints
# both timings and their ratio. Run on the GPU machine from the repository root, after
# TARGETS=qtts scripts/device_build_and_test.sh has built build-device/qtts and with the oracle in .oracle/ (see README of
# ../shared/oracle): bench/side_by_side.sh [FRAMES] [REPS]
set -euo pipefail
frames="${1:-100}"
reps="${2:-5}"
text="Hello, how are you today?"
work="${OUT:-/tmp}/side_by_side"   # reports (small); the 2.3 GB checkpoint stays in /tmp
ck=/tmp/qtts-side-by-side-ck
mkdir -p "$work"
qtts="${QTTS_BIN:-build-device/qtts}"

# Official: bf16 PyTorch path (how the official examples run), greedy, timing reps after one warm run.
(cd .oracle/driver && QWEN_TTS_SRC=.. PYTHONUNBUFFERED=1 python3 official.py --size 0.6b --device cuda --dtype bf16 \
    --frames "$frames" --save "$ck" --out "$work/official.json" --timing-reps "$reps" --texts "$text") \
    > "$work/official.log" 2>&1
cp .oracle/driver/tokenizer.json "$ck/" 2>/dev/null || true

# qtts on the same checkpoint: fixed frame count, greedy, same number of reps.
"$qtts" --model "$ck" --device auto bench --text "$text" --frames "$((frames - 1))" --reps "$reps" --warmup 1 \
    --greedy --json "$work/qtts.json" > "$work/qtts.md"

python3 - "$work" "$frames" <<'PY'
import json, statistics, sys
work, frames = sys.argv[1], int(sys.argv[2])
off = json.load(open(f"{work}/official.json"))["items"][0]
q = json.load(open(f"{work}/qtts.json"))
off_s = statistics.median(off.get("gen_s_reps") or [off["gen_s"]])
off_frames = off["n_frames"]
q_total = q["metrics"]["total"]["median"] / 1e3
q_frames = q["frames"]
print(open(f"{work}/qtts.md").read())
print(f"official PyTorch (bf16): {off_s*1e3:.1f} ms for {off_frames} frames (talker+predictor, no vocoder) "
      f"= {off_s/off_frames*1e3:.2f} ms/frame, RTF {off_s/(off_frames*0.08):.3f}")
print(f"qtts ({q['device']}): {q_total*1e3:.1f} ms for {q_frames} frames (incl. vocoder) = "
      f"{q_total/q_frames*1e3:.2f} ms/frame, RTF {q['metrics']['real-time factor']['median']:.4f}")
print(f"speed-up per frame: {(off_s/off_frames)/(q_total/q_frames):.1f}x (qtts includes the vocoder, the official time does not)")
PY
