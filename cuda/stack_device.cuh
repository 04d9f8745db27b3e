// Device building blocks shared by the decode megakernels and the prefill kernels: bf16 weight loads, warp
// and block reductions (fixed order, so every CTA computes bit-identical values from identical inputs),
// the CTA-local matvec over a contiguous row range, per-head RMSNorm + RoPE, and block-wide attention of one
// query over a key range with an online softmax. Include only from .cu files.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "cuda/stack_kernels.h"

namespace qtts::cuda::dev {

constexpr int kWarps = kMegaThreads / 32;
constexpr int kUnroll = 8;                 // 16-byte weight loads per lane in flight per matvec task
constexpr int kDimsPerLane = kMaxHeadDim / 32;
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
__device__ __forceinline__ float bf16_at(const uint16_t* p, int i) { return __uint_as_float(uint32_t(p[i]) << 16); }

// Weights never change during a launch: read-only path, no L1 allocation (each byte is used once per step).
// volatile: the load must be issued where it is written (before a grid barrier), not sunk to its first use.
__device__ __forceinline__ uint4 ld_weight(const uint4* p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
        : "l"(p));
    return r;
}

// Eight bf16 weights times eight fp32 activations (xa: elements 0..3, xb: 4..7), accumulated into acc.
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b, float acc) {
    acc = fmaf(bf16_lo(w.x), a.x, acc);
    acc = fmaf(bf16_hi(w.x), a.y, acc);
    acc = fmaf(bf16_lo(w.y), a.z, acc);
    acc = fmaf(bf16_hi(w.y), a.w, acc);
    acc = fmaf(bf16_lo(w.z), b.x, acc);
    acc = fmaf(bf16_hi(w.z), b.y, acc);
    acc = fmaf(bf16_lo(w.w), b.z, acc);
    acc = fmaf(bf16_hi(w.w), b.w, acc);
    return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

// Sum over the block; every thread gets the same value (warp partials summed in warp order). red: [kWarps].
__device__ __forceinline__ float block_sum(float v, float* red) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int w = 0; w < kWarps; ++w) r += red[w];
    __syncthreads();
    return r;
}
__device__ __forceinline__ float block_max(float v, float* red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int w = 1; w < kWarps; ++w) r = fmaxf(r, red[w]);
    __syncthreads();
    return r;
}

// Activation vectors in shared memory are stored permuted so that lane-consecutive 16-byte weight chunks
// read conflict-free float4s: xa[c] = x[8c .. 8c+3] at [0, K/2), xb[c] = x[8c+4 .. 8c+7] at [K/2, K).
__device__ __forceinline__ int perm_index(int i, int K) {
    const int c = i >> 3, r = i & 7;
    return r < 4 ? c * 4 + r : (K >> 1) + c * 4 + (r - 4);
}

// A vector input that is either fp32 (written in this or an earlier launch: read through L2) or bf16.
struct VecIn {
    const float* f = nullptr;
    const uint16_t* b = nullptr;
    __device__ __forceinline__ float operator()(int i) const { return f ? __ldcg(f + i) : bf16_at(b, i); }
};

// xs (permuted) = w ⊙ x / sqrt(mean(x²) + eps); optionally also the natural-order result into `out`.
// Reads x once (E <= kMaxNormPerThread * blockDim values are kept in registers).
constexpr int kMaxNormPerThread = 4;  // n_embd <= 4 * kMegaThreads (checked at construction)
__device__ __forceinline__ void norm_to_perm(VecIn in, const float* w, int E, float eps, float* xs, float* red,
                                             float* out = nullptr) {
    float v[kMaxNormPerThread], wv[kMaxNormPerThread];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxNormPerThread; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        v[k] = i < E ? in(i) : 0.0f;
        wv[k] = i < E ? w[i] : 0.0f;
        ss = fmaf(v[k], v[k], ss);
    }
    ss = block_sum(ss, red);
    const float inv = 1.0f / sqrtf(ss / float(E) + eps);
#pragma unroll
    for (int k = 0; k < kMaxNormPerThread; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < E) {
            const float y = wv[k] * (v[k] * inv);
            xs[perm_index(i, E)] = y;
            if (out) out[i] = y;
        }
    }
    __syncthreads();
}

// xs (permuted) = x; all loads of a thread are issued before the first store (one round trip to L2).
__device__ __forceinline__ void load_to_perm(VecIn in, int K, float* xs) {
    constexpr int kBatch = 8;
    for (int base = 0; base < K; base += kBatch * blockDim.x) {
        float v[kBatch];
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + threadIdx.x + k * blockDim.x;
            v[k] = i < K ? in(i) : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + threadIdx.x + k * blockDim.x;
            if (i < K) xs[perm_index(i, K)] = v[k];
        }
    }
    __syncthreads();
}

// Rows of one matvec phase for this CTA: row i is a + i·K for i < n_a, else b + (i - n_a)·K (gate and up
// rows of the same range form one 2n-row phase). All rows are K bf16 values, K % 8 == 0.
struct RowSrc {
    const uint16_t* a = nullptr;
    const uint16_t* b = nullptr;
    int n_a = 0, n = 0, K = 0;
    __device__ __forceinline__ const uint16_t* row(int i) const {
        return i < n_a ? a + size_t(i) * K : b + size_t(i - n_a) * K;
    }
};

// Work split: each row is cut into s segments; warp w owns tasks w, w + kWarps, ... (task = row·s + seg).
// Fast path: at most kMaxT tasks per warp and kMaxL 16-byte chunks per lane per task, so a warp's whole share
// of the phase fits in registers and can be loaded before the grid barrier that precedes the phase.
constexpr int kMaxT = 3, kMaxL = 4;

struct MatvecPlan {
    int s = 1;
    bool fast = false;
};

__device__ __forceinline__ MatvecPlan plan_matvec(int n, int K) {
    const int cpr = K >> 3;
    MatvecPlan p;
    int best = 1 << 30;
    const int cands[6] = {1, 2, 3, 4, 6, 8};
    for (int q = 0; q < 6; ++q) {
        const int s = cands[q], seg = (cpr + s - 1) / s;
        if (s > 1 && seg < 16) break;
        const int T = (n * s + kWarps - 1) / kWarps, L = (seg + 31) / 32;
        if (T <= kMaxT && L <= kMaxL && T * L < best) best = T * L, p.s = s, p.fast = true;
    }
    if (!p.fast) {  // streaming fallback: balance tasks only
        long long bc = 1ll << 60;
        for (int s = 1; s <= 4; s *= 2) {
            if (s > 1 && cpr / s < 16) break;
            const long long cost = (long long)((n * s + kWarps - 1) / kWarps) * ((cpr + s - 1) / s);
            if (cost < bc) bc = cost, p.s = s;
        }
    }
    return p;
}

struct WeightRegs {
    uint4 w[kMaxT][kMaxL];
};

// Issues this warp's weight loads of the phase (fast path); returns the plan. Cheap when n == 0.
__device__ __forceinline__ MatvecPlan matvec_preload(const RowSrc& src, WeightRegs& r) {
    const MatvecPlan p = plan_matvec(src.n, src.K);
    if (!p.fast) return p;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, cpr = src.K >> 3, tasks = src.n * p.s;
#pragma unroll
    for (int i = 0; i < kMaxT; ++i) {
        const int t = warp + i * kWarps;
        const int row = t / p.s, seg = t - row * p.s;
        const int c0 = cpr * seg / p.s, c1 = cpr * (seg + 1) / p.s;
        const uint4* w = t < tasks ? reinterpret_cast<const uint4*>(src.row(row)) : nullptr;
#pragma unroll
        for (int j = 0; j < kMaxL; ++j) {
            const int c = c0 + lane + 32 * j;
            r.w[i][j] = (t < tasks && c < c1) ? ld_weight(w + c) : make_uint4(0, 0, 0, 0);
        }
    }
    return p;
}

// res[i] = part[i·s] + ... + part[i·s + s - 1] (segment order), then a block sync. Call after the block sync
// that ends the writes of part.
__device__ __forceinline__ void sum_segments(const float* part, int n, int s, float* res) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = 0.0f;
        for (int g = 0; g < s; ++g) v += part[i * s + g];
        res[i] = v;
    }
    __syncthreads();
}

// res[c][i] = row(i) · x_c for i in [0, n) and each of C activation columns (x_c permuted in shared memory);
// every weight is read once and dotted with all columns. Uses the preloaded registers on the fast path,
// streams otherwise. part[c]: [n·8] scratch. Deterministic (fixed task → warp map, ordered partial sums), and
// each column's arithmetic is the same whatever C is.
template <int C>
__device__ __forceinline__ void matvec_finish_cols(const RowSrc& src, const MatvecPlan& p, const WeightRegs& r,
                                                   const float* const (&xs)[C], float* const (&part)[C],
                                                   float* const (&res)[C]) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n = src.n, K = src.K, cpr = K >> 3;
    const float4* xa[C];
    const float4* xb[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {
        xa[c] = reinterpret_cast<const float4*>(xs[c]);
        xb[c] = xa[c] + cpr;
    }
    const int s = p.s, tasks = n * s;
    if (p.fast) {
#pragma unroll
        for (int i = 0; i < kMaxT; ++i) {
            const int t = warp + i * kWarps;
            if (t < tasks) {
                const int row = t / s, seg = t - row * s;
                const int c0 = cpr * seg / s, c1 = cpr * (seg + 1) / s;
                float acc[C] = {};
#pragma unroll
                for (int j = 0; j < kMaxL; ++j) {
                    const int c = c0 + lane + 32 * j;
                    if (c < c1) {
#pragma unroll
                        for (int q = 0; q < C; ++q) acc[q] = dot8(r.w[i][j], xa[q][c], xb[q][c], acc[q]);
                    }
                }
#pragma unroll
                for (int q = 0; q < C; ++q) {
                    acc[q] = warp_sum(acc[q]);
                    if (lane == 0) part[q][t] = acc[q];
                }
            }
        }
    } else {
        for (int t = warp; t < tasks; t += kWarps) {
            const int row = t / s, seg = t - row * s;
            const int c0 = cpr * seg / s, c1 = cpr * (seg + 1) / s;
            const uint4* w = reinterpret_cast<const uint4*>(src.row(row));
            float acc[C] = {};
            for (int cb = c0; cb < c1; cb += 32 * kUnroll) {
                uint4 wv[kUnroll];
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int c = cb + u * 32 + lane;
                    wv[u] = c < c1 ? ld_weight(w + c) : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int u = 0; u < kUnroll; ++u) {
                    const int c = cb + u * 32 + lane;
                    if (c < c1) {
#pragma unroll
                        for (int q = 0; q < C; ++q) acc[q] = dot8(wv[u], xa[q][c], xb[q][c], acc[q]);
                    }
                }
            }
#pragma unroll
            for (int q = 0; q < C; ++q) {
                acc[q] = warp_sum(acc[q]);
                if (lane == 0) part[q][t] = acc[q];
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < C; ++q) sum_segments(part[q], n, s, res[q]);
}

__device__ __forceinline__ void matvec_finish(const RowSrc& src, const MatvecPlan& p, const WeightRegs& r,
                                              const float* xs, float* part, float* res) {
    const float* const x[1] = {xs};
    float* const pt[1] = {part};
    float* const out[1] = {res};
    matvec_finish_cols<1>(src, p, r, x, pt, out);
}

// This CTA's contiguous share [r0, r1) of R rows.
__device__ __forceinline__ void cta_rows(int R, int cta, int n_cta, int& r0, int& r1) {
    r0 = int((long long)R * cta / n_cta);
    r1 = int((long long)R * (cta + 1) / n_cta);
}

// Asks the copy engine to pull [p, p + bytes) into L2 without waiting (sm_90; a no-op before Hopper).
__device__ __forceinline__ void prefetch_l2(const void* p, size_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr size_t kPiece = 32768;
    const char* c = static_cast<const char*>(p);
    const size_t pieces = (bytes + kPiece - 1) / kPiece;
    for (size_t i = threadIdx.x; i < pieces; i += blockDim.x) {
        const size_t off = i * kPiece;
        const uint32_t sz = uint32_t(min(kPiece, bytes - off)) & ~15u;
        if (sz) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(c + off), "r"(sz) : "memory");
    }
#else
    (void)p, (void)bytes;
#endif
}
__device__ __forceinline__ void prefetch_rows(const uint16_t* w, int R, int K, int cta, int n_cta) {
    int r0, r1;
    cta_rows(R, cta, n_cta, r0, r1);
    if (r1 > r0) prefetch_l2(w + size_t(r0) * K, size_t(r1 - r0) * K * 2);
}

// Per-lane operands of one head's RMSNorm + RoPE (norm weights, cos/sin of the position), loaded early.
struct NormRopeRegs {
    float w[kMaxHeadDim / 32], c[kMaxHeadDim / 64 + 1], s[kMaxHeadDim / 64 + 1];
};
__device__ __forceinline__ void norm_rope_load(NormRopeRegs& r, const float* w, int hd, const float* cs,
                                               const float* sn) {
    const int lane = threadIdx.x & 31, half = hd >> 1;
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 32; ++i) r.w[i] = lane + 32 * i < hd ? w[lane + 32 * i] : 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 64 + 1; ++i) {
        r.c[i] = lane + 32 * i < half ? cs[lane + 32 * i] : 0.0f;
        r.s[i] = lane + 32 * i < half ? sn[lane + 32 * i] : 0.0f;
    }
}
// One warp: v (shared, [hd]) = RoPE(w ⊙ v / rms(v)), rotate-half pairing (d, d + hd/2).
__device__ __forceinline__ void norm_rope_apply(float* v, const NormRopeRegs& r, int hd, float eps) {
    const int lane = threadIdx.x & 31, half = hd >> 1;
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32) ss = fmaf(v[d], v[d], ss);
    ss = warp_sum(ss);
    const float inv = 1.0f / sqrtf(ss / float(hd) + eps);
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 32; ++i)
        if (lane + 32 * i < hd) v[lane + 32 * i] = r.w[i] * (v[lane + 32 * i] * inv);
    __syncwarp();
#pragma unroll
    for (int i = 0; i < kMaxHeadDim / 64 + 1; ++i) {
        const int j = lane + 32 * i;
        if (j >= half) continue;
        const float x1 = v[j], x2 = v[j + half], c = r.c[i], s = r.s[i];
        v[j] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
        v[j + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
    }
    __syncwarp();
}
__device__ __forceinline__ void norm_rope_warp(float* v, const float* w, int hd, float eps, const float* cs,
                                               const float* sn) {
    NormRopeRegs r;
    norm_rope_load(r, w, hd, cs, sn);
    norm_rope_apply(v, r, hd, eps);
}

// K/V rows of the first key a warp handles (j0 + warp), loaded before the query is ready.
struct KeyRegs {
    float k[kDimsPerLane], v[kDimsPerLane];
    int j = -1;
};

__device__ __forceinline__ void attend_preload(const float* kbase, const float* vbase, int stride, int hd, int j0,
                                               int j1, int jnew, KeyRegs& r) {
    const int lane = threadIdx.x & 31, j = j0 + (threadIdx.x >> 5);
    r.j = (j < j1 && j != jnew) ? j : -1;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        const bool ok = r.j >= 0 && d < hd;
        r.k[i] = ok ? kbase[size_t(j) * stride + d] : 0.0f;
        r.v[i] = ok ? vbase[size_t(j) * stride + d] : 0.0f;
    }
}

// Block-wide attention of one query q (shared, [hd]) over keys [j0, j1) at rows kbase + j * stride (fp32),
// except key `jnew` which is read from knew / vnew (shared). Writes (max, sum, acc[hd]) unnormalized to out.
// pre: this warp's first key, from attend_preload (or pre.j = -1). wbuf: shared [kWarps][2 + hd].
__device__ __forceinline__ void attend_block(const float* q, int hd, float scale, const float* kbase,
                                             const float* vbase, int stride, int j0, int j1, int jnew,
                                             const float* knew, const float* vnew, float* wbuf, float* out,
                                             const KeyRegs& pre, float* gout = nullptr) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float qr[kDimsPerLane], acc[kDimsPerLane];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        qr[i] = d < hd ? q[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = j0 + warp; j < j1; j += kWarps) {
        float kv[kDimsPerLane], vv[kDimsPerLane];
        const bool first = j == pre.j;
        const float* kr = j == jnew ? knew : kbase + size_t(j) * stride;
        const float* vr = j == jnew ? vnew : vbase + size_t(j) * stride;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + 32 * i;
            kv[i] = first ? pre.k[i] : (d < hd ? kr[d] : 0.0f);
            vv[i] = first ? pre.v[i] : (d < hd ? vr[d] : 0.0f);
        }
        float sc = 0.0f;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) sc = fmaf(qr[i], kv[i], sc);
        sc = warp_sum(sc) * scale;
        const float mn = fmaxf(m, sc);
        const float corr = expf(m - mn), p = expf(sc - mn);
        l = l * corr + p;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) acc[i] = fmaf(p, vv[i], acc[i] * corr);
        m = mn;
    }
    float* wb = wbuf + warp * (2 + hd);
    if (lane == 0) wb[0] = m, wb[1] = l;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) wb[2 + d] = acc[i];
    }
    __syncthreads();
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float M = -INFINITY;
        for (int w = 0; w < kWarps; ++w) M = fmaxf(M, wbuf[w * (2 + hd)]);
        float L = 0.0f, a = 0.0f;
        for (int w = 0; w < kWarps; ++w) {
            const float mw = wbuf[w * (2 + hd)];
            const float g = mw == -INFINITY ? 0.0f : expf(mw - M);
            L = fmaf(wbuf[w * (2 + hd) + 1], g, L);
            a = fmaf(wbuf[w * (2 + hd) + 2 + d], g, a);
        }
        if (d == 0) out[0] = M, out[1] = L;
        out[2 + d] = a;
        if (gout) {
            if (d == 0) __stcg(gout, M), __stcg(gout + 1, L);
            __stcg(gout + 2 + d, a);
        }
    }
    __syncthreads();
}

}  // namespace qtts::cuda::dev
