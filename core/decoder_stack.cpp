#include "core/decoder_stack.h"

#include <cmath>

#include "core/error.h"

namespace qtts {

DecoderStackWeights DecoderStackWeights::load(const TensorStore& store, const std::string& prefix,
                                              const DecoderStackConfig& c) {
    DecoderStackWeights w;
    w.config = c;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string p = fmt::format("{}.layers.{}.", prefix, l);
        DecoderLayerWeights L;
        L.input_norm = store.load(p + "input_layernorm.weight", {c.n_embd});
        L.wq = store.load(p + "self_attn.q_proj.weight", {c.q_dim(), c.n_embd});
        L.wk = store.load(p + "self_attn.k_proj.weight", {c.kv_dim(), c.n_embd});
        L.wv = store.load(p + "self_attn.v_proj.weight", {c.kv_dim(), c.n_embd});
        L.wo = store.load(p + "self_attn.o_proj.weight", {c.n_embd, c.q_dim()});
        L.q_norm = store.load(p + "self_attn.q_norm.weight", {c.head_dim});
        L.k_norm = store.load(p + "self_attn.k_norm.weight", {c.head_dim});
        L.post_norm = store.load(p + "post_attention_layernorm.weight", {c.n_embd});
        L.w_gate = store.load(p + "mlp.gate_proj.weight", {c.n_ff, c.n_embd});
        L.w_up = store.load(p + "mlp.up_proj.weight", {c.n_ff, c.n_embd});
        L.w_down = store.load(p + "mlp.down_proj.weight", {c.n_embd, c.n_ff});
        w.layers.push_back(std::move(L));
    }
    w.final_norm = store.load(prefix + ".norm.weight", {c.n_embd});
    return w;
}

int64_t DecoderStackWeights::bytes_fp32() const {
    int64_t n = final_norm.numel();
    for (const auto& L : layers)
        for (const Tensor* t : {&L.input_norm, &L.wq, &L.wk, &L.wv, &L.wo, &L.q_norm, &L.k_norm, &L.post_norm,
                                &L.w_gate, &L.w_up, &L.w_down})
            n += t->numel();
    return n * 4;
}

void KvCache::reset(int64_t n_layer) {
    k.assign(size_t(n_layer), {});
    v.assign(size_t(n_layer), {});
    length = 0;
}

DecoderStack::DecoderStack(const DecoderStackWeights& weights)
    : weights_(weights), rope_(weights.config.head_dim, weights.config.rope_theta) {}

void DecoderStack::attention(int64_t layer, const float* q, int64_t n, int64_t first_pos, const KvCache& cache,
                             float* out) const {
    const auto& c = weights_.config;
    const int64_t hd = c.head_dim, kv_dim = c.kv_dim(), group = c.n_head / c.n_kv_head;
    const float scale = 1.0f / std::sqrt(float(hd));
    const float* K = cache.k[size_t(layer)].data();
    const float* V = cache.v[size_t(layer)].data();
#pragma omp parallel for collapse(2) schedule(static) if (n * c.n_head * (first_pos + n) * hd >= (int64_t(1) << 20))
    for (int64_t t = 0; t < n; ++t) {
        for (int64_t h = 0; h < c.n_head; ++h) {
            const int64_t n_keys = first_pos + t + 1;  // causal: keys 0 .. own position
            const int64_t kvh = h / group;             // GQA "repeat_interleave": q-head h uses kv-head h / group
            const float* qh = q + t * c.q_dim() + h * hd;
            std::vector<float> scores(static_cast<size_t>(n_keys));
            for (int64_t j = 0; j < n_keys; ++j) scores[size_t(j)] = ops::dot(qh, K + j * kv_dim + kvh * hd, hd) * scale;
            ops::softmax(scores.data(), n_keys);
            float* o = out + t * c.q_dim() + h * hd;
            for (int64_t d = 0; d < hd; ++d) o[d] = 0.0f;
            for (int64_t j = 0; j < n_keys; ++j) {
                const float p = scores[size_t(j)];
                const float* vj = V + j * kv_dim + kvh * hd;
#pragma omp simd
                for (int64_t d = 0; d < hd; ++d) o[d] += p * vj[d];
            }
        }
    }
}

void DecoderStack::forward(const float* x, int64_t n, KvCache& cache, float* out) const {
    const auto& c = weights_.config;
    if (cache.k.size() != size_t(c.n_layer)) cache.reset(c.n_layer);
    const int64_t E = c.n_embd, hd = c.head_dim, first_pos = cache.length;
    std::vector<float> h(x, x + n * E), normed(size_t(n * E)), q(size_t(n * c.q_dim())), k(size_t(n * c.kv_dim())),
        v(size_t(n * c.kv_dim())), attn(size_t(n * c.q_dim())), proj(size_t(n * E)), gate(size_t(n * c.n_ff)),
        up(size_t(n * c.n_ff));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const auto& L = weights_.layers[size_t(l)];
        for (int64_t t = 0; t < n; ++t) ops::rms_norm(&h[t * E], L.input_norm.ptr(), E, c.rms_eps, &normed[t * E]);
        ops::linear(L.wq, nullptr, normed.data(), n, q.data());
        ops::linear(L.wk, nullptr, normed.data(), n, k.data());
        ops::linear(L.wv, nullptr, normed.data(), n, v.data());
        for (int64_t t = 0; t < n; ++t) {
            for (int64_t hh = 0; hh < c.n_head; ++hh) {
                float* qh = &q[t * c.q_dim() + hh * hd];
                ops::rms_norm(qh, L.q_norm.ptr(), hd, c.rms_eps, qh);
                rope_.apply(qh, first_pos + t);
            }
            for (int64_t hh = 0; hh < c.n_kv_head; ++hh) {
                float* kh = &k[t * c.kv_dim() + hh * hd];
                ops::rms_norm(kh, L.k_norm.ptr(), hd, c.rms_eps, kh);
                rope_.apply(kh, first_pos + t);
            }
        }
        cache.k[size_t(l)].insert(cache.k[size_t(l)].end(), k.begin(), k.end());
        cache.v[size_t(l)].insert(cache.v[size_t(l)].end(), v.begin(), v.end());
        attention(l, q.data(), n, first_pos, cache, attn.data());
        ops::linear(L.wo, nullptr, attn.data(), n, proj.data());
        for (int64_t i = 0; i < n * E; ++i) h[size_t(i)] += proj[size_t(i)];
        for (int64_t t = 0; t < n; ++t) ops::rms_norm(&h[t * E], L.post_norm.ptr(), E, c.rms_eps, &normed[t * E]);
        ops::linear(L.w_gate, nullptr, normed.data(), n, gate.data());
        ops::linear(L.w_up, nullptr, normed.data(), n, up.data());
        for (size_t i = 0; i < gate.size(); ++i) gate[i] = ops::silu(gate[i]) * up[i];
        ops::linear(L.w_down, nullptr, gate.data(), n, proj.data());
        for (int64_t i = 0; i < n * E; ++i) h[size_t(i)] += proj[size_t(i)];
    }
    cache.length += n;
    for (int64_t t = 0; t < n; ++t) ops::rms_norm(&h[t * E], weights_.final_norm.ptr(), E, c.rms_eps, out + t * E);
}

}  // namespace qtts
