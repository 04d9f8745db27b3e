// Kernel lab, not part of the build (Hopper only: TMA bulk copies): how fast can a persistent 132-CTA kernel
// stream the 0.6B talker's weights (887 MB, random bf16) through its 141 grid-barrier-separated phases?
// Variants: the megakernel's register preload; a TMA byte ring in shared memory (whole-phase bulk copies issued
// by thread 0, one mbarrier per in-flight phase); the ring with tensor-core matvecs (rows copied one by one
// into a padded layout, fp32 x split into three bf16 parts); and the pieces alone (stream only, barriers only,
// copies only, consumer only). Prints median ms and CTA 0's time per step kind. Results: cuda/NOTES.md.
//   nvcc -O3 -std=c++20 -arch=sm_90a -I. -o /tmp/lab bench/lab_weight_stream.cu && /tmp/lab [ring KB]
#include <cstdio>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_bf16.h>

#include "cuda/stack_device.cuh"

using namespace qtts::cuda;
using namespace qtts::cuda::dev;

#define CK(x)                                                                         \
    do {                                                                              \
        cudaError_t e = (x);                                                          \
        if (e != cudaSuccess) {                                                       \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e), __FILE__, __LINE__); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

constexpr int L = 28, E = 1024, F = 3072, QKV = 4096, Q = 2048, V = 3072;

struct Layer {
    const uint16_t *qkv, *o, *gate, *up, *down;
};
struct Args {
    Layer layers[L];
    const uint16_t* head;
    float* vec;  // [4][4096] activation buffers
    unsigned* counter;
    unsigned epoch0;
    int reuse;
    long long* prof;  // CTA 0 cycles: x load, ring wait, matvec, barrier+attn, issue
    int mode;  // 0 regs, 1 ring, 2 stream only (ring, no barriers), 3 barriers only, 4 ring no attention phase
    int ring_bytes;
    int n_layers;
};

// Phase w of the launch: 4 weight phases per layer (qkv, o, gateup, down), then the head.
struct Ph {
    const uint16_t *a, *b;
    int n_a, n, K, R;
};
__device__ Ph phase_of(const Args& a, int w, int cta, int n_cta) {
    Ph p{};
    const uint16_t* m = nullptr;
    int R = 0, K = 0;
    const uint16_t* m2 = nullptr;
    if (w == 4 * a.n_layers) {
        m = a.head, R = V, K = E;
    } else {
        const Layer& ly = a.layers[w / 4];
        switch (w % 4) {
            case 0: m = ly.qkv, R = QKV, K = E; break;
            case 1: m = ly.o, R = E, K = Q; break;
            case 2: m = ly.gate, m2 = ly.up, R = F, K = E; break;
            default: m = ly.down, R = E, K = F; break;
        }
    }
    int r0, r1;
    cta_rows(R, cta, n_cta, r0, r1);
    p.a = m + size_t(r0) * K;
    p.n_a = p.n = r1 - r0;
    if (m2) p.b = m2 + size_t(r0) * K, p.n = 2 * p.n_a;
    p.K = K;
    p.R = R;
    return p;
}

__device__ __forceinline__ unsigned ld_acq(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ void grid_barrier(const Args& a, unsigned& epoch) {
    ++epoch;
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned target = epoch * gridDim.x;
        asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(a.counter), "r"(1u) : "memory");
        for (long long s = 0; int(ld_acq(a.counter) - target) < 0; ++s)
            if (s > (1ll << 31)) __trap();
    }
    __syncthreads();
}

__device__ __forceinline__ uint32_t su32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

constexpr int kBars = 8;
struct RingState {  // in shared memory, written by thread 0 only
    int off[kBars];
    int issued, consumed, head;
};

__device__ __forceinline__ int row_stride(int K) { return 2 * K + 64; }
__device__ void ring_issue_rows(const Args& a, RingState* rs, char* ring, uint64_t* bars, int total) {
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    for (;;) {
        const int issued = rs->issued, consumed = rs->consumed, head = rs->head;
        if (issued >= total || issued >= consumed + kBars) break;
        const Ph p = phase_of(a, issued, blockIdx.x, gridDim.x);
        const int RS = row_stride(p.K);
        const int bytes = ((p.n + 15) / 16 * 16) * RS;  // whole 16-row tiles (tail rows: stale data, ignored)
        int at;
        if (issued == consumed) {
            at = 0;
        } else {
            const int tail = rs->off[consumed % kBars];
            if (head >= tail) {
                if (a.ring_bytes - head >= bytes) at = head;
                else if (tail >= bytes) at = 0;
                else break;
            } else {
                if (tail - head >= bytes) at = head;
                else break;
            }
        }
        const int slot = issued % kBars;
        const uint32_t bar = su32(bars + slot);
        __syncwarp();
        if (lane == 0) {
            rs->off[slot] = at;
            rs->head = at + bytes;
            rs->issued = issued + 1;
            asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(p.n * p.K * 2) : "memory");
        }
        __syncwarp();
        for (int i = lane; i < p.n; i += 32) {
            const uint16_t* src = i < p.n_a ? p.a + size_t(i) * p.K : p.b + size_t(i - p.n_a) * p.K;
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                             su32(ring + at + i * RS)),
                         "l"(src), "r"(p.K * 2), "r"(bar)
                         : "memory");
        }
        __syncwarp();
    }
}

__device__ void ring_issue(const Args& a, RingState* rs, char* ring, uint64_t* bars, int total) {
    if (a.reuse == 3) return ring_issue_rows(a, rs, ring, bars, total);
    if (threadIdx.x != 0) return;
    while (rs->issued < total && rs->issued < rs->consumed + kBars) {
        const Ph p = phase_of(a, rs->issued, blockIdx.x, gridDim.x);
        const int bytes = p.n * p.K * 2;
        int at;
        if (rs->issued == rs->consumed) {
            at = 0;
        } else {
            const int tail = rs->off[rs->consumed % kBars];
            if (rs->head >= tail) {
                if (a.ring_bytes - rs->head >= bytes) at = rs->head;
                else if (tail >= bytes) at = 0;
                else break;
            } else {
                if (tail - rs->head >= bytes) at = rs->head;
                else break;
            }
        }
        const int slot = rs->issued % kBars;
        rs->off[slot] = at;
        rs->head = at + bytes;
        const uint32_t bar = su32(bars + slot);
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
        const int ba = p.n_a * p.K * 2;
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                         su32(ring + at)),
                     "l"(p.a), "r"(ba), "r"(bar)
                     : "memory");
        if (p.n > p.n_a)
            asm volatile(
                "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(
                    su32(ring + at + ba)),
                "l"(p.b), "r"(bytes - ba), "r"(bar)
                : "memory");
        ++rs->issued;
    }
}

__device__ void ring_wait(uint64_t* bars, int w) {
    const uint32_t bar = su32(bars + w % kBars), parity = uint32_t(w / kBars) & 1u;
    for (;;) {
        uint32_t done;
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(bar), "r"(parity)
                     : "memory");
        if (done) break;
    }
}

// res[i] = row i (in shared memory, rows contiguous from base) · xs (permuted).
__device__ void matvec_smem(const char* base, int n, int K, const float* xs, float* part, float* res) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, cpr = K >> 3;
    int s = 1;
    while (s < 8 && n * s * 2 <= kWarps && cpr / (2 * s) >= 32) s *= 2;
    const float4* xa = reinterpret_cast<const float4*>(xs);
    const float4* xb = xa + cpr;
    for (int t = warp; t < n * s; t += kWarps) {
        const int row = t / s, seg = t - row * s;
        const int c0 = cpr * seg / s, c1 = cpr * (seg + 1) / s;
        const uint4* w = reinterpret_cast<const uint4*>(base + size_t(row) * K * 2);
        float acc = 0.0f;
#pragma unroll 4
        for (int c = c0 + lane; c < c1; c += 32) acc = dot8(w[c], xa[c], xb[c], acc);
        acc = warp_sum(acc);
        if (lane == 0) part[t] = acc;
    }
    __syncthreads();
    sum_segments(part, n, s, res);
}

__device__ __forceinline__ uint16_t bf16_rn(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
__device__ __forceinline__ float bf16f(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
// x (fp32, global) -> three bf16 parts [3][K]
__device__ void load_split(const float* x, int K, uint16_t* xsp) {
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float v = __ldcg(x + k);
        const uint16_t h1 = bf16_rn(v);
        const float r1 = v - bf16f(h1);
        const uint16_t h2 = bf16_rn(r1);
        const float r2 = r1 - bf16f(h2);
        xsp[k] = h1, xsp[K + k] = h2, xsp[2 * K + k] = bf16_rn(r2);
    }
    __syncthreads();
}
__device__ __forceinline__ void mma16816(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
template <int NT>
__device__ __forceinline__ void mma_tiles(const char* base, int RS, int n, int K, const uint16_t* xsp, float* part) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
    const int nb = K >> 5, b0 = nb * warp / kWarps, b1 = nb * (warp + 1) / kWarps;
    float d[NT][4];
#pragma unroll
    for (int i = 0; i < NT; ++i) d[i][0] = d[i][1] = d[i][2] = d[i][3] = 0.0f;
    const char* rowp = base + size_t(g) * RS + 16 * t;
    const uint16_t* xp = xsp + (g < 3 ? g : 0) * K + 8 * t;
    for (int b = b0; b < b1; ++b) {
        uint4 xb = *reinterpret_cast<const uint4*>(xp + 32 * b);
        if (g >= 3) xb = make_uint4(0, 0, 0, 0);
        uint4 lo[NT], hi[NT];
#pragma unroll
        for (int i = 0; i < NT; ++i) {
            lo[i] = *reinterpret_cast<const uint4*>(rowp + size_t(16 * i) * RS + 64 * b);
            hi[i] = *reinterpret_cast<const uint4*>(rowp + size_t(16 * i + 8) * RS + 64 * b);
        }
#pragma unroll
        for (int i = 0; i < NT; ++i) {
            mma16816(d[i], lo[i].x, hi[i].x, lo[i].y, hi[i].y, xb.x, xb.y);
            mma16816(d[i], lo[i].z, hi[i].z, lo[i].w, hi[i].w, xb.z, xb.w);
        }
    }
#pragma unroll
    for (int i = 0; i < NT; ++i) {
        const float c2lo = __shfl_down_sync(kFull, d[i][0], 1), c2hi = __shfl_down_sync(kFull, d[i][2], 1);
        const int r = 16 * i + g;
        if (t == 0) {
            if (r < n) part[r * kWarps + warp] = (d[i][0] + d[i][1]) + c2lo;
            if (r + 8 < n) part[(r + 8) * kWarps + warp] = (d[i][2] + d[i][3]) + c2hi;
        }
    }
}
__device__ void matvec_mma(const char* base, int n, int K, const uint16_t* xsp, float* part, float* res) {
    const int RS = row_stride(K), nt = (n + 15) / 16;
    if (nt == 1) mma_tiles<1>(base, RS, n, K, xsp, part);
    else if (nt == 2) mma_tiles<2>(base, RS, n, K, xsp, part);
    else if (nt == 3) mma_tiles<3>(base, RS, n, K, xsp, part);
    else mma_tiles<4>(base, RS, n, K, xsp, part);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) v += part[i * kWarps + w];
        res[i] = v;
    }
    __syncthreads();
}

template <int kMode, int kReuse>
__global__ void __launch_bounds__(512, 1) lab_kernel(const __grid_constant__ Args a) {
    extern __shared__ __align__(128) char smem[];
    float* xs = reinterpret_cast<float*>(smem);          // 4608 floats (fp32 x or 3 bf16 parts)
    float* part = xs + 4608;                             // 1024
    float* res = part + 1024;                            // 128
    uint64_t* bars = reinterpret_cast<uint64_t*>(res + 128);
    RingState* rs = reinterpret_cast<RingState*>(bars + kBars);
    char* ring = smem + 24576;
    const int total = 4 * a.n_layers + 1;
    unsigned epoch = a.epoch0;
    const bool ring_mode = kMode == 1 || kMode == 2 || kMode == 4 || kMode == 5;
    if (threadIdx.x == 0) {
        for (int i = 0; i < kBars; ++i) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(su32(bars + i)) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        rs->issued = rs->consumed = rs->head = 0;
    }
    __syncthreads();
    if (ring_mode) ring_issue(a, rs, ring, bars, total);
    WeightRegs regs;
    MatvecPlan plan{};
    RowSrc src;
    const auto rowsrc = [&](const Ph& p) {
        RowSrc s;
        s.a = p.a, s.b = p.b, s.n_a = p.n_a, s.n = p.n, s.K = p.K;
        return s;
    };
    if (kMode == 0) {
        src = rowsrc(phase_of(a, 0, blockIdx.x, gridDim.x));
        plan = matvec_preload(src, regs);
    }
    long long acc[5] = {0, 0, 0, 0, 0}, t0 = clock64();
    const auto lap = [&](int k) {
        const long long t = clock64();
        acc[k] += t - t0;
        t0 = t;
    };
    for (int w = 0; w < total; ++w) {
        const Ph p = phase_of(a, w, blockIdx.x, gridDim.x);
        // activation input: the previous phase's output buffer (L2), K values
        const float* xin = a.vec + (w & 3) * 4096;
        if (kMode != 5) {
            if (kReuse == 3) load_split(xin, p.K, reinterpret_cast<uint16_t*>(xs));
            else load_to_perm(VecIn{xin, nullptr}, p.K, xs);
        }
        lap(0);
        if (kMode == 5) {
            ring_wait(bars, w);
            __syncthreads();
            if (threadIdx.x == 0) rs->consumed = w + 1;
            ring_issue(a, rs, ring, bars, total);
            continue;
        } else if (kMode == 6) {
            if (kReuse == 3) matvec_mma(ring, p.n, p.K, reinterpret_cast<uint16_t*>(xs), part, res);
            else matvec_smem(ring, p.n, p.K, xs, part, res);
        } else if (kMode == 0) {
            matvec_finish(src, plan, regs, xs, part, res);
        } else if (ring_mode) {
            ring_wait(bars, w);
            __syncthreads();
            lap(1);
            if (kReuse == 3) matvec_mma(ring + rs->off[w % kBars], p.n, p.K, reinterpret_cast<uint16_t*>(xs), part, res);
            else matvec_smem(ring + rs->off[w % kBars], p.n, p.K, xs, part, res);
            lap(2);
            if (threadIdx.x == 0) rs->consumed = w + 1;
            ring_issue(a, rs, ring, bars, total);
            lap(4);
        }
        int r0, r1;
        cta_rows(p.R, blockIdx.x, gridDim.x, r0, r1);
        float* yout = a.vec + ((w + 1) & 3) * 4096;
        if (kMode != 3)
            for (int i = threadIdx.x; i < p.n; i += blockDim.x) __stcg(yout + (r0 + i) % 4096, res[i] * 1e-3f);
        if (kMode == 0 && w + 1 < total) {
            src = rowsrc(phase_of(a, w + 1, blockIdx.x, gridDim.x));
            plan = matvec_preload(src, regs);
        }
        if (kMode == 2 || kMode == 6) {
            lap(2);
            continue;
        }
        lap(2);
        grid_barrier(a, epoch);
        if (w % 4 == 0 && w < 4 * a.n_layers && kMode != 4) {  // attention phase: no weights, one more barrier
            if (blockIdx.x < 16) load_to_perm(VecIn{a.vec, nullptr}, 1024, xs);
            grid_barrier(a, epoch);
        }
        lap(3);
    }
    if (blockIdx.x == 0 && threadIdx.x == 0)
        for (int k = 0; k < 5; ++k) a.prof[k] = acc[k];
}

// Accuracy of matvec_mma: rows [0, n) of W (global) through the padded shared-memory layout, x fp32.
__global__ void __launch_bounds__(512, 1) mma_accuracy_kernel(const uint16_t* W, int n, int K, const float* x, float* y) {
    extern __shared__ __align__(128) char smem[];
    uint16_t* xsp = reinterpret_cast<uint16_t*>(smem);                 // [3][K]
    float* part = reinterpret_cast<float*>(smem + 18432);              // [n][16]
    float* res = part + 1024;
    char* rows = smem + 24576;
    const int RS = row_stride(K);
    for (int e = threadIdx.x; e < n * K; e += blockDim.x)
        reinterpret_cast<uint16_t*>(rows + size_t(e / K) * RS)[e % K] = W[e];
    load_split(x, K, xsp);
    matvec_mma(rows, n, K, xsp, part, res);
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = res[i];
}

void check_mma_accuracy(const Args& a, int smem) {
    const int ns[4] = {32, 8, 48, 8}, ks[4] = {1024, 2048, 1024, 3072};
    const uint16_t* mats[4] = {a.layers[0].qkv, a.layers[0].o, a.layers[0].gate, a.layers[0].down};
    std::vector<float> x(3072);
    uint32_t s = 7;
    for (auto& v : x) s = s * 1664525u + 1013904223u, v = (float(s >> 8) / 16777216.0f - 0.5f) * float(1 << (s % 7));
    float *xd, *yd;
    CK(cudaMalloc(&xd, 3072 * 4));
    CK(cudaMalloc(&yd, 64 * 4));
    CK(cudaMemcpy(xd, x.data(), 3072 * 4, cudaMemcpyHostToDevice));
    CK(cudaFuncSetAttribute(mma_accuracy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    for (int q = 0; q < 4; ++q) {
        const int n = ns[q], K = ks[q];
        mma_accuracy_kernel<<<1, 512, smem>>>(mats[q], n, K, xd, yd);
        CK(cudaDeviceSynchronize());
        std::vector<float> y(n);
        std::vector<uint16_t> w(size_t(n) * K);
        CK(cudaMemcpy(y.data(), yd, n * 4, cudaMemcpyDeviceToHost));
        CK(cudaMemcpy(w.data(), mats[q], w.size() * 2, cudaMemcpyDeviceToHost));
        double worst = 0, worst32 = 0;
        for (int r = 0; r < n; ++r) {
            double ref = 0, mag = 0;
            float seq = 0;
            for (int k = 0; k < K; ++k) {
                const uint32_t u = uint32_t(w[size_t(r) * K + k]) << 16;
                float wf;
                memcpy(&wf, &u, 4);
                ref += double(wf) * x[k], mag += std::fabs(double(wf) * x[k]), seq = fmaf(wf, x[k], seq);
            }
            worst = std::max(worst, std::fabs(y[r] - ref) / mag);
            worst32 = std::max(worst32, std::fabs(seq - ref) / mag);
        }
        printf("MMA matvec %2dx%d: worst |y - fp64| / sum|w x| = %.2g (sequential fp32 FMA: %.2g)\n", n, K, worst, worst32);
    }
}

int main(int argc, char** argv) {
    int dev = 0;
    CK(cudaSetDevice(dev));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, dev));
    const int n_cta = prop.multiProcessorCount;
    printf("device %s, %d SMs, smem optin %zu\n", prop.name, n_cta, prop.sharedMemPerBlockOptin);
    const size_t per_layer = size_t(QKV) * E + size_t(E) * Q + 2 * size_t(F) * E + size_t(E) * F;
    const size_t total_w = per_layer * L + size_t(V) * E;
    uint16_t* w = nullptr;
    CK(cudaMalloc(&w, total_w * 2));
    {
        std::vector<uint16_t> h(total_w);
        uint32_t s = 1;
        for (auto& v : h) s = s * 1664525u + 1013904223u, v = uint16_t(0x3c00 | ((s >> 16) & 0x3ff)) ^ ((s >> 8) & 0x8000);
        CK(cudaMemcpy(w, h.data(), total_w * 2, cudaMemcpyHostToDevice));
    }
    Args a{};
    size_t o = 0;
    for (int l = 0; l < L; ++l) {
        Layer& ly = a.layers[l];
        ly.qkv = w + o, o += size_t(QKV) * E;
        ly.o = w + o, o += size_t(E) * Q;
        ly.gate = w + o, o += size_t(F) * E;
        ly.up = w + o, o += size_t(F) * E;
        ly.down = w + o, o += size_t(E) * F;
    }
    a.head = w + o;
    CK(cudaMalloc(&a.vec, 4 * 4096 * 4));
    CK(cudaMemset(a.vec, 0, 4 * 4096 * 4));
    CK(cudaMalloc(&a.counter, 4));
    CK(cudaMemset(a.counter, 0, 4));
    a.n_layers = L;
    CK(cudaMalloc(&a.prof, 5 * 8));
    const int smem = int(prop.sharedMemPerBlockOptin);
    a.ring_bytes = argc > 1 ? atoi(argv[1]) * 1024 : smem - 24576;
    struct Variant {
        void (*fn)(Args);
        int mode, reuse;
    };
    const Variant variants[] = {{lab_kernel<0, 0>, 0, 0}, {lab_kernel<1, 0>, 1, 0}, {lab_kernel<2, 0>, 2, 0},
                                {lab_kernel<3, 0>, 3, 0}, {lab_kernel<4, 0>, 4, 0}, {lab_kernel<5, 0>, 5, 0},
                                {lab_kernel<6, 0>, 6, 0}, {lab_kernel<1, 3>, 1, 3}, {lab_kernel<2, 3>, 2, 3},
                                {lab_kernel<6, 3>, 6, 3}};
    for (const Variant& v : variants)
        CK(cudaFuncSetAttribute(v.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int per_sm = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, variants[0].fn, 512, smem));
    printf("ring %d KB, blocks/SM %d, weights %.1f MB\n", a.ring_bytes / 1024, per_sm, total_w * 2 / 1e6);
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    check_mma_accuracy(a, smem);
    unsigned epoch = 0;
    const char* names[] = {"register preload (current)", "TMA byte ring", "stream only (ring, no barriers)",
                           "barriers only (no weights)", "TMA ring, 113 barriers (no attn phase)",
                           "TMA only (no x, no matvec, no barriers)", "consumer only (x + matvec, no TMA/barriers)"};
    for (const Variant& v : variants) {
        const int mode = v.mode;
        a.mode = mode;
        a.reuse = v.reuse;
        if (a.reuse == 3) printf("  MMA+rows: ");
        std::vector<float> ms;
        for (int rep = 0; rep < 25; ++rep) {
            a.epoch0 = epoch;
            void* params[] = {&a};
            CK(cudaEventRecord(e0));
            CK(cudaLaunchCooperativeKernel((void*)v.fn, n_cta, 512, params, smem, 0));
            CK(cudaEventRecord(e1));
            CK(cudaEventSynchronize(e1));
            float t;
            CK(cudaEventElapsedTime(&t, e0, e1));
            ms.push_back(t);
            const int nb = (mode == 2 || mode == 5 || mode == 6) ? 0 : (4 * L + 1) + (mode == 4 ? 0 : L);
            epoch += nb;
        }
        std::sort(ms.begin() + 5, ms.end());
        const float med = ms[5 + 10];
        long long pf[5];
        CK(cudaMemcpy(pf, a.prof, sizeof pf, cudaMemcpyDeviceToHost));
        printf("%-40s median %.3f ms  %.0f GB/s  (%.1f%% of 4.8 TB/s)  CTA0 us: x %.1f wait %.1f matvec %.1f barrier %.1f issue %.1f\n",
               names[mode], med, total_w * 2 / (med * 1e-3) / 1e9, total_w * 2 / (med * 1e-3) / 4.8e12 * 100,
               pf[0] / 1980.0, pf[1] / 1980.0, pf[2] / 1980.0, pf[3] / 1980.0, pf[4] / 1980.0);
    }
    return 0;
}
