// Persistent cooperative decode megakernels: one launch runs a whole talker step (all layers, final norm,
// codec_head) or a whole code-predictor frame (16 positions, 15 heads, on-device sampling). Per layer:
// [norm+QKV] | [q/k-norm, RoPE, KV append, attention partials] | [combine+O-proj+residual] |
// [norm+gate/up+SiLU] | [down+residual], separated by grid barriers on monotonic counters owned by the
// backend instance (never reset). A spin watchdog sets sync.error and ends the launch instead of hanging.
#include <algorithm>
#include <cstdio>

#include "cuda/cuda_check.h"
#include "cuda/stack_device.cuh"
#include "cuda/stack_kernels.h"

namespace qtts::cuda {

namespace {

using namespace dev;

// ---- shared-memory plan (bytes; every region 16-byte aligned) ----
struct SmemPlan {
    int xs, part, res, red, ired, att_q, att_k, att_v, att_w, cw, lg, cidx, cp, codes, bars, ring, total;
};

QTTS_HD inline int align16(int x) { return (x + 15) & ~15; }

constexpr int kSlotBytes = 32768;  // one weight-ring slot (a TMA bulk copy of whole rows)

// n_slots = 0 gives the size of everything but the ring.
QTTS_HD inline SmemPlan make_smem_plan(int max_k, int rows_max, int hd, int vocab_sample, int n_groups, int n_slots) {
    SmemPlan p{};
    int o = 0;
    const auto take = [&](int bytes, int align) {
        o = (o + align - 1) / align * align;
        const int at = o;
        o += align16(bytes);
        return at;
    };
    p.xs = take(max_k * 4, 16);
    p.part = take(rows_max * 8 * 4, 16);
    p.res = take(rows_max * 4, 16);
    p.red = take(kWarps * 4, 16);
    p.ired = take(2 * kWarps * 4 + 64, 16);
    p.att_q = take(hd * 4, 16);
    p.att_k = take(hd * 4, 16);
    p.att_v = take(hd * 4, 16);
    p.att_w = take(kWarps * (2 + hd) * 4, 16);
    p.cw = take((2 + hd) * 4, 16);
    p.lg = take(vocab_sample * 4, 16);
    p.cidx = take((vocab_sample > 0 ? (vocab_sample > 1024 ? vocab_sample : 1024) : 0) * 4, 16);
    p.cp = take(vocab_sample * 8, 16);  // also holds the top-p scratch (values, order) before the draw
    p.codes = take((n_groups + 4) * 4, 16);
    p.bars = take(8 * 8, 16);
    p.ring = take(n_slots * kSlotBytes, 128);
    p.total = o;
    return p;
}

QTTS_HD inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

QTTS_HD inline int rows_max_of(const StackDev& st, int vocab, int in_dim, int n_cta) {
    const auto mx = [](int a, int b) { return a > b ? a : b; };
    int r = ceil_div(st.q_dim() + 2 * st.kv_dim(), n_cta);
    r = mx(r, ceil_div(st.n_embd, n_cta));
    r = mx(r, 2 * ceil_div(st.n_ff, n_cta));
    r = mx(r, ceil_div(vocab, n_cta));
    (void)in_dim;
    return r;
}

QTTS_HD inline int max_k_of(const StackDev& st, int in_dim) {
    const auto mx = [](int a, int b) { return a > b ? a : b; };
    return mx(mx(st.n_embd, st.q_dim()), mx(st.n_ff, in_dim));
}

// ---- grid barrier ----
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}
__device__ __forceinline__ unsigned long long global_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

struct Grid {
    GridSync sync;
    int cta = 0, n_cta = 0;
    unsigned epoch = 0;  // barriers completed so far, counting every earlier launch
    int* fail = nullptr; // shared flag
    int nb = 0;          // barriers of this launch so far (trace slot)
    unsigned long long* sub = nullptr;  // CTA 0 with tracing: sub-phase stamps of weight phases

    // All CTAs arrive, then all leave. False when the watchdog fired (then every CTA must return).
    __device__ bool barrier() {
        ++epoch;
        __syncthreads();
        if (threadIdx.x == 0) {
            const unsigned target = epoch * unsigned(n_cta);
            const unsigned long long t0 = global_ns();
            // Release: this CTA's writes (ordered by the __syncthreads above) before the arrival; the acquire
            // loads below order the other CTAs' writes before our reads (CUTLASS generic-barrier pattern).
            asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(sync.counter), "r"(1u) : "memory");
            int failed = 0;
            for (unsigned spin = 1;; ++spin) {
                if (int(ld_acquire(sync.counter) - target) >= 0) break;
                if (sync.backoff_ns) __nanosleep(sync.backoff_ns);
                if ((spin & 255u) == 0) {
                    if (*(volatile int*)sync.error) {
                        failed = 1;
                        break;
                    }
                    if (global_ns() - t0 > sync.timeout_ns) {
                        atomicExch(sync.error, 1);
                        failed = 1;
                        break;
                    }
                }
            }
            *fail = failed;
            if (sync.trace && nb + 1 < sync.trace_cap) {
                unsigned long long* t = sync.trace + (size_t(cta) * sync.trace_cap + nb + 1) * 2;
                t[0] = t0;
                t[1] = global_ns();
            }
        }
        ++nb;
        __syncthreads();
        return *fail == 0;
    }
    // Called once at the end by every CTA: CTA 0 records the epoch for the next launch.
    __device__ void finish() const {
        if (cta == 0 && threadIdx.x == 0) {
            *sync.epoch = epoch;
            if (sync.trace) {  // SM clock over the launch: (ns, cycles) at the end vs the start
                sync.trace[size_t(sync.trace_cap - 9) * 2] = global_ns();
                sync.trace[size_t(sync.trace_cap - 9) * 2 + 1] = clock64();
            }
        }
    }
};

#define QTTS_GRID_BARRIER(g)          \
    do {                              \
        if (!(g).barrier()) return;   \
    } while (0)

struct Smem {
    float *xs, *part, *res, *red;
    int* ired;
    float *att_q, *att_k, *att_v, *att_w, *cw, *lg;
    int* cidx;
    float* cval;  // top-p scratch, aliases cp
    double* cp;
    int *sorted, *codes;  // sorted: top-p scratch, aliases cp; cidx doubles as the radix histograms
    unsigned long long* bars;
    char* ring;
};

__device__ Smem carve(char* base, const SmemPlan& p, int vocab_sample) {
    Smem s;
    s.xs = reinterpret_cast<float*>(base + p.xs);
    s.part = reinterpret_cast<float*>(base + p.part);
    s.res = reinterpret_cast<float*>(base + p.res);
    s.red = reinterpret_cast<float*>(base + p.red);
    s.ired = reinterpret_cast<int*>(base + p.ired);
    s.att_q = reinterpret_cast<float*>(base + p.att_q);
    s.att_k = reinterpret_cast<float*>(base + p.att_k);
    s.att_v = reinterpret_cast<float*>(base + p.att_v);
    s.att_w = reinterpret_cast<float*>(base + p.att_w);
    s.cw = reinterpret_cast<float*>(base + p.cw);
    s.lg = reinterpret_cast<float*>(base + p.lg);
    s.cidx = reinterpret_cast<int*>(base + p.cidx);
    s.cp = reinterpret_cast<double*>(base + p.cp);
    s.cval = reinterpret_cast<float*>(base + p.cp);
    s.sorted = reinterpret_cast<int*>(base + p.cp) + vocab_sample;
    s.codes = reinterpret_cast<int*>(base + p.codes);
    s.bars = reinterpret_cast<unsigned long long*>(base + p.bars);
    s.ring = base + p.ring;
    return s;
}

// ---- weight stream: TMA bulk copies into a ring of shared-memory slots ----
// Every weight byte a CTA needs in a launch forms one ordered stream: its row share of each weight phase
// (QKV, O, gate+up, down per layer, then the head; the predictor repeats this per position), cut into
// chunks of whole rows of at most kSlotBytes. Thread 0 issues chunks as slots free up (after each phase),
// so HBM streams the next phases' weights through attention, barriers and sampling. Each slot has an
// mbarrier (expect-tx); chunk q lives in slot q % n_slots and completes phase parity (q / n_slots) & 1.

struct WeightPhase {  // this CTA's rows of one weight phase: row i = a + i·K for i < n_a, else b + (i - n_a)·K
    const uint16_t* a = nullptr;
    const uint16_t* b = nullptr;
    int n_a = 0, n = 0, K = 0, r0 = 0;
};

__device__ __forceinline__ WeightPhase cta_phase(const uint16_t* w, int R, int K, const Grid& g) {
    int r1;
    WeightPhase p;
    cta_rows(R, g.cta, g.n_cta, p.r0, r1);
    p.a = w + size_t(p.r0) * K;
    p.n_a = p.n = r1 - p.r0;
    p.K = K;
    return p;
}

// Kind k of layer L: 0 QKV, 1 O, 2 gate+up, 3 down.
__device__ __forceinline__ WeightPhase layer_phase(const StackDev& st, int layer, int kind, const Grid& g) {
    const LayerDev& L = st.layers[layer];
    const int E = st.n_embd;
    if (kind == 0) return cta_phase(L.wqkv, st.q_dim() + 2 * st.kv_dim(), E, g);
    if (kind == 1) return cta_phase(L.wo, E, st.q_dim(), g);
    if (kind == 3) return cta_phase(L.w_down, E, st.n_ff, g);
    WeightPhase p = cta_phase(L.w_gate, st.n_ff, E, g);
    p.b = L.w_up + size_t(p.r0) * E;
    p.n = 2 * p.n_a;
    return p;
}

// The weight stream of one launch. Talker: 4 phases per layer, then the codec head. Predictor, per position
// t: [mtp projection], 4 per layer, then (t >= 1) lm_head[t-1].
struct Stream {
    const StackDev* st = nullptr;
    int n_pass = 1;                   // positions (predictor) or 1 (talker)
    int head_from = 0;                // first pass with a head
    const uint16_t* head = nullptr;   // talker: codec_head; predictor: lm_head[0] (pass t uses head + (t-1)·V·E)
    int head_rows = 0;
    const uint16_t* mtp_w = nullptr;  // predictor projection [E, in_dim] or null
    int in_dim = 0;

    __device__ int per_pass(int t) const { return (mtp_w ? 1 : 0) + 4 * st->n_layer + (t >= head_from ? 1 : 0); }
    __device__ int total() const {
        int n = 0;
        for (int t = 0; t < n_pass; ++t) n += per_pass(t);
        return n;
    }
    __device__ WeightPhase phase(int w, const Grid& g) const {
        int t = 0;
        while (w >= per_pass(t)) w -= per_pass(t++);
        if (mtp_w) {
            if (w == 0) return cta_phase(mtp_w, st->n_embd, in_dim, g);
            --w;
        }
        if (w < 4 * st->n_layer) return layer_phase(*st, w / 4, w % 4, g);
        const int pass_head = t - head_from;
        return cta_phase(head + size_t(pass_head) * head_rows * st->n_embd, head_rows, st->n_embd, g);
    }
};

__device__ __forceinline__ int rows_per_chunk(int K) {
    const int r = kSlotBytes / (K * 2);
    return r > 0 ? r : 1;
}
[[maybe_unused]] __device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return uint32_t(__cvta_generic_to_shared(p));
}

struct Ring {
    char* slots = nullptr;
    unsigned long long* bars = nullptr;
    int n_slots = 0;
    int consumed = 0;                         // chunks consumed (every thread keeps the same count)
    int issued = 0, w_cur = 0, row_cur = 0;   // producer cursor (thread 0)
    int w_total = 0;
};

__device__ void ring_init(Ring& r, const Smem& sm, int n_slots, int w_total) {
    r.slots = sm.ring;
    r.bars = sm.bars;
    r.n_slots = n_slots;
    r.w_total = w_total;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x == 0) {
        for (int i = 0; i < n_slots; ++i)
            asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(r.bars + i)), "r"(1) : "memory");
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
#endif
    __syncthreads();
}

// Thread 0: issues chunks while slots are free (call after a phase released its chunks).
__device__ void ring_issue(Ring& r, const Stream& sp, const Grid& g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (threadIdx.x != 0) return;
    while (r.issued < r.consumed + r.n_slots && r.w_cur < r.w_total) {
        const WeightPhase ph = sp.phase(r.w_cur, g);
        if (r.row_cur >= ph.n) {
            ++r.w_cur;
            r.row_cur = 0;
            continue;
        }
        const int i0 = r.row_cur, i1 = min(ph.n, i0 + rows_per_chunk(ph.K));
        const uint32_t row_bytes = uint32_t(ph.K) * 2;
        char* dst = r.slots + size_t(r.issued % r.n_slots) * kSlotBytes;
        const uint32_t bar = smem_u32(r.bars + r.issued % r.n_slots);
        // No proxy fence: the slot's last generic reads are ordered before this point by the __syncthreads
        // that precedes every release (as in CUTLASS's TMA pipelines, where an mbarrier orders them).
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(uint32_t(i1 - i0) * row_bytes)
                     : "memory");
        if (i0 < ph.n_a) {
            const int e = min(i1, ph.n_a);
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                         ::"r"(smem_u32(dst)), "l"(ph.a + size_t(i0) * ph.K), "r"(uint32_t(e - i0) * row_bytes), "r"(bar)
                         : "memory");
        }
        if (i1 > ph.n_a) {
            const int s0 = max(i0, ph.n_a);
            asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                         ::"r"(smem_u32(dst + size_t(s0 - i0) * row_bytes)), "l"(ph.b + size_t(s0 - ph.n_a) * ph.K),
                         "r"(uint32_t(i1 - s0) * row_bytes), "r"(bar)
                         : "memory");
        }
        ++r.issued;
        r.row_cur = i1;
    }
#else
    (void)r, (void)sp, (void)g;
#endif
}

// Waits until every chunk of phase `ph` (the next one in stream order) is in shared memory; returns the
// index of its first chunk. Before Hopper the CTA copies the rows itself here.
__device__ int ring_acquire(Ring& r, const Stream& sp, const WeightPhase& ph, const Grid& g) {
    const int rpc = rows_per_chunk(ph.K), nch = (ph.n + rpc - 1) / rpc, first = r.consumed;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    ring_issue(r, sp, g);
    const unsigned long long t0 = global_ns();
    for (int q = first; q < first + nch; ++q) {
        const uint32_t bar = smem_u32(r.bars + q % r.n_slots), parity = uint32_t(q / r.n_slots) & 1u;
        for (unsigned spin = 1;; ++spin) {
            uint32_t done;
            asm volatile(
                "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                : "=r"(done)
                : "r"(bar), "r"(parity)
                : "memory");
            if (done) break;
            if ((spin & 1023u) == 0 && global_ns() - t0 > g.sync.timeout_ns) {
                if (threadIdx.x == 0) atomicExch(g.sync.error, 2);
                __trap();
            }
        }
    }
#else
    (void)sp, (void)g, (void)nch;
    const int cpr = ph.K >> 3;
    for (int c = threadIdx.x; c < ph.n * cpr; c += blockDim.x) {
        const int i = c / cpr, k = c - i * cpr;
        const uint16_t* src = i < ph.n_a ? ph.a + size_t(i) * ph.K : ph.b + size_t(i - ph.n_a) * ph.K;
        const int q = first + i / rpc;
        uint4* dst = reinterpret_cast<uint4*>(r.slots + size_t(q % r.n_slots) * kSlotBytes +
                                              size_t(i % rpc) * ph.K * 2);
        dst[k] = ld_weight(reinterpret_cast<const uint4*>(src) + k);
    }
    __syncthreads();
#endif
    return first;
}

// After a __syncthreads that ends every read of the phase's slots: frees them and refills the ring.
__device__ __forceinline__ void ring_release(Ring& r, const Stream& sp, const WeightPhase& ph, const Grid& g) {
    const int rpc = rows_per_chunk(ph.K);
    r.consumed += (ph.n + rpc - 1) / rpc;
    ring_issue(r, sp, g);
}

// res[i] = row i · x for the phase's n rows (in ring chunks from `first`), x permuted in shared memory.
// Each row is cut into s segments (s divides kWarps, so a warp always owns the same segment and keeps its
// activation chunks in registers). part: [n·8]. Deterministic: fixed task map, ordered partial sums.
__device__ void matvec_ring(const Ring& r, int first, const WeightPhase& ph, const float* xs, float* part,
                            float* res) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n = ph.n, K = ph.K, cpr = K >> 3;
    const int rpc = rows_per_chunk(K);
    int s = 1;
    long long best = 1ll << 60;
    for (int c = 1; c <= 8; c *= 2) {
        if (c > 1 && cpr / c < 32) break;
        const long long cost = (long long)((n * c + kWarps - 1) / kWarps) * ((cpr + c - 1) / c);
        if (cost < best) best = cost, s = c;
    }
    const float4* xa = reinterpret_cast<const float4*>(xs);
    const float4* xb = xa + cpr;
    const int seg = warp % s, c0 = cpr * seg / s, c1 = cpr * (seg + 1) / s;
    float4 ra[4], rb[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int c = c0 + lane + 32 * j;
        ra[j] = c < c1 ? xa[c] : make_float4(0, 0, 0, 0);
        rb[j] = c < c1 ? xb[c] : make_float4(0, 0, 0, 0);
    }
    for (int t = warp; t < n * s; t += kWarps) {
        const int row = t / s;
        const int q = first + row / rpc;
        const uint4* w = reinterpret_cast<const uint4*>(r.slots + size_t(q % r.n_slots) * kSlotBytes +
                                                        size_t(row % rpc) * K * 2);
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = c0 + lane + 32 * j;
            if (c < c1) acc = dot8(w[c], ra[j], rb[j], acc);
        }
        for (int c = c0 + lane + 128; c < c1; c += 32) acc = dot8(w[c], xa[c], xb[c], acc);
        acc = warp_sum(acc);
        if (lane == 0) part[t] = acc;
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = 0.0f;
        for (int g = 0; g < s; ++g) v += part[i * s + g];
        res[i] = v;
    }
    __syncthreads();
}

// One weight phase: acquire its chunks, prepare the activation vector (prep), matvec, release, epilogue.
template <class Prep, class Epi>
__device__ __forceinline__ void weight_phase(Ring& r, const Stream& sp, int& w, const Grid& g, const Smem& sm,
                                             Prep prep, Epi epi) {
    const WeightPhase ph = sp.phase(w, g);
    // Sub-phase stamps (trace): slot base by phase kind (QKV, O, gate/up, down, head).
    unsigned long long* st = g.sub ? g.sub + 2 * 6 * (w >= 4 * sp.st->n_layer ? 4 : w % 4) : nullptr;
    if (st && threadIdx.x == 0) st[0] = global_ns();
    prep();  // activation loads overlap the wait for the weights
    if (st && threadIdx.x == 0) st[2] = global_ns();
    const int first = ring_acquire(r, sp, ph, g);
    if (st && threadIdx.x == 0) st[4] = global_ns();
    matvec_ring(r, first, ph, sm.xs, sm.part, sm.res);
    if (st && threadIdx.x == 0) st[6] = global_ns();
    ring_release(r, sp, ph, g);
    if (st && threadIdx.x == 0) st[8] = global_ns();
    epi(ph);
    if (st && threadIdx.x == 0) st[10] = global_ns();
    ++w;
}

// ---- phases without weights ----

// [q/k-norm, RoPE, KV append, attention partials] for items (head, chunk) of the single new position `pos`.
__device__ void phase_attention(const Grid& g, const StackDev& st, int layer, int pos, int n_chunks,
                                int max_chunks, const MegaScratch& sc, const Smem& sm) {
    const LayerDev& L = st.layers[layer];
    const int hd = st.head_dim, q_dim = st.q_dim(), kv_dim = st.kv_dim(), group = st.n_head / st.n_kv_head;
    const int n_items = st.n_head * n_chunks, npos = pos + 1, half = hd >> 1;
    const float scale = 1.0f / sqrtf(float(hd));
    const float* cs = st.rope_cos + size_t(pos) * half;
    const float* sn = st.rope_sin + size_t(pos) * half;
    float* kc = st.k_cache + size_t(layer) * st.capacity * kv_dim;
    float* vc = st.v_cache + size_t(layer) * st.capacity * kv_dim;
    for (int item = g.cta; item < n_items; item += g.n_cta) {
        const int h = item / n_chunks, c = item - h * n_chunks, kvh = h / group;
        const int j0 = int((long long)npos * c / n_chunks), j1 = int((long long)npos * (c + 1) / n_chunks);
        const bool has_new = j1 == npos;
        KeyRegs pre;  // cached keys do not depend on this step: load them while q is being normalized
        attend_preload(kc + kvh * hd, vc + kvh * hd, kv_dim, hd, j0, j1, pos, pre);
        const int warp = threadIdx.x >> 5;
        NormRopeRegs nr;
        if (warp == 0) norm_rope_load(nr, L.q_norm, hd, cs, sn);
        if (warp == 1 && has_new) norm_rope_load(nr, L.k_norm, hd, cs, sn);
        for (int d = threadIdx.x; d < hd; d += blockDim.x) {
            sm.att_q[d] = __ldcg(sc.qkv + h * hd + d);
            if (has_new) {
                sm.att_k[d] = __ldcg(sc.qkv + q_dim + kvh * hd + d);
                sm.att_v[d] = __ldcg(sc.qkv + q_dim + kv_dim + kvh * hd + d);
            }
        }
        __syncthreads();
        if (warp == 0) norm_rope_apply(sm.att_q, nr, hd, st.eps);
        if (warp == 1 && has_new) norm_rope_apply(sm.att_k, nr, hd, st.eps);
        __syncthreads();
        if (has_new && h % group == 0) {
            for (int d = threadIdx.x; d < hd; d += blockDim.x) {
                kc[size_t(pos) * kv_dim + kvh * hd + d] = sm.att_k[d];
                vc[size_t(pos) * kv_dim + kvh * hd + d] = sm.att_v[d];
            }
        }
        float* r = sm.cw;  // (max, sum, acc[hd]) of this chunk
        float* slot = n_chunks == 1 ? nullptr : sc.part + size_t(h * max_chunks + c) * (2 + hd);
        attend_block(sm.att_q, hd, scale, kc + kvh * hd, vc + kvh * hd, kv_dim, j0, j1, pos, sm.att_k, sm.att_v,
                     sm.att_w, r, pre, slot);
        if (n_chunks == 1) {
            for (int d = threadIdx.x; d < hd; d += blockDim.x) __stcg(sc.attn + h * hd + d, r[2 + d] / r[1]);
            continue;
        }
        // The last chunk of head h to finish combines all of them (fixed chunk order: deterministic).
        if (threadIdx.x == 0) {
            __threadfence();
            const int done = atomicAdd(sc.head_done + h, 1);
            *g.fail = done == n_chunks - 1;  // reused as a CTA-wide flag; barrier() rewrites it
            if (done == n_chunks - 1) {
                __threadfence();
                sc.head_done[h] = 0;
            }
        }
        __syncthreads();
        if (*g.fail) {
            const float* ph = sc.part + size_t(h) * max_chunks * (2 + hd);
            for (int d = threadIdx.x; d < hd; d += blockDim.x) {
                float m[kMaxChunks], l[kMaxChunks], acc[kMaxChunks];
#pragma unroll
                for (int q = 0; q < kMaxChunks; ++q) {
                    const bool ok = q < n_chunks;
                    m[q] = ok ? __ldcg(ph + q * (2 + hd)) : -INFINITY;
                    l[q] = ok ? __ldcg(ph + q * (2 + hd) + 1) : 0.0f;
                    acc[q] = ok ? __ldcg(ph + q * (2 + hd) + 2 + d) : 0.0f;
                }
                float M = -INFINITY;
#pragma unroll
                for (int q = 0; q < kMaxChunks; ++q) M = fmaxf(M, m[q]);
                float Lsum = 0.0f, o = 0.0f;
#pragma unroll
                for (int q = 0; q < kMaxChunks; ++q) {
                    const float wq = m[q] == -INFINITY ? 0.0f : expf(m[q] - M);
                    Lsum = fmaf(l[q], wq, Lsum);
                    o = fmaf(acc[q], wq, o);
                }
                __stcg(sc.attn + h * hd + d, o / Lsum);
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) *g.fail = 0;
    }
}

// Runs every layer for position `pos` (its input x0). Returns false when a barrier failed.
__device__ bool run_layers(Grid& g, Ring& r, const Stream& sp, int& w, const StackDev& st, VecIn x0, int pos,
                           int n_chunks, int max_chunks, const MegaScratch& sc, const Smem& sm) {
    for (int l = 0; l < st.n_layer; ++l) {
        const LayerDev& L = st.layers[l];
        const VecIn in = l == 0 ? x0 : VecIn{sc.h, nullptr};
        // [norm + QKV]
        weight_phase(
            r, sp, w, g, sm, [&] { norm_to_perm(in, L.input_norm, st.n_embd, st.eps, sm.xs, sm.red); },
            [&](const WeightPhase& ph) {
                for (int i = threadIdx.x; i < ph.n; i += blockDim.x) __stcg(sc.qkv + ph.r0 + i, sm.res[i]);
            });
        if (!g.barrier()) return false;
        phase_attention(g, st, l, pos, n_chunks, max_chunks, sc, sm);
        if (!g.barrier()) return false;
        // [O-proj + residual]
        weight_phase(
            r, sp, w, g, sm, [&] { load_to_perm(VecIn{sc.attn, nullptr}, st.q_dim(), sm.xs); },
            [&](const WeightPhase& ph) {
                for (int i = threadIdx.x; i < ph.n; i += blockDim.x)
                    __stcg(sc.h + ph.r0 + i, __fadd_rn(in(ph.r0 + i), sm.res[i]));
            });
        if (!g.barrier()) return false;
        // [norm + gate/up + SiLU·up]
        weight_phase(
            r, sp, w, g, sm, [&] { norm_to_perm(VecIn{sc.h, nullptr}, L.post_norm, st.n_embd, st.eps, sm.xs, sm.red); },
            [&](const WeightPhase& ph) {
                const int n = ph.n_a;
                for (int i = threadIdx.x; i < n; i += blockDim.x) {
                    const float gt = sm.res[i], up = sm.res[n + i];
                    __stcg(sc.act + ph.r0 + i, __fmul_rn(gt / (1.0f + expf(-gt)), up));
                }
            });
        if (!g.barrier()) return false;
        // [down + residual]
        weight_phase(
            r, sp, w, g, sm, [&] { load_to_perm(VecIn{sc.act, nullptr}, st.n_ff, sm.xs); },
            [&](const WeightPhase& ph) {
                for (int i = threadIdx.x; i < ph.n; i += blockDim.x)
                    __stcg(sc.h + ph.r0 + i, __fadd_rn(__ldcg(sc.h + ph.r0 + i), sm.res[i]));
            });
        if (!g.barrier()) return false;
    }
    return true;
}

__device__ Grid make_grid(const GridSync& sync, int* fail_flag) {
    Grid g;
    g.sync = sync;
    g.cta = blockIdx.x;
    g.n_cta = gridDim.x;
    g.epoch = *(volatile unsigned*)sync.epoch;
    g.fail = fail_flag;
    if (sync.trace && threadIdx.x == 0) {
        sync.trace[size_t(g.cta) * sync.trace_cap * 2 + 1] = global_ns();
        if (g.cta == 0) sync.trace[0] = clock64();
    }
    return g;
}

__global__ void __launch_bounds__(kMegaThreads, 1)
    talker_step_kernel(const __grid_constant__ TalkerStepArgs a, int max_chunks, int n_slots) {
    extern __shared__ __align__(128) char smem_raw[];
    __shared__ int fail_flag;
    const StackDev& st = a.stack;
    const SmemPlan plan = make_smem_plan(max_k_of(st, st.n_embd), rows_max_of(st, a.vocab, st.n_embd, gridDim.x),
                                         st.head_dim, 0, 0, n_slots);
    const Smem sm = carve(smem_raw, plan, 0);
    Grid g = make_grid(a.sync, &fail_flag);
    if (a.sync.trace && g.cta == 0) g.sub = a.sync.trace + size_t(a.sync.trace_cap - 40) * 2;
    Stream sp;
    sp.st = &st;
    sp.head_from = 0;
    sp.head = a.head;
    sp.head_rows = a.vocab;
    Ring r;
    ring_init(r, sm, n_slots, sp.total());
    ring_issue(r, sp, g);
    int w = 0;
    if (!run_layers(g, r, sp, w, st, VecIn{a.x0, nullptr}, a.pos, a.n_chunks, max_chunks, a.s, sm)) return;
    // [final norm + codec head]; CTA 0 also stores the normed hidden.
    weight_phase(
        r, sp, w, g, sm,
        [&] {
            norm_to_perm(VecIn{a.s.h, nullptr}, st.final_norm, st.n_embd, st.eps, sm.xs, sm.red,
                         g.cta == 0 ? a.hidden_out : nullptr);
        },
        [&](const WeightPhase& ph) {
            for (int i = threadIdx.x; i < ph.n; i += blockDim.x) __stcg(a.logits_out + ph.r0 + i, sm.res[i]);
        });
    g.finish();
}

// ---- on-device sampling (every CTA computes the same token; same rules as core/sampler.cpp) ----

__device__ __forceinline__ unsigned long long splitmix64(unsigned long long x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
__device__ __forceinline__ double counter_uniform(unsigned long long seed, unsigned long long stream,
                                                  unsigned long long counter) {
    const unsigned long long bits = splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ counter);
    return double(bits >> 11) * 0x1.0p-53;
}

__device__ __forceinline__ unsigned order_key(float f) {
    const unsigned b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key_value(unsigned k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// Exclusive prefix sum over the block (thread order); *total gets the sum. wsum: shared [kWarps].
__device__ int block_exclusive_scan(int v, int* wsum, int* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(kFull, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) wsum[warp] = x;
    __syncthreads();
    int off = 0, tot = 0;
    for (int w = 0; w < kWarps; ++w) {
        const int s = wsum[w];
        if (w < warp) off += s;
        tot += s;
    }
    __syncthreads();
    *total = tot;
    return off + x - v;
}

// Lowest index of the maximum (torch.argmax / core argmax).
__device__ int block_argmax(const float* v, int n, float* red, int* ired) {
    float bv = -INFINITY;
    int bi = n;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (v[i] > bv || (bi == n && v[i] == bv)) bv = v[i], bi = i;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(kFull, bv, o);
        const int oi = __shfl_xor_sync(kFull, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = bv, ired[warp] = bi;
    __syncthreads();
    float rv = red[0];
    int ri = ired[0];
    for (int w = 1; w < kWarps; ++w)
        if (red[w] > rv || (red[w] == rv && ired[w] < ri)) rv = red[w], ri = ired[w];
    __syncthreads();
    return ri >= n ? 0 : ri;
}

// The k-th largest value (with multiplicity) of v[0, n): radix select over order-preserving keys, 8 bits a
// pass, with warp-aggregated shared-memory histograms. hist: shared [4][256] ints; sel: shared [2] ints.
__device__ float block_kth_largest(const float* v, int n, int k, int* hist, int* sel) {
    for (int i = threadIdx.x; i < 4 * 256; i += blockDim.x) hist[i] = 0;
    if (threadIdx.x == 0) sel[0] = 0, sel[1] = k;
    __syncthreads();
    const int lane = threadIdx.x & 31;
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        const unsigned prefix = unsigned(sel[0]);
        int* h = hist + pass * 256;
        for (int base = 0; base < n; base += blockDim.x) {
            const int i = base + threadIdx.x;
            const unsigned key = i < n ? order_key(v[i]) : 0u;
            const bool match = i < n && (pass == 0 || (key >> (shift + 8)) == (prefix >> (shift + 8)));
            const unsigned active = __ballot_sync(kFull, match);
            if (match) {
                const unsigned digit = (key >> shift) & 255u;
                const unsigned same = __match_any_sync(active, digit);
                if (lane == __ffs(same) - 1) atomicAdd(h + digit, __popc(same));
            }
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            // Digits from 255 down: lane l owns digits 255 - 8l .. 248 - 8l.
            const int need = sel[1];
            int c[8], sum = 0;
#pragma unroll
            for (int q = 0; q < 8; ++q) sum += (c[q] = h[255 - 8 * lane - q]);
            int incl = sum;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const int y = __shfl_up_sync(kFull, incl, o);
                if (lane >= o) incl += y;
            }
            const int excl = incl - sum;
            if (excl < need && incl >= need) {
                int cum = excl;
#pragma unroll
                for (int q = 0; q < 8; ++q) {
                    if (cum + c[q] >= need) {
                        sel[0] = int(prefix | (unsigned(255 - 8 * lane - q) << shift));
                        sel[1] = need - cum;
                        break;
                    }
                    cum += c[q];
                }
            }
        }
        __syncthreads();
    }
    return key_value(unsigned(sel[0]));
}

// sample_token of core/sampler.cpp on lg (shared, modified): temperature → top-k → top-p → inverse CDF draw.
__device__ __forceinline__ void stamp(unsigned long long* sub, int k) {
    if (sub && threadIdx.x == 0) sub[2 * k] = global_ns();
}

__device__ int block_sample(const Smem& sm, int n, const DevSampler& s, double u, unsigned long long* sub) {
    float* lg = sm.lg;
    if (!s.do_sample) return block_argmax(lg, n, sm.red, sm.ired);
    for (int i = threadIdx.x; i < n; i += blockDim.x) lg[i] = lg[i] / s.temperature;
    __syncthreads();
    if (s.top_k > 0 && s.top_k < n) {
        stamp(sub, 2);
        const float kth = block_kth_largest(lg, n, s.top_k, sm.cidx, sm.ired + 2 * kWarps + 8);
        stamp(sub, 3);
        for (int i = threadIdx.x; i < n; i += blockDim.x)
            if (lg[i] < kth) lg[i] = -INFINITY;
        __syncthreads();
    }
    const int per = (n + blockDim.x - 1) / blockDim.x, i0 = threadIdx.x * per, i1 = min(n, i0 + per);
    int* total_s = sm.ired + 2 * kWarps;  // [0]: count, [2..3]: result
    if (s.top_p < 1.0f) {
        // HF TopP: ascending stable order of the finite logits; drop while cumulative prob <= 1 - top_p.
        const float mx = block_max([&] {
            float m = -INFINITY;
            for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, lg[i]);
            return m;
        }(), sm.red);
        int cnt = 0;
        for (int i = i0; i < i1; ++i) cnt += lg[i] != -INFINITY;
        int m = 0;
        int off = block_exclusive_scan(cnt, sm.ired, &m);
        for (int i = i0; i < i1; ++i)
            if (lg[i] != -INFINITY) sm.cidx[off] = i, sm.cval[off] = lg[i], ++off;
        __syncthreads();
        for (int r = threadIdx.x; r < m; r += blockDim.x) {
            const float v = sm.cval[r];
            const int idx = sm.cidx[r];
            int rank = 0;
            for (int q = 0; q < m; ++q) rank += sm.cval[q] < v || (sm.cval[q] == v && sm.cidx[q] < idx);
            sm.sorted[rank] = r;
        }
        __syncthreads();
        if (threadIdx.x == 0 && m > 0) {
            double total = 0.0;
            for (int r = 0; r < m; ++r) total += double(expf(sm.cval[r] - mx));
            double cum = 0.0;
            for (int r = 0; r + 1 < m; ++r) {
                const int q = sm.sorted[r];
                cum += double(expf(sm.cval[q] - mx)) / total;
                if (cum <= 1.0 - double(s.top_p)) lg[sm.cidx[q]] = -INFINITY;
            }
        }
        __syncthreads();
    }
    stamp(sub, 4);
    float mloc = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) mloc = fmaxf(mloc, lg[i]);
    const float mx = block_max(mloc, sm.red);
    if (mx == -INFINITY) return 0;
    int cnt = 0;
    for (int i = i0; i < i1; ++i) cnt += exp(double(lg[i] - mx)) > 0.0;
    int m = 0;
    int off = block_exclusive_scan(cnt, sm.ired, &m);
    for (int i = i0; i < i1; ++i) {
        const double p = exp(double(lg[i] - mx));
        if (p > 0.0) sm.cidx[off] = i, sm.cp[off] = p, ++off;
    }
    __syncthreads();
    stamp(sub, 5);
    if (threadIdx.x == 0) {
        double total = 0.0;
        for (int r = 0; r < m; ++r) total += sm.cp[r];
        const double target = u * total;
        double cum = 0.0;
        int pick = m > 0 ? sm.cidx[m - 1] : 0;
        for (int r = 0; r < m; ++r) {
            cum += sm.cp[r];
            if (target < cum) {
                pick = sm.cidx[r];
                break;
            }
        }
        total_s[2] = pick;
    }
    __syncthreads();
    stamp(sub, 6);
    const int pick = total_s[2];
    __syncthreads();
    return pick;
}

__global__ void __launch_bounds__(kMegaThreads, 1)
    predictor_frame_kernel(const __grid_constant__ PredictorFrameArgs a, int max_chunks, int n_slots) {
    extern __shared__ __align__(128) char smem_raw[];
    __shared__ int fail_flag;
    const StackDev& st = a.stack;
    const int G = a.n_groups, V = a.vocab;
    const SmemPlan plan = make_smem_plan(max_k_of(st, a.in_dim), rows_max_of(st, V, a.in_dim, gridDim.x),
                                         st.head_dim, V, G, n_slots);
    const Smem sm = carve(smem_raw, plan, V);
    Grid g = make_grid(a.sync, &fail_flag);
    if (threadIdx.x == 0) sm.codes[0] = a.code0;
    Stream sp;
    sp.st = &st;
    sp.n_pass = G;
    sp.head_from = 1;
    sp.head = a.heads;
    sp.head_rows = V;
    sp.mtp_w = a.mtp_w;
    sp.in_dim = a.in_dim;
    Ring r;
    ring_init(r, sm, n_slots, sp.total());
    ring_issue(r, sp, g);
    int w = 0;
    for (int t = 0; t < G; ++t) {
        // Position t's input: the talker hidden, then codebook t-1 embedded (codebook 0 with the talker table).
        VecIn x = t == 0   ? VecIn{a.talker_hidden, nullptr}
                  : t == 1 ? VecIn{nullptr, a.emb0 + size_t(sm.codes[0]) * a.in_dim}
                           : VecIn{nullptr, a.emb + (size_t(t - 2) * V + sm.codes[t - 1]) * a.in_dim};
        if (a.mtp_w) {  // [mtp projection] (1.7B): xproj = W · x + b
            weight_phase(
                r, sp, w, g, sm, [&] { load_to_perm(x, a.in_dim, sm.xs); },
                [&](const WeightPhase& ph) {
                    for (int i = threadIdx.x; i < ph.n; i += blockDim.x)
                        __stcg(a.s.xproj + ph.r0 + i, sm.res[i] + a.mtp_b[ph.r0 + i]);
                });
            QTTS_GRID_BARRIER(g);
            x = VecIn{a.s.xproj, nullptr};
        }
        if (!run_layers(g, r, sp, w, st, x, t, 1, max_chunks, a.s, sm)) return;
        if (t == 0) continue;
        // [final norm + lm_head[t-1]] → logits, then every CTA samples the same code.
        weight_phase(
            r, sp, w, g, sm,
            [&] { norm_to_perm(VecIn{a.s.h, nullptr}, st.final_norm, st.n_embd, st.eps, sm.xs, sm.red); },
            [&](const WeightPhase& ph) {
                for (int i = threadIdx.x; i < ph.n; i += blockDim.x) __stcg(a.s.logits + ph.r0 + i, sm.res[i]);
            });
        QTTS_GRID_BARRIER(g);
        unsigned long long* sub =
            a.sync.trace && g.cta == 0 ? a.sync.trace + size_t(a.sync.trace_cap - 8) * 2 : nullptr;
        stamp(sub, 0);
        for (int i = threadIdx.x; i < V; i += blockDim.x) sm.lg[i] = __ldcg(a.s.logits + i);
        __syncthreads();
        if (threadIdx.x == 0 && a.sampler.repetition_penalty != 1.0f) {
            // HF repetition penalty over the distinct codes this frame generated so far (codebooks 1 .. t-1).
            for (int j = 1; j < t; ++j) {
                const int id = sm.codes[j];
                bool seen = false;
                for (int q = 1; q < j; ++q) seen |= sm.codes[q] == id;
                if (seen || id < 0 || id >= V) continue;
                const float l = sm.lg[id];
                sm.lg[id] = l < 0.0f ? l * a.sampler.repetition_penalty : l / a.sampler.repetition_penalty;
            }
        }
        __syncthreads();
        const double u = counter_uniform(a.sampler.seed, 1ull + unsigned(t), a.sampler.frame);
        stamp(sub, 1);
        const int code = block_sample(sm, V, a.sampler, u, sub);
        stamp(sub, 7);
        if (threadIdx.x == 0) sm.codes[t] = code;
        __syncthreads();
    }
    if (g.cta == 0)
        for (int k = threadIdx.x; k < G; k += blockDim.x) a.codes_out[k] = sm.codes[k];
    g.finish();
}

// Largest K of any weight row (a row must fit one ring slot).
int max_row_k(const StackDev& st, int in_dim) { return std::max(std::max(st.n_embd, st.q_dim()), std::max(st.n_ff, in_dim)); }

template <class Kernel>
MegaLaunch plan_grid(Kernel kernel, const StackDev& st, int vocab, int in_dim, int vocab_sample, int n_groups,
                     int max_chunks) {
    int device = 0;
    QTTS_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    QTTS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    if (!prop.cooperativeLaunch) throw_gpu_error("this GPU does not support cooperative launches");
    if (max_row_k(st, in_dim) * 2 > kSlotBytes) throw_gpu_error("a weight row is wider than a decode ring slot");
    MegaLaunch m;
    m.max_chunks = max_chunks;
    m.n_cta = prop.multiProcessorCount;
    const int rows_max = rows_max_of(st, vocab, in_dim, m.n_cta);
    const SmemPlan base = make_smem_plan(max_k_of(st, in_dim), rows_max, st.head_dim, vocab_sample, n_groups, 0);
    const int avail = int(prop.sharedMemPerBlockOptin) - base.total - 1024;
    m.n_slots = std::min(8, avail / kSlotBytes);
    // Every phase's share must fit the ring at once: rows per chunk vs rows per CTA.
    const auto chunks = [&](int rows, int K) {
        const int rpc = std::max(1, kSlotBytes / (K * 2));
        return (rows + rpc - 1) / rpc;
    };
    const int E = st.n_embd;
    int need = chunks(ceil_div(st.q_dim() + 2 * st.kv_dim(), m.n_cta), E);
    need = std::max(need, chunks(ceil_div(E, m.n_cta), st.q_dim()));
    need = std::max(need, chunks(2 * ceil_div(st.n_ff, m.n_cta), E));
    need = std::max(need, chunks(ceil_div(E, m.n_cta), st.n_ff));
    need = std::max(need, chunks(ceil_div(vocab, m.n_cta), E));
    need = std::max(need, chunks(ceil_div(E, m.n_cta), in_dim));
    if (m.n_slots < need + 1)
        throw_gpu_error("decode megakernel: not enough shared memory for the weight ring on this GPU");
    const SmemPlan plan =
        make_smem_plan(max_k_of(st, in_dim), rows_max, st.head_dim, vocab_sample, n_groups, m.n_slots);
    m.smem = size_t(plan.total);
    QTTS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(m.smem)));
    int per_sm = 0;
    QTTS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kMegaThreads, m.smem));
    if (per_sm < 1) throw_gpu_error("decode megakernel cannot be resident on this GPU (registers/shared memory)");
    return m;
}

}  // namespace

MegaLaunch plan_talker_launch(const StackDev& st, int vocab, int max_chunks) {
    return plan_grid(talker_step_kernel, st, vocab, st.n_embd, 0, 0, max_chunks);
}

MegaLaunch plan_predictor_launch(const StackDev& st, int vocab, int in_dim, int n_groups, int max_chunks) {
    return plan_grid(predictor_frame_kernel, st, vocab, in_dim, vocab, n_groups, max_chunks);
}

void launch_talker_step(const TalkerStepArgs& args, const MegaLaunch& grid, cudaStream_t stream) {
    int max_chunks = grid.max_chunks, n_slots = grid.n_slots;
    void* params[] = {const_cast<TalkerStepArgs*>(&args), &max_chunks, &n_slots};
    QTTS_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(talker_step_kernel), dim3(grid.n_cta),
                                                dim3(kMegaThreads), params, grid.smem, stream));
}

void launch_predictor_frame(const PredictorFrameArgs& args, const MegaLaunch& grid, cudaStream_t stream) {
    int max_chunks = grid.max_chunks, n_slots = grid.n_slots;
    void* params[] = {const_cast<PredictorFrameArgs*>(&args), &max_chunks, &n_slots};
    QTTS_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(predictor_frame_kernel),
                                                dim3(grid.n_cta), dim3(kMegaThreads), params, grid.smem, stream));
}

}  // namespace qtts::cuda
