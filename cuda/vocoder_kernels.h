// Plain structs and launchers of the speech-tokenizer decoder kernels (vocoder_kernels.cu), driven by
// cuda_vocoder.cpp. Everything is fp32, activations time-major ([rows, channels], channels contiguous) like
// the CPU reference (core/vocoder.cpp). Every output element is computed by one fixed instruction sequence
// whatever the row count or tile shape (fixed K order, fixed split-K per layer, fixed-order split sums), so
// a stream decoded in chunks is bit-identical to one pass. No core/ headers here.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace qtts::cuda {

// Epilogue activation of a conv GEMM (applied to acc + bias, before the residual).
enum class VocAct : int { none = 0, snake = 1, gelu = 2, glu = 3, clamp = 4 };

// Implicit-GEMM causal conv / linear / transposed-conv phase:
//   v[m][o] = bias[o] + sum_{tap, c} x[(m + tap * step) * ldx + c] * w[(tap * cin + c) * N + o]
// then v = act(v); v = res[m][o] + gamma[o] * v (when res; gamma may be null for 1); y = v; y2 = snake2(v).
// Phase z (gridDim.z = phases * splits; transposed convs) uses w + z * w_poff and writes y + z * y_poff
// (and y2 + z * y2_poff). glu: columns are interleaved (gate o, up o) pairs and y[m][o / 2] = silu(g) * u.
struct ConvGemmArgs {
    const float* x = nullptr;
    int64_t ldx = 0;
    int step = 1;  // rows between taps (the dilation)
    int cin = 0;
    int ntap = 1;
    const float* w = nullptr;  // [phases][ntap * cin][N]
    int64_t w_poff = 0;
    const float* bias = nullptr;  // [N] or null
    int M = 0, N = 0, K = 0;      // K = ntap * cin
    int phases = 1;
    int splits = 1;  // split-K pieces, fixed per layer (never chosen from M)
    int kchunk = 0;  // K per piece, a multiple of 16
    float* y = nullptr;
    int64_t ldy = 0, y_poff = 0;
    VocAct act = VocAct::none;
    const float* act_a = nullptr;  // snake: alpha [N]
    const float* act_b = nullptr;  // snake: 1 / (beta + 1e-9) [N]
    const float* res = nullptr;
    int64_t ldres = 0;
    const float* gamma = nullptr;
    float* y2 = nullptr;
    int64_t ldy2 = 0, y2_poff = 0;
    const float* y2_a = nullptr;
    const float* y2_b = nullptr;
    float* workspace = nullptr;  // splits > 1: [phases * splits][M][N] partial sums
    unsigned* counters = nullptr;  // splits > 1: one per output tile, zero between launches
    bool vec_a = false;  // cin % 16 == 0, ldx % 4 == 0, x 16-byte aligned
    bool vec_b = false;  // N % 4 == 0, w 16-byte aligned
};
// Tile rows of the launch (32 or 64); a pure performance choice (results do not depend on it).
void launch_conv_gemm(const ConvGemmArgs& args, int tile_rows, cudaStream_t stream);
// Output tiles of a launch, for sizing `counters`.
int64_t conv_gemm_tiles(int M, int N, int phases, int tile_rows);

// x [n][2 * vq]: codebook 0's row, then the sum of codebooks 1..G-1 (in order) for each frame's codes [n][G].
void launch_voc_gather(const int32_t* codes, const float* codebooks, int n, int G, int codebook_size, int vq,
                       float* x, cudaStream_t stream);
// RMSNorm of each row: y = w * (x / sqrt(mean(x^2) + eps)).
void launch_voc_rms_norm(const float* x, const float* w, float* y, int n, int ch, float eps, cudaStream_t stream);
// Rotate-half RoPE at positions *pos0 + i on q (in place in qkv [n][q_dim + 2 kv_dim]), and the new keys (roped)
// and values into rows hist .. hist + n - 1 of the key / value windows [hist + n][kv_dim]. pos0 is a device
// scalar (read when the kernel runs), so one captured CUDA graph serves every position.
void launch_voc_rope_kv(float* qkv, int n, int n_head, int n_kv_head, int head_dim, const float* inv_freq,
                        const int64_t* pos0, float* keys, float* values, int hist, cudaStream_t stream);
// Sliding-window attention: query i (position *pos0 + i) against window rows j (position *pos0 - hist + j),
// i + hist - window < j <= i + hist and position >= 0. out [n][n_head * head_dim]; pos0 on the device.
void launch_voc_attention(const float* qkv, const float* keys, const float* values, int n, int n_head, int n_kv_head,
                          int head_dim, int hist, int window, const int64_t* pos0, float* out, cudaStream_t stream);
// ConvNeXt front: y[t] = LayerNorm(depthwise causal conv of x rows t .. t + k - 1), x [n + k - 1][ch].
void launch_voc_dwconv_layernorm(const float* x, const float* dw_w, const float* dw_b, int k, const float* ln_w,
                                 const float* ln_b, float eps, float* y, int n, int ch, cudaStream_t stream);

// Carries causal histories between chunks: dst[i] = src[i] for each piece, in one launch.
constexpr int kVocMaxCopies = 64;
struct VocCopies {
    const float* src[kVocMaxCopies];
    float* dst[kVocMaxCopies];
    int64_t count[kVocMaxCopies];
    int n = 0;
};
void launch_voc_copies(const VocCopies& copies, cudaStream_t stream);

}  // namespace qtts::cuda
