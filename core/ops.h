// CPU reference kernels in fp32: the small set of operations the talker and code predictor are built from.
// Each is a plain loop meant to be read and trusted, vectorized with `omp simd` and parallelized over
// output rows with OpenMP; the GPU kernels are checked against these.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace qtts::ops {

// y[n, out] = x[n, in] · Wᵀ (+ bias) for a Linear weight W [out, in].
void linear(const Tensor& w, const Tensor* bias, const float* x, int64_t n, float* y);
float dot(const float* a, const float* b, int64_t n);
// y = w ⊙ x / sqrt(mean(x²) + eps) over `n` elements (fp32 statistics, as the reference).
void rms_norm(const float* x, const float* w, int64_t n, double eps, float* y);
float silu(float x);
// In place softmax over n values; returns nothing, values sum to 1.
void softmax(float* x, int64_t n);

// Rotate-half rotary embedding over `head_dim` dims (pairs d and d + head_dim/2), fp32 tables.
class Rope {
public:
    Rope(int64_t head_dim, double theta);
    // Rotates one head vector in place for absolute position `pos`.
    void apply(float* x, int64_t pos) const;
    int64_t head_dim() const { return head_dim_; }

private:
    int64_t head_dim_;
    std::vector<float> inv_freq_;  // [head_dim / 2]
};

}  // namespace qtts::ops
