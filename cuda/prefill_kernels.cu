// Batched prefill of a decoder stack over n positions: a tensor-core GEMM against bf16 weights with fp32
// accumulation (each weight tile read once per 32 positions), row RMSNorm, per-head q/k norm + RoPE + KV append, causal
// attention over the cache, and SiLU·up. Same math and KV layout as the decode megakernel.
#include <climits>

#include "cuda/cuda_check.h"
#include "cuda/stack_device.cuh"
#include "cuda/stack_kernels.h"

namespace qtts::cuda {

namespace {

using namespace dev;

// Tensor-core GEMM y[t][r] = Σ_k x[t][k] · W[r][k]: a block takes 64 weight rows × 32 positions (4 tiles of 8)
// over its K range. As in the decode matvec, x (fp32) is split into three bf16 parts, x = x1 + x2 + x3 (to
// ~2^-24), so bf16 products with fp32 accumulation give the fp32 dot product; each part is one mma.m16n8k16 B
// operand into the same accumulator. Tiles of 64 k (weights and x) stream through shared memory with cp.async,
// kGemmStages in flight; each x tile is split into bf16 parts there. Warp w takes rows 16 (w % 4) and the k half
// w / 4 of every tile; the halves are added at the end (half 0 + half 1). Split-K: every piece stores its
// partial tile and gemm_reduce_kernel adds them in piece order (deterministic). A serial fixup in the last piece
// to arrive (as the vocoder's conv GEMM does) made every GEMM here 2-3x slower on the H100 (cuda/NOTES.md).
constexpr int kGemmRows = 64;
constexpr int kGemmPos = 32;
constexpr int kGemmK = 64;
constexpr int kGemmStages = 3;
constexpr int kGemmThreads = 256;
constexpr int kGemmStride = 2 * kGemmK + 64;    // bytes per bf16 row: 192 = 64 mod 128, conflict-free 16-byte loads
constexpr int kGemmXStride = 4 * kGemmK + 16;   // bytes per fp32 x row
constexpr int kGemmWBytes = kGemmStages * kGemmRows * kGemmStride;
constexpr int kGemmXBytes = kGemmStages * kGemmPos * kGemmXStride;
constexpr int kGemmSplitBytes = 3 * kGemmPos * kGemmStride;  // [part][position][k]
constexpr int kGemmSmem = kGemmWBytes + kGemmXBytes + kGemmSplitBytes;
constexpr int kGemmWChunks = kGemmRows * kGemmK / 8 / kGemmThreads;  // 16-byte weight copies per thread per tile
constexpr int kGemmXChunks = kGemmPos * kGemmK / 4 / kGemmThreads;   // 16-byte x copies per thread per tile
static_assert(kGemmWChunks >= 1 && kGemmXChunks >= 1 && kGemmThreads == 2 * 4 * 32, "8 warps: 4 row tiles x 2 k halves");

__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

__global__ void __launch_bounds__(kGemmThreads) gemm_bf16_kernel(const GemmArgs a, int k_per_split) {
    extern __shared__ __align__(128) char gemm_smem[];
    char* const xs = gemm_smem + kGemmWBytes;                 // [stage][position][kGemmXStride]
    char* const sp = gemm_smem + kGemmWBytes + kGemmXBytes;   // [part][position][kGemmStride]
    const uint32_t ws_s = uint32_t(__cvta_generic_to_shared(gemm_smem));  // [stage][row][kGemmStride]
    const uint32_t xs_s = uint32_t(__cvta_generic_to_shared(xs));
    const int r_base = blockIdx.x * kGemmRows, t_base = blockIdx.y * kGemmPos;
    const int k_begin = blockIdx.z * k_per_split, k_end = min(a.K, k_begin + k_per_split);
    const int n_tiles = (k_end - k_begin + kGemmK - 1) / kGemmK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int row_tile = warp & 3, half = warp >> 2;
    const int pos_tiles = min(kGemmPos / 8, (a.n - t_base + 7) / 8);

    // This thread's copies, as offsets from the tile's start (k advances by kGemmK per tile). Rows past R read row
    // R-1 (their results are dropped); positions past n and k past the range are not loaded (the MMAs never use
    // those bytes for a kept result).
    const uint16_t* w_src[kGemmWChunks];
    uint32_t w_dst[kGemmWChunks];
    int w_k[kGemmWChunks];
#pragma unroll
    for (int q = 0; q < kGemmWChunks; ++q) {
        const int c = threadIdx.x + q * kGemmThreads, rr = c >> 3, kc = (c & 7) * 8;
        w_src[q] = a.w + size_t(min(r_base + rr, a.R - 1)) * a.K + k_begin + kc;
        w_dst[q] = rr * kGemmStride + kc * 2;
        w_k[q] = k_begin + kc;
    }
    const float* x_src[kGemmXChunks];
    uint32_t x_dst[kGemmXChunks];
    int x_k[kGemmXChunks];
#pragma unroll
    for (int q = 0; q < kGemmXChunks; ++q) {
        const int c = threadIdx.x + q * kGemmThreads, tt = c >> 4, kc = (c & 15) * 4;
        x_src[q] = a.x + size_t(min(t_base + tt, a.n - 1)) * a.ldx + k_begin + kc;
        x_dst[q] = tt * kGemmXStride + kc * 4;
        x_k[q] = t_base + tt < a.n ? k_begin + kc : INT_MAX;  // INT_MAX: never loaded
    }
    const auto load = [&](int kt) {
        const int dk = kt * kGemmK, stage = kt % kGemmStages;
#pragma unroll
        for (int q = 0; q < kGemmWChunks; ++q)
            if (w_k[q] + dk < k_end) cp_async_16(ws_s + stage * (kGemmRows * kGemmStride) + w_dst[q], w_src[q] + dk);
#pragma unroll
        for (int q = 0; q < kGemmXChunks; ++q)
            if (x_k[q] < k_end - dk) cp_async_16(xs_s + stage * (kGemmPos * kGemmXStride) + x_dst[q], x_src[q] + dk);
        cp_async_commit();
    };
    // x tile (fp32) -> three bf16 parts, for the positions in use.
    const auto split_x = [&](int kt) {
        const char* src = xs + (kt % kGemmStages) * kGemmPos * kGemmXStride;
        for (int c = threadIdx.x; c < pos_tiles * 8 * kGemmK / 4; c += kGemmThreads) {
            const int tt = c >> 4, kc = (c & 15) * 4;
            const float4 x4 = *reinterpret_cast<const float4*>(src + tt * kGemmXStride + kc * 4);
            uint16_t h[4][3];  // [value][part]
            split3(x4.x, h[0]), split3(x4.y, h[1]), split3(x4.z, h[2]), split3(x4.w, h[3]);
#pragma unroll
            for (int p = 0; p < 3; ++p)
                *reinterpret_cast<uint2*>(sp + (p * kGemmPos + tt) * kGemmStride + kc * 2) =
                    make_uint2(h[0][p] | uint32_t(h[1][p]) << 16, h[2][p] | uint32_t(h[3][p]) << 16);
        }
    };

    float acc[kGemmPos / 8][4] = {};
#pragma unroll
    for (int s = 0; s < kGemmStages - 1; ++s) {
        if (s < n_tiles) load(s);
        else cp_async_commit();  // empty groups keep the wait count uniform
    }
    const uint32_t x_s = uint32_t(__cvta_generic_to_shared(sp)) + g * kGemmStride + 16 * t + 64 * half;
    const uint32_t w_row = ws_s + (16 * row_tile + g) * kGemmStride + 16 * t + 64 * half;
    for (int kt = 0; kt < n_tiles; ++kt) {
        cp_async_wait<kGemmStages - 2>();
        __syncthreads();  // tile kt is in; every warp is done with tile kt - 1 (its stage and the split parts)
        if (kt + kGemmStages - 1 < n_tiles) load(kt + kGemmStages - 1);
        else cp_async_commit();
        split_x(kt);
        __syncthreads();
        if (k_end - k_begin - kt * kGemmK <= 32 * half) continue;  // this half of the last tile is past the range
        // Lane (g, t) holds k = 32 half + 8t .. +7 of rows g and g + 8 and of position g: the first MMA takes
        // k + 0..3, the second k + 4..7 (the same k order in A and B, so the product is the plain dot product).
        const uint32_t w_s = w_row + (kt % kGemmStages) * (kGemmRows * kGemmStride);
        const uint4 lo = ld_shared_v4(w_s), hi = ld_shared_v4(w_s + 8 * kGemmStride);
        // Each accumulator takes parts 0, 1, 2 in turn; the position tiles interleave (independent chains).
#pragma unroll
        for (int p = 0; p < 3; ++p) {
            uint4 xb[kGemmPos / 8];
#pragma unroll
            for (int j = 0; j < kGemmPos / 8; ++j)
                if (j < pos_tiles) xb[j] = ld_shared_v4(x_s + (p * kGemmPos + 8 * j) * kGemmStride);
#pragma unroll
            for (int j = 0; j < kGemmPos / 8; ++j)
                if (j < pos_tiles) mma_bf16_16816(acc[j], lo.x, hi.x, lo.y, hi.y, xb[j].x, xb[j].y);
#pragma unroll
            for (int j = 0; j < kGemmPos / 8; ++j)
                if (j < pos_tiles) mma_bf16_16816(acc[j], lo.z, hi.z, lo.w, hi.w, xb[j].z, xb[j].w);
        }
    }
    cp_async_wait<0>();
    // The k halves: half 1 hands its accumulators over through the (now idle) weight stages; half 0 adds them.
    float* handoff = reinterpret_cast<float*>(gemm_smem);  // [row tile][element][lane]
    constexpr int kElems = kGemmPos / 8 * 4;
    __syncthreads();
    if (half == 1) {
#pragma unroll
        for (int i = 0; i < kElems; ++i) handoff[(row_tile * kElems + i) * 32 + lane] = acc[i >> 2][i & 3];
    }
    __syncthreads();
    if (half == 1) return;
#pragma unroll
    for (int i = 0; i < kElems; ++i) acc[i >> 2][i & 3] += handoff[(row_tile * kElems + i) * 32 + lane];
    // acc[j] = D[g][2t], D[g][2t+1], D[g+8][2t], D[g+8][2t+1]: rows 16 row_tile + g (+8), positions 8j + 2t (+1).
#pragma unroll
    for (int i = 0; i < kElems; ++i) {
        const int j = i >> 2, e = i & 3;
        const int gr = r_base + 16 * row_tile + g + 8 * (e >> 1), gt = t_base + 8 * j + 2 * t + (e & 1);
        if (gr >= a.R || gt >= a.n) continue;
        if (gridDim.z > 1) {  // a split-K piece: gemm_reduce_kernel adds the pieces
            a.part[(blockIdx.z * size_t(a.n) + gt) * a.R + gr] = acc[j][e];
        } else {
            float* y = a.y + size_t(gt) * a.ldy + gr;
            *y = a.accumulate ? __fadd_rn(*y, acc[j][e]) : acc[j][e];
        }
    }
}

// y[t][r] (+)= Σ_z part[z][t][r], in piece order (deterministic).
__global__ void gemm_reduce_kernel(const GemmArgs a, int splits) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= a.n * a.R) return;
    const int t = i / a.R, r = i - t * a.R;
    const size_t nr = size_t(a.n) * a.R;
    float v = a.part[i];
    for (int z = 1; z < splits; ++z) v += a.part[z * nr + i];
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

__global__ void bf16_to_f32_kernel(const uint16_t* src, float* dst, size_t count) {
    const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < count) dst[i] = bf16_at(src, i);
}

__global__ void fill_rows_kernel(float* y, int ldy, const float* b, int E) {
    for (int i = threadIdx.x; i < E; i += blockDim.x) y[size_t(blockIdx.x) * ldy + i] = b[i];
}

}  // namespace

void launch_bf16_to_f32(const uint16_t* src, float* dst, size_t count, cudaStream_t stream) {
    if (count == 0) return;
    bf16_to_f32_kernel<<<unsigned((count + 255) / 256), 256, 0, stream>>>(src, dst, count);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_fill_rows(float* y, int ldy, const float* b, int n, int E, cudaStream_t stream) {
    if (n <= 0) return;
    fill_rows_kernel<<<n, 256, 0, stream>>>(y, ldy, b, E);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_gemm_bf16(const GemmArgs& a, cudaStream_t stream) {
    if (a.n <= 0 || a.R <= 0) return;
    static int n_sm = [] {
        int dev = 0, n = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        return n > 0 ? n : 1;
    }();
    static const bool smem_set = [] {
        QTTS_CUDA_CHECK(cudaFuncSetAttribute(gemm_bf16_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kGemmSmem));
        QTTS_CUDA_CHECK(cudaFuncSetAttribute(gemm_bf16_kernel, cudaFuncAttributePreferredSharedMemoryCarveout, 100));
        return true;
    }();
    (void)smem_set;
    if (a.K % 32 != 0 || a.ldx % 4 != 0) throw_gpu_error("prefill GEMM: K must be a multiple of 32 and ldx of 4");
    const int bx = (a.R + kGemmRows - 1) / kGemmRows, by = (a.n + kGemmPos - 1) / kGemmPos;
    // Split K while the blocks still fit in one wave (two per SM) and each split keeps >= 2 K tiles, as far as the
    // scratch allows (H100, 20 positions: one wave 2.42 ms per prefill, two 2.49-2.58, four 2.51, eight 2.60).
    int splits = 1;
    while (bx * by * splits * 2 <= 2 * n_sm && a.K / (splits * 2) >= 2 * kGemmK) splits *= 2;
    int k_per_split = 0;
    const auto fit = [&] {
        k_per_split = (a.K / splits + kGemmK - 1) / kGemmK * kGemmK;
        splits = (a.K + k_per_split - 1) / k_per_split;
    };
    fit();
    while (splits > 1 && size_t(splits) * a.n * a.R > a.part_cap) --splits, fit();
    gemm_bf16_kernel<<<dim3(bx, by, splits), kGemmThreads, kGemmSmem, stream>>>(a, k_per_split);
    QTTS_CUDA_CHECK(cudaGetLastError());
    if (splits > 1) {
        gemm_reduce_kernel<<<(a.n * a.R + 255) / 256, 256, 0, stream>>>(a, splits);
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
