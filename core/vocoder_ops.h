// CPU kernels for the speech-tokenizer decoder (core/vocoder): one packed-weight "conv as GEMM" that serves
// every conv, transposed-conv phase and linear layer, plus the row-wise and element-wise ops between them.
// Activations are time-major: [rows, channels], channels contiguous. Invariant: every output element is
// computed by the same instruction sequence whatever the row count, tiling or thread count, so decoding a
// stream in chunks is bit-identical to one full pass.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace qtts::vocoder_ops {

// Output channels per packed panel (the GEMM micro-tile width).
inline constexpr int64_t kPanel = 16;

// y[t][o] = bias[o] + sum_tap sum_c x[t + tap * step][c] * w(tap, c, o), with w stored panel by panel so the
// inner loop reads it contiguously.
struct PackedWeight {
    int64_t n_tap = 0;
    int64_t n_in = 0;
    int64_t n_out = 0;
    std::vector<float> panels;  // [ceil(n_out / kPanel), n_tap, n_in, kPanel], zero past n_out
    std::vector<float> bias;    // [n_out], or empty for none
};

// `dense` is [n_tap, n_in, n_out]; `bias` is [n_out] or empty.
PackedWeight pack_dense(const std::vector<float>& dense, int64_t n_tap, int64_t n_in, int64_t n_out,
                        std::vector<float> bias);
// nn.Linear weight [out, in].
PackedWeight pack_linear(const Tensor& weight, const Tensor* bias);
// nn.Conv1d weight [out, in, k]; tap i multiplies the input `i * dilation` rows after the window start.
PackedWeight pack_conv(const Tensor& weight, const Tensor* bias);
// nn.ConvTranspose1d weight [in, out, k] with k == stride or k == 2 * stride, split into `stride` phases:
// output row t * stride + j is phase j applied at input row t. With k == 2 * stride a phase has two taps,
// (input t - 1, kernel j + stride) then (input t, kernel j), so it reads one row of history before row t.
std::vector<PackedWeight> pack_transposed_conv(const Tensor& weight, const Tensor& bias, int64_t stride);

// Writes y[t * ld_y + o] for t in [0, rows), o in [0, n_out), as defined for PackedWeight, reading
// x[(t + tap * step) * ld_x + c]. Parallel over (row block, panel) tiles with OpenMP.
void conv_rows(const PackedWeight& w, const float* x, int64_t ld_x, int64_t step, int64_t rows, float* y,
               int64_t ld_y);

// SnakeBeta on x [rows, ch] in place: x + inv_beta * sin^2(x * alpha), with alpha = exp(log_alpha) and
// inv_beta = 1 / (exp(log_beta) + 1e-9) precomputed per channel.
void snake_beta(float* x, int64_t rows, int64_t ch, const float* alpha, const float* inv_beta);

// RMSNorm over each row of x [rows, ch]: y = w * x / sqrt(mean(x^2) + eps).
void rms_norm(const float* x, int64_t rows, int64_t ch, const float* w, float eps, float* y);
// LayerNorm over each row, biased variance: y = (x - mean) / sqrt(var + eps) * w + b.
void layer_norm(const float* x, int64_t rows, int64_t ch, const float* w, const float* b, float eps, float* y);

// Depthwise conv over time: y[t][c] = bias[c] + sum_i x[t + i][c] * w[i][c], t in [0, rows); x holds
// rows + k - 1 rows (the causal history first). `w` is [k, ch] (tap-major, the transpose of the checkpoint's).
void depthwise_conv(const float* x, int64_t rows, int64_t ch, const float* w, int64_t k, const float* bias,
                    float* y);

// Exact (erf) GELU and SiLU, in place.
void gelu(float* x, int64_t n);
void silu(float* x, int64_t n);

}  // namespace qtts::vocoder_ops
