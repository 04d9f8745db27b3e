// Speech-tokenizer decoder kernels (see vocoder_kernels.h): an fp32 SIMT implicit-GEMM conv with fused
// epilogues and a deterministic split-K, plus the row-wise ops between the GEMMs. fp32 throughout (no TF32):
// the decoder needs ~5 GFLOP per 80 ms frame, which fp32 FMA units cover many times over, and fp32 keeps the
// result within ~1e-6 of the CPU reference.
#include "cuda/vocoder_kernels.h"

#include <algorithm>

#include "cuda/cuda_check.h"

namespace qtts::cuda {

namespace {

constexpr int kBN = 64;       // GEMM tile columns
constexpr int kBK = 16;       // GEMM k step
constexpr int kThreads = 256;
constexpr float kInvSqrt2 = 0.70710678118654752f;

__device__ __forceinline__ float snake(float v, float a, float ib) {
    const float s = sinf(v * a);
    return v + ib * (s * s);
}

template <int BM>
__global__ void __launch_bounds__(kThreads) conv_gemm_kernel(const __grid_constant__ ConvGemmArgs g) {
    constexpr int TM = BM / 16;             // rows per thread
    constexpr int EA = BM * kBK / kThreads;  // A elements loaded per thread per k step
    constexpr int A_PER_ROW = kBK / EA;
    __shared__ __align__(16) float As[2][kBK][BM];
    __shared__ __align__(16) float Bs[2][kBK][kBN];
    __shared__ bool is_last;

    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int n0 = blockIdx.x * kBN, m0 = blockIdx.y * BM;
    const int z = blockIdx.z / g.splits, split = blockIdx.z % g.splits;
    const float* __restrict__ w = g.w + z * g.w_poff;
    const int kb = split * g.kchunk, ke = min(g.K, kb + g.kchunk);

    const int a_row = tid / A_PER_ROW, a_k = (tid % A_PER_ROW) * EA;
    const int b_row = tid / 16, b_col = (tid % 16) * 4;
    float ra[EA], rb[4];

    auto load = [&](int k0) {
        const int gm = m0 + a_row;
        if (g.vec_a) {
            const int tap = k0 / g.cin, c = k0 - tap * g.cin + a_k;
            if (gm < g.M) {
                const float* p = g.x + int64_t(gm + tap * g.step) * g.ldx + c;
                if constexpr (EA == 4) {
                    const float4 v = *reinterpret_cast<const float4*>(p);
                    ra[0] = v.x, ra[1] = v.y, ra[2] = v.z, ra[3] = v.w;
                } else {
                    const float2 v = *reinterpret_cast<const float2*>(p);
                    ra[0] = v.x, ra[1] = v.y;
                }
            } else {
#pragma unroll
                for (int e = 0; e < EA; ++e) ra[e] = 0.0f;
            }
        } else {
#pragma unroll
            for (int e = 0; e < EA; ++e) {
                const int k = k0 + a_k + e;
                if (gm < g.M && k < ke) {
                    const int tap = k / g.cin, c = k - tap * g.cin;
                    ra[e] = g.x[int64_t(gm + tap * g.step) * g.ldx + c];
                } else {
                    ra[e] = 0.0f;
                }
            }
        }
        const int k = k0 + b_row, col = n0 + b_col;
        if (g.vec_b) {
            if (k < ke && col < g.N) {
                const float4 v = *reinterpret_cast<const float4*>(w + int64_t(k) * g.N + col);
                rb[0] = v.x, rb[1] = v.y, rb[2] = v.z, rb[3] = v.w;
            } else {
                rb[0] = rb[1] = rb[2] = rb[3] = 0.0f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) rb[j] = (k < ke && col + j < g.N) ? w[int64_t(k) * g.N + col + j] : 0.0f;
        }
    };
    auto store = [&](int buf) {
#pragma unroll
        for (int e = 0; e < EA; ++e) As[buf][a_k + e][a_row] = ra[e];
        *reinterpret_cast<float4*>(&Bs[buf][b_row][b_col]) = make_float4(rb[0], rb[1], rb[2], rb[3]);
    };

    float acc[TM][4];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    const int nk = (ke - kb + kBK - 1) / kBK;
    load(kb);
    store(0);
    __syncthreads();
    for (int t = 0; t < nk; ++t) {
        const int cur = t & 1;
        if (t + 1 < nk) load(kb + (t + 1) * kBK);
#pragma unroll
        for (int kk = 0; kk < kBK; ++kk) {
            float a[TM];
            if constexpr (TM == 4) {
                const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][ty * TM]);
                a[0] = v.x, a[1] = v.y, a[2] = v.z, a[3] = v.w;
            } else {
                const float2 v = *reinterpret_cast<const float2*>(&As[cur][kk][ty * TM]);
                a[0] = v.x, a[1] = v.y;
            }
            const float4 b = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * 4]);
#pragma unroll
            for (int i = 0; i < TM; ++i) {
                acc[i][0] = fmaf(a[i], b.x, acc[i][0]);
                acc[i][1] = fmaf(a[i], b.y, acc[i][1]);
                acc[i][2] = fmaf(a[i], b.z, acc[i][2]);
                acc[i][3] = fmaf(a[i], b.w, acc[i][3]);
            }
        }
        if (t + 1 < nk) store(cur ^ 1);
        __syncthreads();
    }

    const int gm0 = m0 + ty * TM, gn0 = n0 + tx * 4;
    if (g.splits > 1) {
        // Serial split-K fixup: every piece stores its partial tile; the last piece to arrive sums all of
        // them in piece order (the same order whichever piece is last) and runs the epilogue.
        const int64_t MN = int64_t(g.M) * g.N;
        float* part = g.workspace + int64_t(z * g.splits + split) * MN;
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j)
                if (gm0 + i < g.M && gn0 + j < g.N) part[int64_t(gm0 + i) * g.N + gn0 + j] = acc[i][j];
        __threadfence();
        __syncthreads();
        if (tid == 0) {
            unsigned* counter = g.counters + (int64_t(z) * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
            const unsigned old = atomicAdd(counter, 1u);
            is_last = old == unsigned(g.splits - 1);
            if (is_last) *counter = 0;  // every piece has arrived: ready for the next launch
        }
        __syncthreads();
        if (!is_last) return;
        __threadfence();
        const float* base = g.workspace + int64_t(z * g.splits) * MN;
        // Piece order 0 + 1 + 2 + ...; the loads of 4 pieces are issued before their adds. This block is the tile's
        // critical path: one load round trip per piece and element made the prefill GEMM, which had the same fixup,
        // 2-3x slower (cuda/NOTES.md).
        // Element e of this thread is acc[e / 4][e % 4]; off[e] its offset in a piece, -1 outside.
        constexpr int kElems = TM * 4;
        int64_t off[kElems];
#pragma unroll
        for (int e = 0; e < kElems; ++e) {
            const int i = e / 4, j = e % 4;
            off[e] = gm0 + i < g.M && gn0 + j < g.N ? int64_t(gm0 + i) * g.N + gn0 + j : -1;
            if (off[e] >= 0) acc[i][j] = __ldcg(base + off[e]);
        }
        constexpr int kBatch = 4;
        for (int s0 = 1; s0 < g.splits; s0 += kBatch) {
            float v[kBatch][kElems];
#pragma unroll
            for (int b = 0; b < kBatch; ++b)
#pragma unroll
                for (int e = 0; e < kElems; ++e)
                    v[b][e] = s0 + b < g.splits && off[e] >= 0 ? __ldcg(base + (s0 + b) * MN + off[e]) : 0.0f;
#pragma unroll
            for (int b = 0; b < kBatch; ++b)
#pragma unroll
                for (int e = 0; e < kElems; ++e)
                    if (s0 + b < g.splits && off[e] >= 0) acc[e / 4][e % 4] += v[b][e];
        }
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = gm0 + i;
        if (m >= g.M) continue;
        if (g.act == VocAct::glu) {
#pragma unroll
            for (int j = 0; j < 4; j += 2) {
                const int o = gn0 + j;
                if (o + 1 >= g.N) continue;
                float gate = acc[i][j], up = acc[i][j + 1];
                if (g.bias) gate += g.bias[o], up += g.bias[o + 1];
                gate = gate / (1.0f + expf(-gate));
                g.y[z * g.y_poff + int64_t(m) * g.ldy + o / 2] = gate * up;
            }
            continue;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int o = gn0 + j;
            if (o >= g.N) continue;
            float v = acc[i][j];
            if (g.bias) v += g.bias[o];
            switch (g.act) {
                case VocAct::snake: v = snake(v, g.act_a[o], g.act_b[o]); break;
                case VocAct::gelu: v = 0.5f * v * (1.0f + erff(v * kInvSqrt2)); break;
                case VocAct::clamp: v = fminf(fmaxf(v, -1.0f), 1.0f); break;
                default: break;
            }
            if (g.res) v = g.res[int64_t(m) * g.ldres + o] + (g.gamma ? g.gamma[o] * v : v);
            if (g.y) g.y[z * g.y_poff + int64_t(m) * g.ldy + o] = v;
            if (g.y2) g.y2[z * g.y2_poff + int64_t(m) * g.ldy2 + o] = snake(v, g.y2_a[o], g.y2_b[o]);
        }
    }
}

// Sum over a block of `kThreads` threads; every thread gets the result. `scratch` holds 32 floats.
__device__ float block_sum(float v, float* scratch) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int i = 0; i < int(blockDim.x / 32); ++i) t += scratch[i];
    return t;
}

__global__ void gather_kernel(const int32_t* __restrict__ codes, const float* __restrict__ codebooks, int G,
                              int codebook_size, int vq, float* __restrict__ x) {
    const int f = blockIdx.x;
    const int32_t* fc = codes + int64_t(f) * G;
    for (int d = threadIdx.x; d < vq; d += blockDim.x) {
        x[int64_t(f) * 2 * vq + d] = codebooks[int64_t(fc[0]) * vq + d];
        float acc = 0.0f;
        for (int q = 1; q < G; ++q) acc += codebooks[(int64_t(q) * codebook_size + fc[q]) * vq + d];
        x[int64_t(f) * 2 * vq + vq + d] = acc;
    }
}

__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ y,
                                int ch, float eps) {
    __shared__ float scratch[32];
    const float* in = x + int64_t(blockIdx.x) * ch;
    float* out = y + int64_t(blockIdx.x) * ch;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < ch; c += blockDim.x) ss += in[c] * in[c];
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / float(ch) + eps);
    for (int c = threadIdx.x; c < ch; c += blockDim.x) out[c] = w[c] * (in[c] * inv);
}

__global__ void rope_kv_kernel(float* __restrict__ qkv, int n_head, int n_kv_head, int head_dim,
                               const float* __restrict__ inv_freq, const int64_t* __restrict__ pos0,
                               float* __restrict__ keys,
                               float* __restrict__ values, int hist) {
    const int i = blockIdx.x, half = head_dim / 2;
    const int q_dim = n_head * head_dim, kv_dim = n_kv_head * head_dim;
    float* row = qkv + int64_t(i) * (q_dim + 2 * kv_dim);
    float* krow = keys + int64_t(hist + i) * kv_dim;
    float* vrow = values + int64_t(hist + i) * kv_dim;
    const float pos = float(*pos0 + i);
    for (int t = threadIdx.x; t < (n_head + n_kv_head) * half; t += blockDim.x) {
        const int h = t / half, d = t % half;
        const float angle = pos * inv_freq[d];
        const float ca = cosf(angle), sa = sinf(angle);
        if (h < n_head) {
            float* v = row + h * head_dim;
            const float x1 = v[d], x2 = v[d + half];
            v[d] = x1 * ca - x2 * sa;
            v[d + half] = x2 * ca + x1 * sa;
        } else {
            const int kh = h - n_head;
            const float* v = row + q_dim + kh * head_dim;
            const float x1 = v[d], x2 = v[d + half];
            krow[kh * head_dim + d] = x1 * ca - x2 * sa;
            krow[kh * head_dim + d + half] = x2 * ca + x1 * sa;
        }
    }
    for (int t = threadIdx.x; t < kv_dim; t += blockDim.x) vrow[t] = row[q_dim + kv_dim + t];
}

constexpr int kAttnWarps = 4;
constexpr int kMaxWindow = 256;
constexpr int kMaxHeadDimVoc = 256;

__global__ void attention_kernel(const float* __restrict__ qkv, const float* __restrict__ keys,
                                 const float* __restrict__ values, int n, int n_head, int n_kv_head, int head_dim,
                                 int hist, int window, const int64_t* __restrict__ pos0, float* __restrict__ out) {
    __shared__ float q_s[kAttnWarps][kMaxHeadDimVoc];
    __shared__ float p_s[kAttnWarps][kMaxWindow];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int task = blockIdx.x * kAttnWarps + warp;
    if (task >= n * n_head) return;
    const int i = task / n_head, h = task % n_head, kvh = h / (n_head / n_kv_head);
    const int q_dim = n_head * head_dim, kv_dim = n_kv_head * head_dim;
    const float* q = qkv + int64_t(i) * (q_dim + 2 * kv_dim) + h * head_dim;
    for (int d = lane; d < head_dim; d += 32) q_s[warp][d] = q[d];
    __syncwarp();
    const int j_hi = i + hist;
    const int64_t first_valid = int64_t(hist) - *pos0;  // window rows before position 0 are not keys
    const int j_lo = max(j_hi - window + 1, first_valid > 0 ? int(first_valid) : 0);
    const float scale = 1.0f / sqrtf(float(head_dim));
    float mx = -INFINITY;
    for (int j = j_lo + lane; j <= j_hi; j += 32) {
        const float* kr = keys + int64_t(j) * kv_dim + kvh * head_dim;
        float dot = 0.0f;
        for (int d = 0; d < head_dim; ++d) dot += q_s[warp][d] * kr[d];
        dot *= scale;
        p_s[warp][j - j_lo] = dot;
        mx = fmaxf(mx, dot);
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    __syncwarp();
    const int count = j_hi - j_lo + 1;
    float sum = 0.0f;
    for (int j = lane; j < count; j += 32) {
        const float e = expf(p_s[warp][j] - mx);
        p_s[warp][j] = e;
    }
    __syncwarp();
    // The CPU sums in key order; so does lane 0 here (then broadcasts), to keep the rounding identical.
    if (lane == 0)
        for (int j = 0; j < count; ++j) sum += p_s[warp][j];
    sum = __shfl_sync(0xffffffffu, sum, 0);
    float* o = out + int64_t(i) * q_dim + h * head_dim;
    for (int d = lane; d < head_dim; d += 32) {
        float acc = 0.0f;
        for (int j = 0; j < count; ++j)
            acc += (p_s[warp][j] / sum) * values[int64_t(j_lo + j) * kv_dim + kvh * head_dim + d];
        o[d] = acc;
    }
}

__global__ void dwconv_layernorm_kernel(const float* __restrict__ x, const float* __restrict__ dw_w,
                                        const float* __restrict__ dw_b, int k, const float* __restrict__ ln_w,
                                        const float* __restrict__ ln_b, float eps, float* __restrict__ y, int ch) {
    extern __shared__ float row[];
    __shared__ float scratch[32];
    const int t = blockIdx.x;
    float s = 0.0f;
    for (int c = threadIdx.x; c < ch; c += blockDim.x) {
        float v = 0.0f;
        for (int i = 0; i < k; ++i) v += x[int64_t(t + i) * ch + c] * dw_w[i * ch + c];
        v += dw_b[c];
        row[c] = v;
        s += v;
    }
    const float mean = block_sum(s, scratch) / float(ch);
    float ss = 0.0f;
    for (int c = threadIdx.x; c < ch; c += blockDim.x) ss += (row[c] - mean) * (row[c] - mean);
    const float inv_std = 1.0f / sqrtf(block_sum(ss, scratch) / float(ch) + eps);
    float* out = y + int64_t(t) * ch;
    for (int c = threadIdx.x; c < ch; c += blockDim.x) out[c] = (row[c] - mean) * inv_std * ln_w[c] + ln_b[c];
}

__global__ void copies_kernel(const __grid_constant__ VocCopies copies) {
    const int p = blockIdx.y;
    const float* src = copies.src[p];
    float* dst = copies.dst[p];
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < copies.count[p];
         i += int64_t(gridDim.x) * blockDim.x)
        dst[i] = src[i];
}

void check_launch() { QTTS_CUDA_CHECK(cudaGetLastError()); }

}  // namespace

int64_t conv_gemm_tiles(int M, int N, int phases, int tile_rows) {
    return int64_t((N + kBN - 1) / kBN) * ((M + tile_rows - 1) / tile_rows) * phases;
}

void launch_conv_gemm(const ConvGemmArgs& g, int tile_rows, cudaStream_t stream) {
    if (g.M <= 0) return;
    const dim3 grid((g.N + kBN - 1) / kBN, (g.M + tile_rows - 1) / tile_rows, g.phases * g.splits);
    if (tile_rows == 64)
        conv_gemm_kernel<64><<<grid, kThreads, 0, stream>>>(g);
    else
        conv_gemm_kernel<32><<<grid, kThreads, 0, stream>>>(g);
    check_launch();
}

void launch_voc_gather(const int32_t* codes, const float* codebooks, int n, int G, int codebook_size, int vq,
                       float* x, cudaStream_t stream) {
    gather_kernel<<<n, std::min(256, (vq + 31) / 32 * 32), 0, stream>>>(codes, codebooks, G, codebook_size, vq, x);
    check_launch();
}

void launch_voc_rms_norm(const float* x, const float* w, float* y, int n, int ch, float eps, cudaStream_t stream) {
    rms_norm_kernel<<<n, kThreads, 0, stream>>>(x, w, y, ch, eps);
    check_launch();
}

void launch_voc_rope_kv(float* qkv, int n, int n_head, int n_kv_head, int head_dim, const float* inv_freq,
                        const int64_t* pos0, float* keys, float* values, int hist, cudaStream_t stream) {
    rope_kv_kernel<<<n, kThreads, 0, stream>>>(qkv, n_head, n_kv_head, head_dim, inv_freq, pos0, keys, values, hist);
    check_launch();
}

void launch_voc_attention(const float* qkv, const float* keys, const float* values, int n, int n_head, int n_kv_head,
                          int head_dim, int hist, int window, const int64_t* pos0, float* out, cudaStream_t stream) {
    if (window > kMaxWindow || head_dim > kMaxHeadDimVoc)
        throw_gpu_error("vocoder attention: sliding window or head_dim too large for the CUDA kernel");
    const int tasks = n * n_head;
    attention_kernel<<<(tasks + kAttnWarps - 1) / kAttnWarps, 32 * kAttnWarps, 0, stream>>>(
        qkv, keys, values, n, n_head, n_kv_head, head_dim, hist, window, pos0, out);
    check_launch();
}

void launch_voc_dwconv_layernorm(const float* x, const float* dw_w, const float* dw_b, int k, const float* ln_w,
                                 const float* ln_b, float eps, float* y, int n, int ch, cudaStream_t stream) {
    dwconv_layernorm_kernel<<<n, kThreads, size_t(ch) * sizeof(float), stream>>>(x, dw_w, dw_b, k, ln_w, ln_b, eps, y,
                                                                                 ch);
    check_launch();
}

void launch_voc_copies(const VocCopies& copies, cudaStream_t stream) {
    if (copies.n == 0) return;
    int64_t most = 0;
    for (int i = 0; i < copies.n; ++i) most = std::max(most, copies.count[i]);
    const int blocks = int(std::min<int64_t>(64, (most + kThreads - 1) / kThreads));
    copies_kernel<<<dim3(std::max(1, blocks), copies.n), kThreads, 0, stream>>>(copies);
    check_launch();
}

}  // namespace qtts::cuda
