#!/usr/bin/env python3
"""Where a kernel's warps stall, from an Nsight Compute SASS source-page CSV (`ncu -i R --page source --csv
--print-source sass`).

Prints the opcode mix (executed warp instructions and stall samples per opcode) and the top SASS instructions
by warp-stall samples. With --disasm (the output of `nvdisasm -gi -c` on the same cubin, which names the .cu
line of every instruction) it also ranks the source lines, so one profile of a megakernel launch says which
lines hold the warps and which issue the instructions. Columns are found by name fragments, since their exact
titles vary between ncu versions. Usage: ncu_hotspots.py FILE.csv [--disasm FILE --function NAME] [--top N]
"""
import argparse
import collections
import csv
import os
import re
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


def read_sass_csv(path):
    """Rows of (offset from the kernel's first instruction, instruction text, samples, executed, reasons)."""
    with open(path, newline="", errors="replace") as f:
        rows = [r for r in csv.reader(f) if r]
    # ncu may print "==PROF==" lines or a kernel title before the table: the header is the first row that
    # names a stall-sampling column.
    start = next((i for i, r in enumerate(rows) if any("stall sampling" in c.lower() for c in r)), None)
    if start is None:
        sys.exit(f"{path}: no 'Warp Stall Sampling' column (was the SourceCounters section collected, and is it "
                 "the SASS view?)")
    header, body = rows[start], [r for r in rows[start + 1:] if len(r) == len(rows[start])]
    addr_col, src_col = find(header, "address"), find(header, "source")
    total_col = find(header, "stall sampling", "all") or find(header, "stall sampling")
    exec_col = find(header, "instructions executed", exclude=("predicated",))
    reasons = [i for i, n in enumerate(header) if n.lower().startswith("stall_") or "pcsamp_warps_issue_stalled" in n]
    out = []
    for r in body:
        try:
            addr = int(r[addr_col].strip(), 16) if addr_col is not None else len(out)
        except ValueError:
            continue
        out.append((addr, r[src_col].strip() if src_col is not None else "", number(r[total_col]),
                    number(r[exec_col]) if exec_col is not None else 0.0,
                    {header[i]: number(r[i]) for i in reasons if number(r[i]) > 0}))
    if not out:
        sys.exit(f"{path}: no instruction rows")
    base = min(a for a, *_ in out)
    return [(a - base, *rest) for a, *rest in out]


def read_disasm(path, function):
    """{offset: [(file, line), ...]} of `function` (a fragment of its mangled name) from `nvdisasm -gi -c` output:
    the innermost source line first, then the lines it was inlined at, out to the kernel."""
    chains, current, chain, after_code, in_function = {}, None, [], True, False
    for text in open(path, errors="replace"):
        m = re.match(r"\s*\.(?:section\s+)?\.text\.(\S+?):?\s*(,|$)", text) or re.match(r"\s*\.text\.(\S+):", text)
        if m:
            current = m.group(1)
            in_function = function in current
            chain, after_code = [], True
            continue
        if not in_function:
            continue
        m = re.search(r'//## File "([^"]+)", line (\d+)(?: inlined at "([^"]+)", line (\d+))?', text)
        if m:
            if after_code:  # a new annotation block
                chain, after_code = [], False
            if not chain:
                chain.append((m.group(1), int(m.group(2))))
            if m.group(3):
                chain.append((m.group(3), int(m.group(4))))
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/", text)
        if m:
            after_code = True
            if chain:
                chains[int(m.group(1), 16)] = list(chain)
    return chains


def source_text(file, line):
    local = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda", os.path.basename(file))
    for cand in (file, local):
        if os.path.exists(cand):
            with open(cand, errors="replace") as f:
                text = f.read().splitlines()
            return text[line - 1].strip() if 0 < line <= len(text) else ""
    return ""


def short_reasons(reasons, n=3):
    top = sorted(((v, k) for k, v in reasons.items()), reverse=True)[:n]
    return ", ".join(f"{k.split('stalled_')[-1].replace('stall_', '').replace('_not_issued', '')} {v:.0f}"
                     for v, k in top)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--disasm", help="nvdisasm -gi -c output of the cubin that holds the kernel")
    ap.add_argument("--function", default="", help="fragment of the kernel's mangled name (with --disasm)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    rows = read_sass_csv(args.csv)
    total = sum(r[2] for r in rows) or 1.0
    executed = sum(r[3] for r in rows) or 1.0
    print(f"{args.csv}: {len(rows)} instructions, {total:.0f} stall samples, {executed:.0f} warp instructions executed")

    by_op = collections.defaultdict(lambda: [0.0, 0.0])
    for _, text, samples, ex, _ in rows:
        op = text.split()[0] if text.split() else "?"
        if op.startswith("@"):  # predicate guard
            op = text.split()[1] if len(text.split()) > 1 else op
        by_op[op.split(".")[0]][0] += samples
        by_op[op.split(".")[0]][1] += ex
    print("\nopcode        % executed   % samples")
    for op, (s, ex) in sorted(by_op.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"{op:12s} {100 * ex / executed:10.1f} {100 * s / total:11.1f}")

    print(f"\ntop {args.top} instructions by stall samples (offset | samples | executed | instruction | reasons)")
    for off, text, s, ex, reasons in sorted(rows, key=lambda r: -r[2])[: args.top]:
        print(f"{off:06x} {100 * s / total:5.1f}% {s:7.0f} {ex:10.0f} | {text[:70]:70s} | {short_reasons(reasons)}")

    if args.disasm:
        chains = read_disasm(args.disasm, args.function)
        if not chains:
            sys.exit(f"{args.disasm}: no line info for a function matching '{args.function}' (nvdisasm -gi -c)")
        matched = sum(1 for off, *_ in rows if off in chains)
        print(f"\n{matched}/{len(rows)} instructions have a source line")
        # Innermost line, and the call site in the kernel's own file (which phase / helper call it belongs to).
        kernel_file = os.path.basename(chains[min(chains)][-1][0])
        for title, pick in (("innermost source line", lambda c: c[0]),
                            (f"call site in {kernel_file}",
                             lambda c: next((x for x in c if os.path.basename(x[0]) == kernel_file), c[-1]))):
            per_line = collections.defaultdict(lambda: [0.0, 0.0, collections.Counter()])
            for off, _, s, ex, reasons in rows:
                key = pick(chains[off]) if off in chains else ("?", 0)
                per_line[key][0] += s
                per_line[key][1] += ex
                per_line[key][2].update(reasons)
            print(f"\ntop {args.top} by {title} (% samples | % executed | file:line | reasons | source)")
            for (file, line), (s, ex, reasons) in sorted(per_line.items(), key=lambda kv: -kv[1][0])[: args.top]:
                print(f"{100 * s / total:5.1f}% {100 * ex / executed:5.1f}% {os.path.basename(file)}:{line} | "
                      f"{short_reasons(reasons)} | {source_text(file, line)[:80]}")


if __name__ == "__main__":
    main()
