# block_sample tries the staged top-k path first (the decode kernels' default rules: sampling, top-k, no top-p).
set -e
python3 - <<'PY'
p = 'cuda/decode_megakernel.cu'
s = open(p).read()
old = '''    if (!s.do_sample) return block_argmax(lg, n, sm.red, sm.ired);
'''
new = old + '''    if (s.top_p >= 1.0f && s.top_k > 0 && s.top_k < n) {
        const int pick = block_topk_draw(sm, n, s, u, sub);
        if (pick >= 0) return pick;
    }
'''
assert s.count(old) == 1, 'tk: block_sample changed'
open(p, 'w').write(s.replace(old, new))
PY
