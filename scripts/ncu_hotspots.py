#!/usr/bin/env python3
"""Top rows of an Nsight Compute source-page CSV (`ncu -i R --page source --csv --print-source sass|cuda`).

Ranks the rows (SASS instructions or .cu lines) by warp-stall samples and prints each row's share of all
samples, its largest stall reasons and its executed instructions, so one profile of a megakernel launch says
which lines hold the warps. Columns are found by name fragments, since their exact titles vary between ncu
versions. Usage: ncu_hotspots.py FILE.csv [--top N]
"""
import argparse
import csv
import sys


def number(text):
    try:
        return float(str(text).replace(",", "").strip() or 0)
    except ValueError:
        return 0.0


def find(header, *fragments, exclude=()):
    for i, name in enumerate(header):
        low = name.lower()
        if all(f in low for f in fragments) and not any(x in low for x in exclude):
            return i
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    with open(args.csv, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r]
    # ncu may print "==PROF==" lines or a kernel title before the table: the header is the first row that
    # names a stall-sampling column.
    start = next((i for i, r in enumerate(rows) if any("stall sampling" in c.lower() for c in r)), None)
    if start is None:
        sys.exit(f"{args.csv}: no 'Warp Stall Sampling' column (was the SourceCounters section collected?)")
    header, body = rows[start], rows[start + 1:]
    total_col = find(header, "stall sampling", "all") or find(header, "stall sampling")
    exec_col = find(header, "instructions executed")
    where = [i for i in (find(header, "address"), find(header, "line"), find(header, "source")) if i is not None]
    reasons = [i for i, n in enumerate(header) if n.lower().startswith("stall_") or "smsp__pcsamp_warps_issue_stalled" in n]
    body = [r for r in body if len(r) == len(header)]
    total = sum(number(r[total_col]) for r in body) or 1.0
    body.sort(key=lambda r: -number(r[total_col]))
    print(f"{args.csv}: {len(body)} rows, {total:.0f} stall samples; top {args.top}:")
    for r in body[: args.top]:
        s = number(r[total_col])
        top_reasons = sorted(((number(r[i]), header[i]) for i in reasons), reverse=True)[:3]
        reason_text = ", ".join(f"{n.split('stalled_')[-1].replace('stall_', '')} {v:.0f}" for v, n in top_reasons if v > 0)
        executed = f" | exec {number(r[exec_col]):.0f}" if exec_col is not None else ""
        place = " | ".join(r[i].strip()[:90] for i in where)
        print(f"{100 * s / total:5.1f}% {s:8.0f}{executed} | {place}" + (f" | {reason_text}" if reason_text else ""))


if __name__ == "__main__":
    main()
