#!/usr/bin/env python3
"""Where each weight chunk of a decode kernel's ring sits, and which earlier chunk's release it waits for, without a
GPU: the placement rules of cuda/weight_ring.cuh (ring_chunk_rows, ring_place, kRingSlots) applied to one CTA's
rows of every phase (cta_rows; the CTA with the most rows). A chunk that waits for the release of the chunk just
before it ("1 back") is issued only when the phase before it has finished its MMAs, so its bytes land during the
handoff; "2 back" or more gives it at least a phase of lead.

  python3 scripts/ring_model.py [--kernel talker|predictor] [--size 0.6b|1.7b] [--ring KB] [--scan A:B]
                                [--split PHASE=N]... [--ctas 132]

--scan A:B prints, for ring sizes A..B KB (2 KB steps), the distinct "back" distances of each phase in steady
state; the talker's ring (~194 KB on an H100) sits just above the 193.4 KB where QKV, O-proj and gate/up fit
together (below it, gate/up waits for O-proj's release in every layer). --split gives a phase N chunks (a variant).
"""
import argparse

RING_SLOTS = 8
# The talker's n_embd, n_ff, heads, kv heads, head_dim; the code predictor is 1024 wide in both sizes (the 1.7B's
# input projection runs in pass 1 only, with the layer-0 table), 5 layers, 2048 codes per head.
SHAPES = {
    '0.6b': dict(E=1024, F=3072, H=16, KV=8, HD=128),
    '1.7b': dict(E=2048, F=6144, H=16, KV=8, HD=128),
}
PREDICTOR = dict(E=1024, F=3072, H=16, KV=8, HD=128, layers=5, vocab=2048)


def row_stride(k):
    return 2 * k + 16


def chunk_rows(n, k, ring, max_rows=48):
    cap = max(1, min(ring * 3 // 5 // row_stride(k), max_rows))
    if n <= cap:
        return n
    chunks = -(-n // cap)
    return -(-n // chunks)


def max_cta_rows(rows, ctas):
    return max((rows * (c + 1)) // ctas - (rows * c) // ctas for c in range(ctas))


def phases(kernel, s, ctas, passes=3):
    """(name, rows, K) of one CTA's weight phases in launch order (a few layers / passes: the steady state)."""
    if kernel == 'predictor':
        s = PREDICTOR
    q, kv = s['H'] * s['HD'], s['KV'] * s['HD']
    layer = [('qkv', max_cta_rows(q + 2 * kv, ctas), s['E']), ('o', max_cta_rows(s['E'], ctas), q),
             ('gu', 2 * max_cta_rows(s['F'], ctas), s['E']), ('down', max_cta_rows(s['E'], ctas), s['F'])]
    if kernel == 'talker':
        return [(f'L{l}.{n}', r, k) for l in range(8) for n, r, k in layer]
    out = []
    for t in range(passes):  # passes 2.. with the layer-0 table: no layer-0 QKV; the head ends a pass
        for l in range(s['layers']):
            out += [(f'p{t}.L{l}.{n}', r, k) for n, r, k in layer if not (l == 0 and n == 'qkv')]
        out.append((f'p{t}.head', max_cta_rows(s['vocab'], ctas), s['E']))
    return out


def place(seq, ring, splits):
    chunks = []
    for name, n, k in seq:
        per = chunk_rows(n, k, ring)
        kind = name.split('.')[-1]
        if kind in splits:
            per = -(-n // splits[kind])
        for i, r0 in enumerate(range(0, n, per)):
            chunks.append((f'{name}#{i}', min(per, n - r0) * row_stride(k)))
    head, placed, waits = 0, [], []
    for idx, (name, size) in enumerate(chunks):
        at = head if head + size <= ring else 0
        head = at + size
        blockers = [j for j in range(max(0, idx - RING_SLOTS), idx)
                    if at < placed[j][1] + placed[j][2] and placed[j][1] < at + size]
        if idx >= RING_SLOTS:
            blockers.append(idx - RING_SLOTS)
        placed.append((name, at, size))
        waits.append(max(blockers) if blockers else -1)
    return placed, waits


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--kernel', choices=['talker', 'predictor'], default='predictor')
    ap.add_argument('--size', choices=sorted(SHAPES), default='0.6b', help="the talker's size")
    ap.add_argument('--ring', type=float, help='ring KB (default: talker 194, predictor 134)')
    ap.add_argument('--scan', help='A:B, ring sizes in KB')
    ap.add_argument('--split', action='append', default=[], help='PHASE=N (qkv, o, gu, down, head)')
    ap.add_argument('--ctas', type=int, default=132)
    a = ap.parse_args()
    splits = {k: int(v) for k, v in (x.split('=') for x in a.split)}
    seq = phases(a.kernel, SHAPES[a.size], a.ctas)
    if a.scan:
        lo, hi = (int(x) for x in a.scan.split(':'))
        for kb in range(lo, hi + 1, 2):
            placed, waits = place(seq, kb * 1024, splits)
            back = {}
            for idx in range(len(placed) // 2, len(placed)):
                kind = placed[idx][0].split('.')[-1].split('#')[0]
                back.setdefault(kind, set()).add(idx - waits[idx] if waits[idx] >= 0 else 0)
            print(f'{kb:4d} KB  ' + '  '.join(f'{k} {sorted(v)}' for k, v in back.items()))
        return
    ring = int((a.ring or (194 if a.kernel == 'talker' else 134)) * 1024)
    placed, waits = place(seq, ring, splits)
    lo = len(placed) // 2
    for idx in range(lo, min(len(placed), lo + 24)):
        name, at, size = placed[idx]
        w = waits[idx]
        print(f'{name:16s} at {at / 1024:6.1f} KB, {size / 1024:5.1f} KB: issued after '
              f'{placed[w][0] if w >= 0 else "-"} is released ({idx - w if w >= 0 else 0} back)')


if __name__ == '__main__':
    try:
        main()
    except BrokenPipeError:  # piped into head
        pass
