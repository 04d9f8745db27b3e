// The speech-tokenizer decoder's weights as core/vocoder.cpp packs them (fp32, CPU panel layout; see
// core/vocoder_ops.h), exposed so that other backends (cuda/) can upload them without re-reading the checkpoint.
// Internal to the decoder implementations: the public API is core/vocoder.h.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/model_config.h"
#include "core/vocoder_ops.h"

namespace qtts {

namespace voc {

using vocoder_ops::PackedWeight;

// The residual units of every decoder block (official: `for dilation in (1, 3, 9)`).
constexpr std::array<int64_t, 3> kUnitDilations{1, 3, 9};
constexpr int64_t kConvNeXtKernel = 7;
constexpr float kConvNeXtEps = 1e-6f;
constexpr float kCodebookEps = 1e-5f;  // EuclideanCodebook clamps cluster_usage to at least this

// SnakeBeta parameters, stored in log space in the checkpoint.
struct Snake {
    std::vector<float> alpha;     // [ch] exp(alpha)
    std::vector<float> inv_beta;  // [ch] 1 / (exp(beta) + 1e-9)
};

// Causal Conv1d: left zero padding (k - 1) * dilation, stride 1.
struct CausalConv {
    PackedWeight w;  // taps = kernel size, [n_in] -> [n_out]
    int64_t dilation = 1;
    int64_t history() const { return (w.n_tap - 1) * dilation; }
};

// ConvTranspose1d with kernel 2 * stride whose last `stride` outputs are dropped (or kernel == stride, nothing
// dropped): exactly T * stride outputs, output t * stride + j reading inputs t - 1 and t.
struct TransposedConv {
    std::vector<PackedWeight> phases;  // [stride], each [n_tap = k / stride][n_in] -> [n_out]
    int64_t stride = 1;
    int64_t history() const { return phases.front().n_tap - 1; }
};

struct TransformerLayer {
    std::vector<float> attn_norm;   // [hidden] input_layernorm
    PackedWeight q, k, v;           // [hidden] -> [n_head * head_dim], [n_kv_head * head_dim] x 2, no bias
    PackedWeight o;                 // [n_head * head_dim] -> [hidden], no bias
    std::vector<float> attn_scale;  // [hidden] self_attn_layer_scale
    std::vector<float> mlp_norm;    // [hidden] post_attention_layernorm
    PackedWeight gate, up;          // [hidden] -> [n_ff], no bias
    PackedWeight down;              // [n_ff] -> [hidden], no bias
    std::vector<float> mlp_scale;   // [hidden] mlp_layer_scale
};

struct ConvNeXt {
    std::vector<float> dw_weight;  // [7, latent] depthwise causal conv, tap-major
    std::vector<float> dw_bias;    // [latent]
    std::vector<float> norm_w;     // [latent] LayerNorm, eps 1e-6
    std::vector<float> norm_b;     // [latent]
    PackedWeight pw1;              // [latent] -> [4 * latent] + bias
    PackedWeight pw2;              // [4 * latent] -> [latent] + bias
    std::vector<float> gamma;      // [latent]
};

struct UpsampleStage {
    TransposedConv up;  // [latent] -> [latent], kernel = stride = ratio
    ConvNeXt block;
};

struct ResidualUnit {
    Snake act1;        // [ch]
    CausalConv conv1;  // [ch] -> [ch], k 7, dilation 1 / 3 / 9
    Snake act2;        // [ch]
    CausalConv conv2;  // [ch] -> [ch], k 1
};

struct DecoderBlock {
    Snake act;                          // [in]
    TransposedConv up;                  // [in] -> [out = in / 2], kernel 2 * rate, stride rate
    std::array<ResidualUnit, 3> units;  // [out]
};

}  // namespace voc

// Everything Vocoder::load reads, packed for the CPU kernels. Immutable once loaded.
struct VocoderWeights {
    using PackedWeight = vocoder_ops::PackedWeight;
    VocoderConfig config;
    std::vector<float> codebooks;   // [num_quantizers, codebook_size, vq_dim], normalized
    PackedWeight semantic_proj;     // [vq_dim] -> [codebook_dim] rvq_first.output_proj, no bias
    PackedWeight acoustic_proj;     // [vq_dim] -> [codebook_dim] rvq_rest.output_proj, no bias
    voc::CausalConv pre_conv;       // [codebook_dim] -> [latent], k 3
    PackedWeight input_proj;        // [latent] -> [hidden] + bias
    std::vector<voc::TransformerLayer> layers;
    std::vector<float> final_norm;  // [hidden]
    PackedWeight output_proj;       // [hidden] -> [latent] + bias
    std::vector<float> inv_freq;    // [head_dim / 2] RoPE frequencies
    std::vector<voc::UpsampleStage> upsample;
    voc::CausalConv decoder_in;     // [latent] -> [decoder_dim], k 7
    std::vector<voc::DecoderBlock> blocks;
    voc::Snake final_act;           // [decoder_dim >> n_blocks]
    voc::CausalConv final_conv;     // [decoder_dim >> n_blocks] -> [1], k 7
};

}  // namespace qtts
