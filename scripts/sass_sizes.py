#!/usr/bin/env python3
"""SASS bytes of a decode kernel by call site, without a GPU: which source lines the instructions of a kernel come
from, following the inlining chain (nvdisasm -gi), so a change's effect on the code a pass runs can be read before it
is measured (the predictor's per-pass code exceeds the SM's instruction cache; cuda/NOTES.md).

  python3 scripts/sass_sizes.py [--kernel predictor_frame] [--site LINE] [--depth N] [--top N] [--src DIR]

Builds cuda/decode_megakernel.cu of DIR (default: this tree) for sm_90 with -lineinfo. --site LINE: only the
instructions whose outermost call site is that line of the kernel body, grouped by the next N call levels; without
it, every outermost line. nvdisasm comes from PATH, else from the nvidia-cuda-nvdisasm wheel (pip download, cached
in ~/.cache/qtts-nvdisasm)."""
import argparse
import collections
import glob
import os
import shutil
import subprocess
import sys
import tempfile

from ncu_hotspots import read_disasm  # the nvdisasm -gi parser (this directory)


def find_nvdisasm():
    exe = shutil.which('nvdisasm')
    if exe:
        return exe
    cache = os.path.expanduser('~/.cache/qtts-nvdisasm')
    found = glob.glob(os.path.join(cache, '**/bin/nvdisasm'), recursive=True)
    if not found:
        os.makedirs(cache, exist_ok=True)
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', 'nvidia-cuda-nvdisasm', '-d', cache],
                       check=True)
        for whl in glob.glob(os.path.join(cache, '*.whl')):
            shutil.unpack_archive(whl, cache, 'zip')
        found = glob.glob(os.path.join(cache, '**/bin/nvdisasm'), recursive=True)
    if not found:
        sys.exit('sass_sizes: no nvdisasm (not on PATH, and the nvidia-cuda-nvdisasm wheel has none)')
    os.chmod(found[0], 0o755)
    return found[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--kernel', default='predictor_frame')
    ap.add_argument('--site', type=int)
    ap.add_argument('--depth', type=int, default=1)
    ap.add_argument('--top', type=int, default=25)
    ap.add_argument('--src', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
    args = ap.parse_args()
    src = os.path.abspath(args.src)
    with tempfile.TemporaryDirectory() as tmp:
        cubin, disasm = os.path.join(tmp, 'k.cubin'), os.path.join(tmp, 'k.dis')
        subprocess.run(['nvcc', '-std=c++17', '-O3', '-I', src, '-lineinfo', '-cubin', '-gencode',
                        'arch=compute_90,code=sm_90', os.path.join(src, 'cuda/decode_megakernel.cu'), '-o', cubin],
                       check=True, stderr=subprocess.DEVNULL)
        with open(disasm, 'w') as f:
            subprocess.run([find_nvdisasm(), '-gi', '-c', cubin], check=True, stdout=f)
        chains = read_disasm(disasm, args.kernel)  # {offset: [(file, line), ...]}, innermost first
    here = lambda f, n: n if f.endswith('decode_megakernel.cu') else f'{os.path.basename(f)}:{n}'
    sizes, total = collections.Counter(), len(chains)
    for chain in chains.values():
        outer = [here(f, n) for f, n in reversed(chain)]  # the kernel body's line first
        if args.site is None:
            sizes[tuple(outer[:1])] += 1
        elif outer[0] == args.site:
            sizes[tuple(outer[1:1 + args.depth])] += 1
    print(f'{args.kernel}: {total * 16 / 1024:.1f} KB of SASS'
          + (f'; under line {args.site}: {sum(sizes.values()) * 16 / 1024:.1f} KB' if args.site else ''))
    for key, n in sizes.most_common(args.top):
        print(f'{n * 16 / 1024:8.1f} KB  ' + ' > '.join(str(k) for k in key))


if __name__ == '__main__':
    main()
