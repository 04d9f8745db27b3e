#include "core/ops.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qtts::ops {

float dot(const float* a, const float* b, int64_t n) {
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
    return acc;
}

void linear(const Tensor& w, const Tensor* bias, const float* x, int64_t n, float* y) {
    QTTS_CHECK(w.rank() == 2, "linear weight must be rank 2, got {}", shape_str(w.shape));
    const int64_t out = w.dim(0), in = w.dim(1);
    const float* b = bias ? bias->ptr() : nullptr;
#pragma omp parallel for schedule(static) if (out * in * n >= (int64_t(1) << 20))
    for (int64_t o = 0; o < out; ++o) {
        const float* row = w.row(o);
        for (int64_t t = 0; t < n; ++t) y[t * out + o] = dot(row, x + t * in, in) + (b ? b[o] : 0.0f);
    }
}

void rms_norm(const float* x, const float* w, int64_t n, double eps, float* y) {
    float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
    for (int64_t i = 0; i < n; ++i) sum_sq += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(sum_sq / float(n) + float(eps));
    for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

float silu(float x) { return x / (1.0f + std::exp(-x)); }

void softmax(float* x, int64_t n) {
    const float mx = *std::max_element(x, x + n);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - mx);
        sum += x[i];
    }
    const float inv = 1.0f / sum;
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

Rope::Rope(int64_t head_dim, double theta) : head_dim_(head_dim), inv_freq_(size_t(head_dim / 2)) {
    // Same fp32 formula as the reference: 1 / theta^(2j / d).
    for (int64_t j = 0; j < head_dim / 2; ++j)
        inv_freq_[size_t(j)] = 1.0f / std::pow(float(theta), float(2 * j) / float(head_dim));
}

void Rope::apply(float* x, int64_t pos) const {
    const int64_t half = head_dim_ / 2;
    for (int64_t j = 0; j < half; ++j) {
        const float angle = float(pos) * inv_freq_[size_t(j)];
        const float c = std::cos(angle), s = std::sin(angle);
        const float x1 = x[j], x2 = x[j + half];
        x[j] = x1 * c - x2 * s;
        x[j + half] = x2 * c + x1 * s;
    }
}

}  // namespace qtts::ops
