# A phase that needs several ring chunks gets chunks of at most 2/5 of the ring, so two of them are in the ring
# together (scripts/ring_model.py: the 1.7B talker's gate/up and down chunks each wait for the previous one's release
# at 3/5; the 0.6B kernels' chunks are unchanged). Measure with --size 1.7b as well.
python3 - <<'PY'
p = 'cuda/weight_ring.cuh'
s = open(p).read()
old = """    if (unsigned(n) <= cap) return n;
    const unsigned chunks = (unsigned(n) + cap - 1u) / cap;"""
new = """    if (unsigned(n) <= cap) return n;
    const unsigned cap2_rows = unsigned(ring_bytes) * 2u / 5u / unsigned(ring_row_stride(K));
    const unsigned cap2 = cap2_rows < 1u ? 1u : cap2_rows < cap ? cap2_rows : cap;
    const unsigned chunks = (unsigned(n) + cap2 - 1u) / cap2;"""
assert s.count(old) == 1, 'h40: ring_chunk_rows changed on main'
open(p, 'w').write(s.replace(old, new))
PY
