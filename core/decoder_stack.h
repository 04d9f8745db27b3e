// A Qwen3 decoder stack (RMSNorm, GQA attention with per-head q/k RMSNorm and rotate-half RoPE, SwiGLU
// MLP, final RMSNorm) with a growing KV cache. The talker (28 layers) and the code predictor (5 layers)
// are both this stack; only their embeddings and heads differ. fp32 CPU reference.
#pragma once

#include <string>
#include <vector>

#include "core/model_config.h"
#include "core/ops.h"
#include "core/safetensors.h"
#include "core/tensor.h"

namespace qtts {

struct DecoderLayerWeights {
    Tensor input_norm;  // [n_embd]
    Tensor wq;          // [n_head * head_dim, n_embd]
    Tensor wk;          // [n_kv_head * head_dim, n_embd]
    Tensor wv;          // [n_kv_head * head_dim, n_embd]
    Tensor wo;          // [n_embd, n_head * head_dim]
    Tensor q_norm;      // [head_dim]
    Tensor k_norm;      // [head_dim]
    Tensor post_norm;   // [n_embd]
    Tensor w_gate;      // [n_ff, n_embd]
    Tensor w_up;        // [n_ff, n_embd]
    Tensor w_down;      // [n_embd, n_ff]
};

struct DecoderStackWeights {
    DecoderStackConfig config;
    std::vector<DecoderLayerWeights> layers;
    Tensor final_norm;  // [n_embd]

    // `prefix` is e.g. "talker.model" (layers at `<prefix>.layers.N.*`, final norm at `<prefix>.norm`).
    static DecoderStackWeights load(const TensorStore& store, const std::string& prefix,
                                    const DecoderStackConfig& config);
    int64_t bytes_fp32() const;
};

// Post-RoPE keys and raw values of every position seen so far, per layer.
struct KvCache {
    std::vector<std::vector<float>> k;  // [n_layer][length * kv_dim]
    std::vector<std::vector<float>> v;
    int64_t length = 0;

    void reset(int64_t n_layer);
};

class DecoderStack {
public:
    explicit DecoderStack(const DecoderStackWeights& weights);
    // Runs `n` new positions (absolute positions cache.length ... cache.length + n - 1) and appends them to the
    // cache. x: [n, n_embd] inputs; out: [n, n_embd] final-normed hidden states.
    void forward(const float* x, int64_t n, KvCache& cache, float* out) const;
    const DecoderStackWeights& weights() const { return weights_; }

private:
    void attention(int64_t layer, const float* q, int64_t n, int64_t first_pos, const KvCache& cache,
                   float* out) const;
    const DecoderStackWeights& weights_;
    ops::Rope rope_;
};

}  // namespace qtts
