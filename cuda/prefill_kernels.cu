// Batched prefill of a decoder stack over n positions: a tiled fp32-accumulating GEMM against bf16 weights
// (each weight tile read once per 32 positions), row RMSNorm, per-head q/k norm + RoPE + KV append, causal
// attention over the cache, and SiLU·up. Same math and KV layout as the decode megakernel.
#include "cuda/cuda_check.h"
#include "cuda/stack_device.cuh"
#include "cuda/stack_kernels.h"

namespace qtts::cuda {

namespace {

using namespace dev;

constexpr int kGemmRows = 32;     // weight rows per block
constexpr int kGemmPos = 32;      // positions per block
constexpr int kGemmK = 64;        // reduction tile
constexpr int kGemmThreads = 128; // thread = one weight row × 8 positions

// Partial products of one K range: y_part[t][r] = Σ_{k in range} x[t][k] · W[r][k]. The next tile's global
// loads are issued before the current tile is consumed (register double buffering). With split-K the
// partials go to `part` [splits][n][R] and gemm_reduce_kernel adds them in split order (deterministic).
__global__ void __launch_bounds__(kGemmThreads) gemm_bf16_kernel(const GemmArgs a, int k_per_split, float* part) {
    __shared__ float ws[kGemmRows][kGemmK + 1];
    __shared__ float xs[kGemmPos][kGemmK + 1];
    const int r_base = blockIdx.x * kGemmRows, t_base = blockIdx.y * kGemmPos;
    const int r = threadIdx.x % kGemmRows, tg = threadIdx.x / kGemmRows;  // tg: 0..3 → positions tg*8 .. +7
    const int k_begin = blockIdx.z * k_per_split, k_end = min(a.K, k_begin + k_per_split);
    constexpr int kWChunks = kGemmRows * kGemmK / 8 / kGemmThreads;  // 2 × 16 bytes of weights per thread
    constexpr int kXVals = kGemmPos * kGemmK / kGemmThreads;         // 16 activations per thread
    uint4 wreg[kWChunks];
    float xreg[kXVals];
    const auto load = [&](int k0) {
#pragma unroll
        for (int q = 0; q < kWChunks; ++q) {
            const int c = threadIdx.x + q * kGemmThreads;
            const int rr = c / (kGemmK / 8), kk = (c % (kGemmK / 8)) * 8;
            const int gr = r_base + rr, gk = k0 + kk;
            wreg[q] = gr < a.R && gk < k_end ? ld_weight(reinterpret_cast<const uint4*>(a.w + size_t(gr) * a.K + gk))
                                             : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int q = 0; q < kXVals; ++q) {
            const int c = threadIdx.x + q * kGemmThreads;
            const int tt = c / kGemmK, kk = c % kGemmK;
            const int gt = t_base + tt, gk = k0 + kk;
            xreg[q] = gt < a.n && gk < k_end ? a.x[size_t(gt) * a.ldx + gk] : 0.0f;
        }
    };
    float acc[8] = {};
    load(k_begin);
    for (int k0 = k_begin; k0 < k_end; k0 += kGemmK) {
#pragma unroll
        for (int q = 0; q < kWChunks; ++q) {
            const int c = threadIdx.x + q * kGemmThreads;
            const int rr = c / (kGemmK / 8), kk = (c % (kGemmK / 8)) * 8;
            const uint4 w = wreg[q];
            ws[rr][kk + 0] = bf16_lo(w.x), ws[rr][kk + 1] = bf16_hi(w.x);
            ws[rr][kk + 2] = bf16_lo(w.y), ws[rr][kk + 3] = bf16_hi(w.y);
            ws[rr][kk + 4] = bf16_lo(w.z), ws[rr][kk + 5] = bf16_hi(w.z);
            ws[rr][kk + 6] = bf16_lo(w.w), ws[rr][kk + 7] = bf16_hi(w.w);
        }
#pragma unroll
        for (int q = 0; q < kXVals; ++q) {
            const int c = threadIdx.x + q * kGemmThreads;
            xs[c / kGemmK][c % kGemmK] = xreg[q];
        }
        __syncthreads();
        if (k0 + kGemmK < k_end) load(k0 + kGemmK);
#pragma unroll 8
        for (int kk = 0; kk < kGemmK; ++kk) {
            const float w = ws[r][kk];
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[j] = fmaf(w, xs[tg * 8 + j][kk], acc[j]);
        }
        __syncthreads();
    }
    const int gr = r_base + r;
    if (gr >= a.R) return;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const int gt = t_base + tg * 8 + j;
        if (gt >= a.n) continue;
        if (part) {
            part[(size_t(blockIdx.z) * a.n + gt) * a.R + gr] = acc[j];
        } else {
            float* y = a.y + size_t(gt) * a.ldy + gr;
            *y = a.accumulate ? __fadd_rn(*y, acc[j]) : acc[j];
        }
    }
}

__global__ void gemm_reduce_kernel(const GemmArgs a, int splits, const float* part) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.n * a.R) return;
    const int t = i / a.R, r = i - t * a.R;
    float v = 0.0f;
    for (int z = 0; z < splits; ++z) v += part[(size_t(z) * a.n + t) * a.R + r];
    float* y = a.y + size_t(t) * a.ldy + r;
    *y = a.accumulate ? __fadd_rn(*y, v) : v;
}

__global__ void __launch_bounds__(kMegaThreads) rms_norm_rows_kernel(const float* x, int ldx, const float* w, float* y,
                                                                     int ldy, int E, float eps) {
    __shared__ float red[kWarps];
    const float* xr = x + size_t(blockIdx.x) * ldx;
    float* yr = y + size_t(blockIdx.x) * ldy;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < E; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / float(E) + eps);
    for (int i = threadIdx.x; i < E; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv);
}

// grid (n, n_head + n_kv_head), one warp per head vector.
__global__ void qk_norm_rope_append_kernel(const __grid_constant__ StackDev st, int layer, float* qkv, int pos0) {
    extern __shared__ float v[];
    const int t = blockIdx.x, hh = blockIdx.y, hd = st.head_dim, half = hd / 2;
    const int q_dim = st.q_dim(), kv_dim = st.kv_dim(), width = q_dim + 2 * kv_dim, pos = pos0 + t;
    const LayerDev& L = st.layers[layer];
    const bool is_q = hh < st.n_head;
    float* src = qkv + size_t(t) * width + (is_q ? hh * hd : q_dim + (hh - st.n_head) * hd);
    for (int d = threadIdx.x; d < hd; d += 32) v[d] = src[d];
    __syncwarp();
    norm_rope_warp(v, is_q ? L.q_norm : L.k_norm, hd, st.eps, st.rope_cos + size_t(pos) * half,
                   st.rope_sin + size_t(pos) * half);
    for (int d = threadIdx.x; d < hd; d += 32) src[d] = v[d];
    if (!is_q) {
        const int kvh = hh - st.n_head;
        const size_t slot = (size_t(layer) * st.capacity + pos) * kv_dim + kvh * hd;
        const float* vsrc = qkv + size_t(t) * width + q_dim + kv_dim + kvh * hd;
        for (int d = threadIdx.x; d < hd; d += 32) {
            st.k_cache[slot + d] = v[d];
            st.v_cache[slot + d] = vsrc[d];
        }
    }
}

// grid (n, n_head), kMegaThreads threads: query (t, h) over keys 0 .. pos0 + t.
__global__ void __launch_bounds__(kMegaThreads)
    attention_prefill_kernel(const __grid_constant__ StackDev st, int layer, const float* qkv, int pos0, float* out) {
    extern __shared__ float sh[];
    const int t = blockIdx.x, h = blockIdx.y, hd = st.head_dim;
    const int q_dim = st.q_dim(), kv_dim = st.kv_dim(), width = q_dim + 2 * kv_dim;
    const int kvh = h / (st.n_head / st.n_kv_head);
    float* q = sh;                 // [hd]
    float* res = sh + hd;          // [2 + hd]
    float* wbuf = res + 2 + hd;    // [kWarps][2 + hd]
    for (int d = threadIdx.x; d < hd; d += blockDim.x) q[d] = qkv[size_t(t) * width + h * hd + d];
    __syncthreads();
    const float* kc = st.k_cache + size_t(layer) * st.capacity * kv_dim + kvh * hd;
    const float* vc = st.v_cache + size_t(layer) * st.capacity * kv_dim + kvh * hd;
    KeyRegs pre;
    attend_preload(kc, vc, kv_dim, hd, 0, pos0 + t + 1, -1, pre);
    attend_block(q, hd, 1.0f / sqrtf(float(hd)), kc, vc, kv_dim, 0, pos0 + t + 1, -1, nullptr, nullptr, wbuf, res, pre);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) out[size_t(t) * q_dim + h * hd + d] = res[2 + d] / res[1];
}

__global__ void silu_mul_kernel(const float* gate, const float* up, float* act, int count) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        const float g = gate[i];
        act[i] = __fmul_rn(g / (1.0f + expf(-g)), up[i]);
    }
}

}  // namespace

void launch_gemm_bf16(const GemmArgs& a, cudaStream_t stream) {
    if (a.n <= 0 || a.R <= 0) return;
    static int n_sm = [] {
        int dev = 0, n = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        return n > 0 ? n : 1;
    }();
    const int bx = (a.R + kGemmRows - 1) / kGemmRows, by = (a.n + kGemmPos - 1) / kGemmPos;
    // Split K until there are about four blocks per SM (each split keeps >= 4 K tiles).
    int splits = 1;
    while (bx * by * splits < 4 * n_sm && a.K / (splits * 2) >= 4 * kGemmK) splits *= 2;
    int k_per_split = 0;
    const auto fit = [&] {
        k_per_split = (a.K / splits + kGemmK - 1) / kGemmK * kGemmK;
        splits = (a.K + k_per_split - 1) / k_per_split;
    };
    fit();
    while (splits > 1 && size_t(splits) * a.n * a.R > a.part_cap) --splits, fit();
    float* part = splits > 1 ? a.part : nullptr;
    gemm_bf16_kernel<<<dim3(bx, by, splits), kGemmThreads, 0, stream>>>(a, k_per_split, part);
    QTTS_CUDA_CHECK(cudaGetLastError());
    if (splits > 1) {
        const int total = a.n * a.R;
        gemm_reduce_kernel<<<(total + 255) / 256, 256, 0, stream>>>(a, splits, part);
        QTTS_CUDA_CHECK(cudaGetLastError());
    }
}

void launch_rms_norm_rows(const float* x, int ldx, const float* w, float* y, int ldy, int n, int E, float eps,
                          cudaStream_t stream) {
    if (n <= 0) return;
    rms_norm_rows_kernel<<<n, kMegaThreads, 0, stream>>>(x, ldx, w, y, ldy, E, eps);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_qk_norm_rope_append(const StackDev& st, int layer, float* qkv, int n, int pos0, cudaStream_t stream) {
    if (n <= 0) return;
    const dim3 grid(n, st.n_head + st.n_kv_head);
    qk_norm_rope_append_kernel<<<grid, 32, size_t(st.head_dim) * 4, stream>>>(st, layer, qkv, pos0);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_attention_prefill(const StackDev& st, int layer, const float* qkv, int n, int pos0, float* out,
                              cudaStream_t stream) {
    if (n <= 0) return;
    const dim3 grid(n, st.n_head);
    const size_t smem = size_t(st.head_dim + 2 + st.head_dim + kWarps * (2 + st.head_dim)) * 4;
    attention_prefill_kernel<<<grid, kMegaThreads, smem, stream>>>(st, layer, qkv, pos0, out);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_silu_mul(const float* gate, const float* up, float* act, int count, cudaStream_t stream) {
    if (count <= 0) return;
    silu_mul_kernel<<<(count + 255) / 256, 256, 0, stream>>>(gate, up, act, count);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

}  // namespace qtts::cuda
