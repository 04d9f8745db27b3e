# Chunks of whole 16-row MMA tiles where that keeps the chunk count (the balanced split otherwise).
set -e
python3 - <<'PY'
p = 'cuda/weight_ring.cuh'
s = open(p).read()
old = '''    const unsigned chunks = (unsigned(n) + cap - 1u) / cap;
    return int((unsigned(n) + chunks - 1u) / chunks);
'''
new = '''    const unsigned chunks = (unsigned(n) + cap - 1u) / cap, per = (unsigned(n) + chunks - 1u) / chunks;
    const unsigned tiled = (per + 15u) & ~15u;  // mma_chunk pads every chunk to whole 16-row tiles
    return int(tiled <= cap ? tiled : per);
'''
assert s.count(old) == 1, 'a16: ring_chunk_rows changed'
open(p, 'w').write(s.replace(old, new))
PY
