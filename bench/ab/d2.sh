# the predictor's down phase (K = 3 n_embd) in two chunks, so its first half fits beside gate/up in the 134 KB ring
python3 - <<'PY'
p='cuda/weight_ring.cuh'; s=open(p).read()
old="    if (n <= 0) return 1;\n    if (unsigned(n) <= cap) return n;"
new="    if (n <= 0) return 1;\n    const unsigned cap2 = (K >= 3072 && ring_bytes <= (134 << 10) && n > 1) ? (unsigned(n) + 1u) / 2u : cap;\n    if (unsigned(n) <= cap2 && unsigned(n) <= cap) return n;\n    if (cap2 < cap) return int(cap2);"
assert s.count(old)==1; s=s.replace(old,new); open(p,'w').write(s)
PY
