// Device building blocks shared by the decode megakernels and the prefill kernels: bf16 weight loads, warp
// and block reductions (fixed order, so every CTA computes bit-identical values from identical inputs),
// activations split into bf16 parts and the tensor-core matvec over weight rows in shared memory, per-head
// RMSNorm + RoPE, and block-wide attention of one query over a key range with an online softmax. Include only
// from .cu files.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda/stack_kernels.h"

namespace qtts::cuda::dev {

constexpr int kWarps = kMegaThreads / 32;
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

__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// Threads that run the block-wide helpers: the whole block, except the weight-producer warp of the persistent
// kernels (threads kMegaThreads and up), which never takes part. Their block sync is named barrier 1.
__device__ __forceinline__ int work_threads() { return blockDim.x > kMegaThreads ? kMegaThreads : blockDim.x; }
__device__ __forceinline__ void work_sync() { asm volatile("bar.sync 1, %0;" ::"r"(work_threads()) : "memory"); }
// work_sync that also returns whether any thread passed p != 0 (every thread gets the same answer).
__device__ __forceinline__ bool work_sync_or(int p) {
    int r;
    asm volatile("{ .reg .pred a, b; setp.ne.s32 a, %1, 0; bar.red.or.pred b, 1, %2, a; selp.s32 %0, 1, 0, b; }"
                 : "=r"(r)
                 : "r"(p), "r"(work_threads())
                 : "memory");
    return r != 0;
}

// Sum over the block; every thread gets the same value (warp partials summed in warp order). red: [kWarps].
// sync_after = false leaves out the block sync that lets the next call rewrite `red`: for callers that sync
// before any later write to it.
__device__ __forceinline__ float block_sum(float v, float* red, bool sync_after = true) {
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    work_sync();
    float r = 0.0f;
    for (int w = 0; w < kWarps; ++w) r += red[w];
    if (sync_after) work_sync();
    return r;
}
__device__ __forceinline__ float block_max(float v, float* red) {
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    work_sync();
    float r = red[0];
    for (int w = 1; w < kWarps; ++w) r = fmaxf(r, red[w]);
    work_sync();
    return r;
}

// ---- values published between the phases of a persistent launch (no grid barriers) ----
// Each value carries the tag of the phase that wrote it: fp32 bits in the low word, the tag in the high word,
// written by one 64-bit relaxed store (single-copy atomic), so a reader that sees the tag sees the value. A
// reader polls until every value it needs carries the tag it expects (NCCL's low-latency protocol); no fence,
// no arrival counter, one L2 round trip from the last writer to the reader.
using Tagged = unsigned long long;

__device__ __forceinline__ void st_tagged(Tagged* p, float v, unsigned tag) {
    const Tagged x = (Tagged(tag) << 32) | __float_as_uint(v);
    asm volatile("st.relaxed.gpu.global.u64 [%0], %1;" ::"l"(p), "l"(x) : "memory");
}
__device__ __forceinline__ Tagged ld_tagged(const Tagged* p) {
    Tagged x;
    asm volatile("ld.relaxed.gpu.global.u64 %0, [%1];" : "=l"(x) : "l"(p) : "memory");
    return x;
}
__device__ __forceinline__ float tagged_value(Tagged x) { return __uint_as_float(unsigned(x)); }
__device__ __forceinline__ unsigned tag_of(Tagged x) { return unsigned(x >> 32); }

// Shared state of a CTA's polls: the watchdog (a poll that outlives timeout_ns sets *error, and every poll
// gives up once *error is set: the launch then ends with garbage values and the host reports the error),
// and the trace slot the next completed wait stamps (profiling).
struct PollCtl {
    int* error;
    unsigned long long timeout_ns;
    unsigned backoff_ns;               // sleep between retries (0: spin)
    volatile int fail;                 // this CTA gave up: leave at the next phase boundary
    unsigned long long* stamp;         // when set, thread 0 writes the time its wait completed and clears it
    // Trace: thread 0's SM cycles per segment of the current phase (kFineSegs; flushed at the phase end).
    int fine_on;
    unsigned long long fine_last, fine_acc[kFineSegs];
};

// Trace (built with QTTS_FINE_TRACE): thread 0 adds the cycles since its last mark to segment `seg` of the
// current phase.
__device__ __forceinline__ void fine_mark(PollCtl* c, int seg) {
#ifdef QTTS_FINE_TRACE
    if (c && threadIdx.x == 0 && c->fine_on) {
        const unsigned long long t = clock64();
        c->fine_acc[seg] += t - c->fine_last;
        c->fine_last = t;
    }
#else
    (void)c, (void)seg;
#endif
}

// Watchdog of a poll loop: true when this CTA must give up (its own timeout, or another CTA's).
static __device__ __noinline__ bool poll_expired(PollCtl* c, unsigned long long t0) {
    if (!c->fail && !*(volatile int*)c->error) {
        if (global_ns() - t0 <= c->timeout_ns) return false;
        atomicExch(c->error, 1);
    }
    c->fail = 1;
    return true;
}

// v[k] = the value at at(k) once it carries `tag` (at(k) null: v[k] = 0). All loads are issued before the first
// check and every retry reloads all values still missing, so a batch costs one round trip per retry, not one
// per value. Gives up with zeros when the watchdog fires. `at` is called again for each reload, so a caller can
// compute its addresses instead of keeping N pointers live.
template <int N, class At>
__device__ __forceinline__ void wait_gather(At at, unsigned tag, PollCtl* c, float (&v)[N]) {
    Tagged x[N];
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = at(k) ? ld_tagged(at(k)) : Tagged(tag) << 32;
    unsigned long long t0 = 0;
    for (unsigned spin = 0;; ++spin) {
        bool all = true;
#pragma unroll
        for (int k = 0; k < N; ++k) all &= tag_of(x[k]) == tag;
        if (all) break;
        if (spin == 0) t0 = global_ns();
        if ((spin & 63u) == 63u && poll_expired(c, t0)) {
#pragma unroll
            for (int k = 0; k < N; ++k) x[k] = Tagged(tag) << 32;
            break;
        }
        if (c->backoff_ns) __nanosleep(c->backoff_ns);
#pragma unroll
        for (int k = 0; k < N; ++k)
            if (tag_of(x[k]) != tag) x[k] = ld_tagged(at(k));
    }
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = tagged_value(x[k]);
}
template <int N>
__device__ __forceinline__ void wait_gather(const Tagged* const (&p)[N], unsigned tag, PollCtl* c, float (&v)[N]) {
    wait_gather<N>([&](int k) { return p[k]; }, tag, c, v);
}

// Thread 0 records when this CTA's wait for a phase's inputs completed (after the block sync that ends it).
__device__ __forceinline__ void poll_done(PollCtl* c) {
    fine_mark(c, kFineWait);
    if (c && threadIdx.x == 0 && c->stamp) {
        *c->stamp = global_ns();
        c->stamp = nullptr;
    }
}

// A vector input: fp32 written before the launch (read through L2), bf16 weights (an embedding row), or
// tagged values published by another phase of this launch.
struct VecIn {
    const float* f = nullptr;
    const uint16_t* b = nullptr;
    const Tagged* t = nullptr;
    unsigned tag = 0;        // the tag the tagged values must carry
    PollCtl* ctl = nullptr;  // the CTA's poll state (tagged inputs)
    // Value i without waiting: for launch inputs, and tagged values this CTA wrote itself (its residual rows).
    __device__ __forceinline__ float operator()(int i) const {
        return t ? tagged_value(ld_tagged(t + i)) : f ? __ldcg(f + i) : bf16_at(b, i);
    }
};

// v[k] = value i0 + k·step of `in` for indices below n (0 elsewhere); tagged values are polled together until
// each carries in.tag (wait_gather).
template <int N>
__device__ __forceinline__ void wait_values(const VecIn& in, int i0, int step, int n, float (&v)[N]) {
    if (!in.t) {
#pragma unroll
        for (int k = 0; k < N; ++k) v[k] = i0 + k * step < n ? in(i0 + k * step) : 0.0f;
        return;
    }
    const Tagged* p[N];
#pragma unroll
    for (int k = 0; k < N; ++k) p[k] = i0 + k * step < n ? in.t + i0 + k * step : nullptr;
    wait_gather(p, in.tag, in.ctl, v);
}

// ---- activation vectors for the tensor-core matvec ----
// An fp32 activation x is stored as three bf16 parts, x = x1 + x2 + x3 (exact to ~2^-27 relative), so bf16
// tensor-core products with fp32 accumulation give the fp32 dot product, more exactly than a sequential fp32
// FMA chain (worst 3-5e-8 of sum|w x| against fp64, see cuda/NOTES.md). Layout: xsp[part * S + k] (bf16
// bits) with S = split_stride(K); column c of a multi-column matvec starts at split_column(xsp, K, c). The 8
// elements of padding per part put the parts' rows in different banks for the matvec's ldmatrix.
QTTS_HD inline int split_stride(int K) { return K + 8; }
QTTS_HD inline uint16_t* split_column(uint16_t* xsp, int K, int c) { return xsp + 3 * c * split_stride(K); }
// One cvt.rn.bf16.f32 (round to nearest even, as the host's bf16 rounding; subnormals kept). The integer
// rounding it replaced was ~20 % of the instructions of every activation load (ncu, H100).
__device__ __forceinline__ uint16_t bf16_bits_rn(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
// v = h[0] + h[1] + h[2] (bf16 bits), each part the rounded rest of the ones before.
__device__ __forceinline__ void split3(float v, uint16_t (&h)[3]) {
    h[0] = bf16_bits_rn(v);
    const float r1 = v - __uint_as_float(uint32_t(h[0]) << 16);
    h[1] = bf16_bits_rn(r1);
    h[2] = bf16_bits_rn(r1 - __uint_as_float(uint32_t(h[1]) << 16));
}
__device__ __forceinline__ void store_split(uint16_t* xsp, int K, int k, float v) {
    uint16_t h[3];
    split3(v, h);
    const int S = split_stride(K);
    xsp[k] = h[0];
    xsp[S + k] = h[1];
    xsp[2 * S + k] = h[2];
}

// xsp = split(w ⊙ x / sqrt(mean(x²) + eps)); optionally also the natural-order fp32 result into `out`.
// Reads x once (E <= kMaxNormPerThread * kMegaThreads values are kept in registers; checked at construction).
__device__ __forceinline__ void norm_to_split(VecIn in, const float* w, int E, float eps, uint16_t* xsp, float* red,
                                              float* out = nullptr) {
    float v[kMaxNormPerThread], wv[kMaxNormPerThread];
#pragma unroll
    for (int k = 0; k < kMaxNormPerThread; ++k) {  // the weights first: their loads overlap the wait for x
        const int i = threadIdx.x + k * kMegaThreads;
        wv[k] = i < E ? __ldg(w + i) : 0.0f;
    }
    wait_values(in, threadIdx.x, kMegaThreads, E, v);
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < kMaxNormPerThread; ++k) ss = fmaf(v[k], v[k], ss);
    ss = block_sum(ss, red, false);  // the sync after the split stores below comes before any later use of red
    poll_done(in.ctl);
    const float inv = 1.0f / sqrtf(ss / float(E) + eps);
#pragma unroll
    for (int k = 0; k < kMaxNormPerThread; ++k) {
        const int i = threadIdx.x + k * kMegaThreads;
        if (i < E) {
            const float y = wv[k] * (v[k] * inv);
            store_split(xsp, E, i, y);
            if (out) out[i] = y;
        }
    }
    work_sync();
}

// xsp = split(x); all loads of a thread are issued before the first store (one round trip to L2).
__device__ __forceinline__ void load_to_split(VecIn in, int K, uint16_t* xsp) {
    constexpr int kBatch = 8;
    for (int base = 0; base < K; base += kBatch * kMegaThreads) {
        float v[kBatch];
        wait_values(in, base + threadIdx.x, kMegaThreads, K, v);
#pragma unroll
        for (int k = 0; k < kBatch; ++k) {
            const int i = base + threadIdx.x + k * kMegaThreads;
            if (i < K) store_split(xsp, K, i, v[k]);
        }
    }
    work_sync();
    poll_done(in.ctl);
}

// Rows of one matvec phase for this CTA: row i is a + i·K for i < n_a, else b + (i - n_a)·K (gate and up
// rows of the same range form one 2n-row phase). All rows are K bf16 values, K % 32 == 0.
struct RowSrc {
    const uint16_t* a = nullptr;
    const uint16_t* b = nullptr;
    int n_a = 0, n = 0, K = 0;
    int per = 0;  // rows per ring chunk when known (the consumers' row table), else 0: ring_chunk_rows computes it
    __device__ __forceinline__ const uint16_t* row(int i) const {
        return i < n_a ? a + size_t(i) * K : b + size_t(i - n_a) * K;
    }
};

// This CTA's contiguous share [r0, r1) of R rows.
// 32-bit unsigned arithmetic (R · n_cta < 2^32 for every matrix here; the 64-bit division it replaced is a
// ~70-instruction call, 4 % of a predictor frame's instructions).
__device__ __forceinline__ void cta_rows(int R, int cta, int n_cta, int& r0, int& r1) {
    r0 = int(unsigned(R) * unsigned(cta) / unsigned(n_cta));
    r1 = int(unsigned(R) * unsigned(cta + 1) / unsigned(n_cta));
}

// ---- tensor-core matvec over weight rows in shared memory ----
// Rows sit at a stride of 2K + 16 bytes, so the 8 rows of an ldmatrix (16 bytes each) hit different banks.
QTTS_HD inline int ring_row_stride(int K) { return 2 * K + 16; }

__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                               uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// volatile: never moved above the mbarrier wait that makes the ring bytes valid.
__device__ __forceinline__ uint4 ld_shared_v4(uint32_t addr) {
    uint4 r;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "r"(addr));
    return r;
}

// Four 8x8 bf16 matrices from shared memory; lane l gives the address of row l % 8 of matrix l / 8. volatile: never
// moved above the mbarrier wait that makes the ring bytes valid.
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// part[c][(row0 + r) * kWarps + warp] = warp's share of row r · x_c, for the `rows` rows at `base` (row stride
// ring_row_stride(K)). K is split over the warps in 32-wide blocks. Per block, one ldmatrix gives the B operand
// (the 3 C split parts of x as columns 0 .. 3C-1, for both 16-wide k halves) and two per 16-row tile give the A
// operand, already in the MMA's fragment layout (no register shuffling). NT 16-row tiles (rows <= 48). Row indices
// past `rows` are clamped and B columns past 3C read part 0 again: their results land in rows / columns that are
// discarded, so every load stays inside the chunk and needs no branch (a guarded load serializes behind the
// previous MMA).
template <int NT, int C>
__device__ __forceinline__ void mma_rows(const char* base, int rows, int K, const uint16_t* xsp, float* const (&part)[C],
                                         int row0) {
    static_assert(3 * C <= 8, "the B operand has 8 columns");
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int nb = K >> 5, b0 = nb * warp / kWarps, b1 = nb * (warp + 1) / kWarps, RS = ring_row_stride(K);
    // A: lane l addresses row l % 16 of a tile at k + 8 (l / 16): matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15).
    const uint32_t a_base = uint32_t(__cvta_generic_to_shared(base)) + 16 * (lane >> 4) + 64 * b0;
    uint32_t a_addr[NT];
#pragma unroll
    for (int i = 0; i < NT; ++i) a_addr[i] = a_base + min(16 * i + (lane & 15), rows - 1) * RS;
    // B: lane l addresses split part n = l % 8 at k + 8 (l / 8): one matrix per 8 k of the 32-wide block.
    const int n = lane & 7;
    uint32_t b_addr = uint32_t(__cvta_generic_to_shared(xsp + (n < 3 * C ? n : 0) * split_stride(K))) +
                      16 * (lane >> 3) + 64 * b0;
    float d[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) d[i][0] = d[i][1] = d[i][2] = d[i][3] = 0.0f;
    for (int b = b0; b < b1; ++b, b_addr += 64) {
        uint32_t x[4];
        ldsm_x4(b_addr, x);
        const uint32_t off = 64 * (b - b0);
        uint32_t lo[NT][4], hi[NT][4];
#pragma unroll
        for (int i = 0; i < NT; ++i) {
            ldsm_x4(a_addr[i] + off, lo[i]);       // k 0-15 of the block
            ldsm_x4(a_addr[i] + off + 32, hi[i]);  // k 16-31
        }
#pragma unroll
        for (int i = 0; i < NT; ++i) {
            mma_bf16_16816(d[i], lo[i][0], lo[i][1], lo[i][2], lo[i][3], x[0], x[1]);
            mma_bf16_16816(d[i], hi[i][0], hi[i][1], hi[i][2], hi[i][3], x[2], x[3]);
        }
    }
    // d[i] = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]; column c of x sums D columns 3c, 3c+1, 3c+2.
#pragma unroll
    for (int i = 0; i < NT; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float e0 = d[i][2 * h], e1 = d[i][2 * h + 1];
            const float n1e0 = __shfl_down_sync(kFull, e0, 1), n1e1 = __shfl_down_sync(kFull, e1, 1);
            const float n2e0 = __shfl_down_sync(kFull, e0, 2), n2e1 = __shfl_down_sync(kFull, e1, 2);
            const int r = 16 * i + 8 * h + g;
            if (t == 0 && r < rows) {
                part[0][(row0 + r) * kWarps + warp] = (e0 + e1) + n1e0;
                if constexpr (C == 2) part[1][(row0 + r) * kWarps + warp] = (n1e1 + n2e0) + n2e1;
            }
        }
    }
}

// Not inlined: the mma_rows variants, inlined at every matvec call site, made the predictor kernel ~900 KB of SASS, and
// its warps stalled on instruction fetch. One copy per C halves the code: predictor frame 2.50 -> 2.25 ms, talker
// step 0.726 -> 0.731 ms (H100, same bits).
template <int C>
__device__ __noinline__ void mma_chunk(const char* base, int rows, int K, const uint16_t* xsp, float* const (&part)[C],
                                       int row0) {
    switch ((rows + 15) >> 4) {
        case 1: mma_rows<1, C>(base, rows, K, xsp, part, row0); break;
        case 2: mma_rows<2, C>(base, rows, K, xsp, part, row0); break;
        default: mma_rows<3, C>(base, rows, K, xsp, part, row0); break;
    }
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
// inv_hd = 1 / hd (StackDev::inv_hd; hd a power of two, so ss * inv_hd == ss / hd).
__device__ __forceinline__ void norm_rope_apply(float* v, const NormRopeRegs& r, int hd, float inv_hd, float eps) {
    const int lane = threadIdx.x & 31, half = hd >> 1;
    float ss = 0.0f;
    for (int d = lane; d < hd; d += 32) ss = fmaf(v[d], v[d], ss);
    ss = warp_sum(ss);
    const float inv = 1.0f / sqrtf(ss * inv_hd + eps);
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
    norm_rope_apply(v, r, hd, 1.0f / float(hd), eps);
}

// ---- the same in registers (the predictor's attention): lane-held dims d = lane + 32 i (i < kDimsPerLane; 0 past hd) ----
// The rotate-half partner of d is d ^ hd/2 (head_dim a power of two, checked when a stack is uploaded): the same lane
// for hd >= 64, a shuffle below. Same arithmetic as norm_rope_apply, so the same bits. (The talker's attention with
// q and k normalised this way by the warps that poll them, one block sync fewer, measured 3 % slower: 0.609-0.616
// against 0.589-0.594 ms per step, H100.)

// r[i] = p[lane + 32 i] (0 past hd).
__device__ __forceinline__ void lanes_load(float (&r)[kDimsPerLane], const float* p, int hd) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) r[i] = lane + 32 * i < hd ? __ldg(p + lane + 32 * i) : 0.0f;
}

// c / s: the RoPE cos / sin rows of one position ([hd / 2] each) at d mod hd/2.
__device__ __forceinline__ void rope_lanes_load(float (&c)[kDimsPerLane], float (&s)[kDimsPerLane],
                                                const float* cos_row, const float* sin_row, int hd) {
    const int lane = threadIdx.x & 31, half = hd >> 1;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        c[i] = d < hd ? __ldg(cos_row + (d & (half - 1))) : 0.0f;
        s[i] = d < hd ? __ldg(sin_row + (d & (half - 1))) : 0.0f;
    }
}

// v = RoPE(w ⊙ v / sqrt(mean(v²) + eps)): y_d = v_d c - v_{d+hd/2} s below hd/2, v_d c + v_{d-hd/2} s above, each
// product rounded before the sum (no FMA contraction, as the CPU's Rope::apply).
__device__ __forceinline__ void norm_rope_lanes(float (&v)[kDimsPerLane], const float (&w)[kDimsPerLane],
                                                const float (&c)[kDimsPerLane], const float (&s)[kDimsPerLane], int hd,
                                                float inv_hd, float eps) {
    const int lane = threadIdx.x & 31, half = hd >> 1;
    float ss = 0.0f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) ss = fmaf(v[i], v[i], ss);
    ss = warp_sum(ss);
    const float inv = 1.0f / sqrtf(ss * inv_hd + eps);
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) v[i] = w[i] * (v[i] * inv);
    float pv[kDimsPerLane];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i)
        pv[i] = half >= 64 ? v[i ^ 2] : half >= 32 ? v[i ^ 1] : __shfl_xor_sync(kFull, v[i], half);
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        const float vc = __fmul_rn(v[i], c[i]), ps = __fmul_rn(pv[i], s[i]);
        v[i] = d & half ? __fadd_rn(vc, ps) : __fsub_rn(vc, ps);
    }
}

// K/V rows of the first two keys a warp handles (j0 + warp and j0 + warp + kWarps), loaded by attend_preload
// before attend_block, while the talker waits for q/k/v (phase_attention).
struct KeyRegs {
    float k[2][kDimsPerLane], v[2][kDimsPerLane];
};

// Key j's K/V row (zeros for j past j1 and for jnew, which attend_block reads from shared memory).
__device__ __forceinline__ void attend_load(const float* kbase, const float* vbase, int stride, int hd, int j, int j1,
                                            int jnew, float (&k)[kDimsPerLane], float (&v)[kDimsPerLane]) {
    const int lane = threadIdx.x & 31;
    const bool row = j < j1 && j != jnew;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        const bool ok = row && d < hd;
        k[i] = ok ? __ldcg(kbase + size_t(j) * stride + d) : 0.0f;
        v[i] = ok ? __ldcg(vbase + size_t(j) * stride + d) : 0.0f;
    }
}

__device__ __forceinline__ void attend_preload(const float* kbase, const float* vbase, int stride, int hd, int j0,
                                               int j1, int jnew, KeyRegs& r) {
    const int j = j0 + (threadIdx.x >> 5);
    attend_load(kbase, vbase, stride, hd, j, j1, jnew, r.k[0], r.v[0]);
    attend_load(kbase, vbase, stride, hd, j + kWarps, j1, jnew, r.k[1], r.v[1]);
}

// Block-wide attention of one query q (shared, [hd]) over keys [j0, j1) at rows kbase + j * stride (fp32),
// except key `jnew` which is read from knew / vnew (shared). Writes (max, sum, acc[hd]) unnormalized to out.
// pre: this warp's first keys, from attend_preload. wbuf: shared [kWarps][2 + hd]. Each later key is loaded two
// iterations before its use (the talker's long contexts: ~60 keys per chunk at 500 positions), so a warp's keys
// do not wait an L2 round trip each.
__device__ __forceinline__ void attend_block(const float* q, int hd, float scale, const float* kbase,
                                             const float* vbase, int stride, int j0, int j1, int jnew,
                                             const float* knew, const float* vnew, float* wbuf, float* out,
                                             const KeyRegs& pre, float* gout = nullptr) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float qr[kDimsPerLane], acc[kDimsPerLane], ck[kDimsPerLane], cv[kDimsPerLane], nk[kDimsPerLane],
        nv[kDimsPerLane];
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        qr[i] = d < hd ? q[d] : 0.0f;
        acc[i] = 0.0f;
        ck[i] = pre.k[0][i], cv[i] = pre.v[0][i];
        nk[i] = pre.k[1][i], nv[i] = pre.v[1][i];
    }
    float m = -INFINITY, l = 0.0f;
    for (int j = j0 + warp; j < j1; j += kWarps) {
        float kv[kDimsPerLane], vv[kDimsPerLane];
        const bool fresh = j == jnew;
#pragma unroll
        for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + 32 * i;
            kv[i] = fresh ? (d < hd ? knew[d] : 0.0f) : ck[i];
            vv[i] = fresh ? (d < hd ? vnew[d] : 0.0f) : cv[i];
            ck[i] = nk[i], cv[i] = nv[i];
        }
        if (j + 2 * kWarps < j1) attend_load(kbase, vbase, stride, hd, j + 2 * kWarps, j1, jnew, nk, nv);
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
    work_sync();
    for (int d = threadIdx.x; d < hd; d += work_threads()) {
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
    work_sync();
}

}  // namespace qtts::cuda::dev
