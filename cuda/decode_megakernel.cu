// Persistent cooperative decode megakernels: one launch runs a whole talker step (all layers, final norm,
// codec_head) or a whole code-predictor frame (16 positions, 15 heads, on-device sampling). Per layer:
// [norm+QKV] | [q/k-norm, RoPE, KV append, attention] | [O-proj+residual] | [norm+gate/up+SiLU] |
// [down+residual]. No grid barriers between the phases: each phase publishes its outputs
// as tagged values (fp32 + the phase's number, one 64-bit store) and the next phase polls the values it reads
// until they carry its predecessor's tag. Tags come from a monotonic epoch owned by the backend instance (never
// reset). A spin watchdog sets sync.error and ends the launch instead of hanging.
// Each CTA's producer warp streams all of its weight rows of the launch through a shared-memory ring
// (weight_ring.cuh) while its 15 consumer warps run the phases; the matvecs use tensor cores.
#include <algorithm>
#include <cstdio>

#include "cuda/cuda_check.h"
#include "cuda/stack_device.cuh"
#include "cuda/stack_kernels.h"
#include "cuda/weight_ring.cuh"

namespace qtts::cuda {

namespace {

using namespace dev;

// ---- shared-memory plan (bytes; every region 16-byte aligned, the ring 128-byte aligned, last) ----
// The activation vectors (bf16 split parts of C columns) and the predictor's sampling buffers are never live at
// the same time (sampling runs between the head's matvec and the next pass's first phase): they share a region.
// Sampling over V values: lg [V] fp32 | cp [V] fp64 (the draw's probabilities; before the draw the same bytes hold
// the radix select's histograms and top-p's rank order) | cidx [V] uint16 (candidate ids). 14 V bytes (42 KB at
// V = 3072, 72 KB before), so the predictor also fits the 99 KB per block of RTX 30/40/50 GPUs (sm_86/89/120).
struct SmemPlan {
    int xs, part, res, red, ired, att_q, att_k, att_v, att_w, cw, lg, cidx, cp, sorted, codes, kv, ring_state;
    int ring;  // offset of the weight ring (its size is the rest of the CTA's shared memory)
};

QTTS_HD inline int align16(int x) { return (x + 15) & ~15; }

constexpr int kRadixHistBytes = 4 * 256 * 4;  // block_kth_largest's histograms: 4 passes of 256 ints

// block_attention: the buffers of the talker's block-wide attention (phase_attention); kv_bytes: the predictor's
// K/V slots (predictor_attention).
QTTS_HD inline SmemPlan make_smem_plan(int max_k, int rows_max, int hd, int vocab_sample, int n_groups, int cols,
                                       bool block_attention, int kv_bytes) {
    SmemPlan p{};
    int o = 0;
    const auto take = [&](int bytes) {
        const int at = o;
        o += align16(bytes);
        return at;
    };
    const int vs = vocab_sample, cp_bytes = vs > 0 ? (vs * 8 > kRadixHistBytes ? align16(vs * 8) : kRadixHistBytes) : 0;
    const int xs_bytes = cols * 3 * split_stride(max_k) * 2;
    const int sample_bytes = vs > 0 ? align16(vs * 4) + cp_bytes + align16(vs * 2) : 0;
    p.xs = take(xs_bytes > sample_bytes ? xs_bytes : sample_bytes);
    p.lg = p.xs;
    p.cp = p.lg + align16(vs * 4);
    p.sorted = p.cp;
    p.cidx = p.cp + cp_bytes;
    p.part = take(cols * rows_max * kWarps * 4);
    p.res = take(cols * rows_max * 4);
    p.red = take(kWarps * 4);
    p.ired = take(2 * kWarps * 4 + 64);
    const int att = block_attention ? 1 : 0;
    p.att_q = take(att * hd * 4);
    p.att_k = take(att * hd * 4);
    p.att_v = take(att * hd * 4);
    p.att_w = take(att * kWarps * (2 + hd) * 4);
    p.cw = take(att * (2 + hd) * 4);
    p.codes = take((n_groups + 4) * 4);
    p.kv = take(kv_bytes);
    p.ring_state = take(int(sizeof(RingShared)));
    p.ring = (o + 127) & ~127;
    return p;
}

QTTS_HD inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The code predictor's attention items: (layer l, query head h) = l · n_head + h runs on CTA item % n_cta, warp
// item / n_cta, which keeps that head's K/V for the frame in a slot of its shared memory ([G][hd] keys, then [G][hd]
// values; predictor_attention).
QTTS_HD inline int predictor_kv_slots(const StackDev& st, int n_cta) { return ceil_div(st.n_layer * st.n_head, n_cta); }
QTTS_HD inline int predictor_kv_slot_floats(const StackDev& st, int n_groups) { return 2 * n_groups * st.head_dim; }
QTTS_HD inline int predictor_kv_bytes(const StackDev& st, int n_cta, int n_groups) {
    return predictor_kv_slots(st, n_cta) * predictor_kv_slot_floats(st, n_groups) * 4;
}

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

// ---- phase ordering (tagged values; grid barriers optional) ----
__device__ __forceinline__ unsigned ld_acquire(const unsigned* p) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

// Phase ordering of one launch. Phase p's outputs carry tag epoch + 1 while it runs; next() ends it, and the
// following phase polls those values (tag epoch after the increment): no grid-wide synchronisation point. The
// buffers can be reused across phases because every CTA reads all of a phase's outputs (directly, or through
// the attention items, which together read every q/k/v row) before it writes anything the next phase
// reads: a CTA that writes phase p + 2 has seen every CTA's phase p + 1, so every CTA is done reading phase
// p. With MegaLaunch::barriers a grid barrier also ends each phase (comparison runs; the values are the same).
struct Grid {
    GridSync sync;
    int cta = 0, n_cta = 0;
    unsigned epoch = 0;      // phases completed so far, counting every earlier launch
    PollCtl* ctl = nullptr;  // shared
    int* flag = nullptr;     // shared: a CTA-wide flag (the attention combine)
    int nb = 0;              // phases of this launch so far (trace slot)
    const unsigned long long* ring_prof = nullptr;  // fine trace: thread 0's ring wait so far (RingReader::prof)
    bool barriers = false;

    __device__ VecIn in(const Tagged* t) const {
        VecIn v;
        v.t = t;
        v.tag = epoch;
        v.ctl = ctl;
        return v;
    }
    __device__ unsigned out_tag() const { return epoch + 1; }

    // Ends the current phase. False when this CTA gave up (watchdog): then every thread must return.
    __device__ bool next() {
        if (barriers) return barrier();
        fine_mark(ctl, kFineStore);
        // The next phase rewrites the shared buffers this one read. Every thread gets the same verdict, even
        // when a poll in the next phase sets the flag while others are still here.
        const bool ok = !work_sync_or(ctl->fail);
        fine_mark(ctl, kFineEnd);
        ++epoch;
        if (sync.trace && threadIdx.x == 0 && nb + 1 < sync.trace_cap) {
            unsigned long long* t = sync.trace + (size_t(cta) * sync.trace_cap + nb + 1) * 2;
            t[0] = t[1] = global_ns();  // the next wait (if any) overwrites the departure
            ctl->stamp = t + 1;
#ifdef QTTS_FINE_TRACE
            if (ring_prof) sync.trace_ring[size_t(cta) * sync.trace_cap + nb + 1] = ring_prof[0];
            unsigned long long* f = sync.trace_fine + (size_t(cta) * sync.trace_cap + nb + 1) * kFineSegs;
            for (int s = 0; s < kFineSegs; ++s) f[s] = ctl->fine_acc[s], ctl->fine_acc[s] = 0;
            ctl->fine_last = clock64();
#endif
        }
        ++nb;
        return ok;
    }

    // All CTAs arrive, then all leave (MegaLaunch::barriers). False when the watchdog fired.
    __device__ bool barrier() {
        ++epoch;
        work_sync();
        if (threadIdx.x == 0) {
            const unsigned target = epoch * unsigned(n_cta);
            const unsigned long long t0 = global_ns();
            // Release: this CTA's writes (ordered by the block sync above) before the arrival; the acquire
            // loads below order the other CTAs' writes before our reads (CUTLASS generic-barrier pattern).
            asm volatile("red.release.gpu.global.add.u32 [%0], %1;" ::"l"(sync.counter), "r"(1u) : "memory");
            for (unsigned spin = 1;; ++spin) {
                if (int(ld_acquire(sync.counter) - target) >= 0) break;
                if (sync.backoff_ns) __nanosleep(sync.backoff_ns);
                if ((spin & 255u) == 0) {
                    if (*(volatile int*)sync.error) {
                        ctl->fail = 1;
                        break;
                    }
                    if (global_ns() - t0 > sync.timeout_ns) {
                        atomicExch(sync.error, 1);
                        ctl->fail = 1;
                        break;
                    }
                }
            }
            if (sync.trace && nb + 1 < sync.trace_cap) {
                unsigned long long* t = sync.trace + (size_t(cta) * sync.trace_cap + nb + 1) * 2;
                t[0] = t0;
                t[1] = global_ns();
            }
        }
        ++nb;
        return !work_sync_or(ctl->fail);
    }
    // Called once at the end by every CTA: CTA 0 records the epoch for the next launch (and, traced, the ring
    // wait and MMA time of its warp 0 from `prof`).
    __device__ void finish(const unsigned long long* prof) const {
        if (cta == 0 && threadIdx.x == 0) {
            *sync.epoch = epoch;
            if (sync.trace && prof) {
                sync.trace[size_t(sync.trace_cap - 41) * 2] = prof[0];
                sync.trace[size_t(sync.trace_cap - 41) * 2 + 1] = prof[1];
            }
            if (sync.trace) {  // SM clock over the launch: (ns, cycles) at the end vs the start
                sync.trace[size_t(sync.trace_cap - 9) * 2] = global_ns();
                sync.trace[size_t(sync.trace_cap - 9) * 2 + 1] = clock64();
            }
        }
    }
};

#define QTTS_NEXT_PHASE(g)          \
    do {                            \
        if (!(g).next()) return;    \
    } while (0)

struct Smem {
    uint16_t* xs;        // split activation columns: column c at split_column(xs, K, c)
    float *part, *res;   // matvec partials and results: column c at part + c · rows_max · kWarps, res + c · rows_max
    float *part2, *res2; // column 1 (the predictor's 2-position first pass)
    float* red;
    int* ired;
    float *att_q, *att_k, *att_v, *att_w, *cw, *lg;
    uint16_t* cidx;
    double* cp;
    int *sorted, *codes;
    float* kv;  // the predictor's K/V slots
    RingShared* ring_state;
    char* ring;
};

__device__ Smem carve(char* base, const SmemPlan& p, int rows_max) {
    Smem s;
    s.xs = reinterpret_cast<uint16_t*>(base + p.xs);
    s.part = reinterpret_cast<float*>(base + p.part);
    s.res = reinterpret_cast<float*>(base + p.res);
    s.part2 = s.part + rows_max * kWarps;
    s.res2 = s.res + rows_max;
    s.red = reinterpret_cast<float*>(base + p.red);
    s.ired = reinterpret_cast<int*>(base + p.ired);
    s.att_q = reinterpret_cast<float*>(base + p.att_q);
    s.att_k = reinterpret_cast<float*>(base + p.att_k);
    s.att_v = reinterpret_cast<float*>(base + p.att_v);
    s.att_w = reinterpret_cast<float*>(base + p.att_w);
    s.cw = reinterpret_cast<float*>(base + p.cw);
    s.lg = reinterpret_cast<float*>(base + p.lg);
    s.cidx = reinterpret_cast<uint16_t*>(base + p.cidx);
    s.cp = reinterpret_cast<double*>(base + p.cp);
    s.sorted = reinterpret_cast<int*>(base + p.sorted);
    s.codes = reinterpret_cast<int*>(base + p.codes);
    s.kv = reinterpret_cast<float*>(base + p.kv);
    s.ring_state = reinterpret_cast<RingShared*>(base + p.ring_state);
    s.ring = base + p.ring;
    return s;
}

// ---- weight phases (all CTAs; each works on its own contiguous rows) ----
// The producer warp and the consumers walk the same phase sequence (talker_rows / predictor_rows below); a
// phase body prepares its activation vector, takes its rows from the ring (RingReader::matvec) and stores.

struct Rows {  // this CTA's rows of one weight phase: src.n rows starting at global row r0
    RowSrc src;
    int r0 = 0;
};

__device__ __forceinline__ Rows matrix_rows(const uint16_t* w, int R, int K, int cta, int n_cta) {
    int r0, r1;
    cta_rows(R, cta, n_cta, r0, r1);
    Rows r;
    r.src.a = w + size_t(r0) * K;
    r.src.n_a = r.src.n = r1 - r0;
    r.src.K = K;
    r.r0 = r0;
    return r;
}

enum LayerPhase { kQkv = 0, kOut = 1, kGateUp = 2, kDown = 3, kLayerPhases = 4 };

// Rows [r0, r0 + n_a) of layer phase `kind` (gate/up: the same rows of W_up follow those of W_gate).
__device__ __forceinline__ Rows layer_phase_rows(const StackDev& st, const LayerDev& L, int kind, int r0, int n_a) {
    const int K = kind == kOut ? st.q_dim() : kind == kDown ? st.n_ff : st.n_embd;
    const uint16_t* w = kind == kQkv ? L.wqkv : kind == kOut ? L.wo : kind == kGateUp ? L.w_gate : L.w_down;
    Rows r;
    r.r0 = r0;
    r.src.a = w + size_t(r0) * K;
    r.src.n_a = n_a;
    r.src.n = kind == kGateUp ? 2 * n_a : n_a;
    if (kind == kGateUp) r.src.b = L.w_up + size_t(r0) * K;
    r.src.K = K;
    return r;
}

// This CTA's share of layer phase KIND.
template <int KIND>
__device__ __forceinline__ Rows layer_rows_of(const StackDev& st, const LayerDev& L, int cta, int n_cta) {
    const int R = KIND == kQkv ? st.q_dim() + 2 * st.kv_dim() : KIND == kGateUp ? st.n_ff : st.n_embd;
    int r0, r1;
    cta_rows(R, cta, n_cta, r0, r1);
    return layer_phase_rows(st, L, KIND, r0, r1 - r0);
}

__device__ __forceinline__ Rows layer_rows(const StackDev& st, const LayerDev& L, int kind, int cta, int n_cta) {
    switch (kind) {
        case kQkv: return layer_rows_of<kQkv>(st, L, cta, n_cta);
        case kOut: return layer_rows_of<kOut>(st, L, cta, n_cta);
        case kGateUp: return layer_rows_of<kGateUp>(st, L, cta, n_cta);
        default: return layer_rows_of<kDown>(st, L, cta, n_cta);
    }
}

// This CTA's rows of the four layer phases, the same in every layer: (r0, n_a, rows per ring chunk) per kind, filled
// once per launch (start_work), so a phase reads three shared words instead of recomputing two 32-bit divisions
// (cta_rows) and ring_chunk_rows in every thread (~64 instructions per warp and phase, 8 % of the predictor's).
struct RowTable {
    int r0[kLayerPhases], n_a[kLayerPhases], per[kLayerPhases];
};

__device__ __forceinline__ void fill_row_table(RowTable* t, const StackDev& st, int cta, int n_cta, int ring_bytes,
                                               int chunk_rows) {
    if (threadIdx.x < kLayerPhases) {
        const int kind = threadIdx.x;
        const Rows r = layer_rows(st, st.layers[0], kind, cta, n_cta);
        t->r0[kind] = r.r0;
        t->n_a[kind] = r.src.n_a;
        t->per[kind] = ring_chunk_rows(r.src.n, r.src.K, ring_bytes, chunk_rows);
    }
}

// Context of the consumer side of a launch: shared memory, the ring reader, this CTA's place in the grid.
struct Work {
    Smem sm;
    RingReader rr;
    int cta = 0, n_cta = 0;
    const RowTable* rows = nullptr;  // shared
    // layer_rows from the table: the same rows, pointers and chunking.
    __device__ Rows layer(const StackDev& st, const LayerDev& L, int kind) const {
        Rows r = layer_phase_rows(st, L, kind, rows->r0[kind], rows->n_a[kind]);
        r.src.per = rows->per[kind];
        return r;
    }
    __device__ Rows matrix(const uint16_t* w, int R, int K) const { return matrix_rows(w, R, K, cta, n_cta); }
    __device__ void matvec(const Rows& p) { rr.matvec1(p.src, sm.xs, sm.part, sm.res); }
    __device__ void matvec2(const Rows& p) {
        float* const pt[2] = {sm.part, sm.part2};
        float* const out[2] = {sm.res, sm.res2};
        rr.matvec<2>(p.src, sm.xs, pt, out);
    }
};

// [norm + QKV]: qkv[r] for this CTA's rows of [q_dim + 2 kv_dim].
__device__ void phase_qkv(const Grid& g, const StackDev& st, const LayerDev& L, VecIn in, const MegaScratch& sc,
                          Work& wk) {
    const Rows p = wk.layer(st, L, kQkv);
    norm_to_split(in, L.input_norm, st.n_embd, st.eps, wk.sm.xs, wk.sm.red);
    wk.matvec(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) st_tagged(sc.qkv + p.r0 + i, wk.sm.res[i], g.out_tag());
}

// The talker's [q/k-norm, RoPE, KV append, attention partials] for items (head, chunk) of the single new position
// `pos`; the chunks of a head are combined by the last one to finish. Within this launch the chunk holding `pos`
// reads the new K/V row from shared memory; later launches read it from the cache.
__device__ void phase_attention(const Grid& g, const StackDev& st, int layer, int pos, int n_chunks,
                                int max_chunks, const MegaScratch& sc, const Smem& sm) {
    const LayerDev& L = st.layers[layer];
    const int hd = st.head_dim, q_dim = st.q_dim(), kv_dim = st.kv_dim(), group = st.n_head / st.n_kv_head;
    const int n_items = st.n_head * n_chunks, npos = pos + 1, half = hd >> 1;
    const float scale = st.attn_scale;
    const float* cs = st.rope_cos + size_t(pos) * half;
    const float* sn = st.rope_sin + size_t(pos) * half;
    float* kc = st.k_cache + size_t(layer) * st.capacity * kv_dim;
    float* vc = st.v_cache + size_t(layer) * st.capacity * kv_dim;
    const VecIn qkv = g.in(sc.qkv);
    for (int item = g.cta; item < n_items; item += g.n_cta) {
        const int h = item / n_chunks, c = item - h * n_chunks, kvh = h / group;
        const int j0 = int((long long)npos * c / n_chunks), j1 = int((long long)npos * (c + 1) / n_chunks);
        const bool has_new = j1 == npos, writes_kv = has_new && h % group == 0;
        // Cached keys do not depend on this step: loaded while q/k/v are polled. (Loads in flight delay the polls'
        // results: with the keys loaded after the poll the qkv -> attention handoff took 1.68 instead of 2.42 us,
        // but the attention then waited longer for its keys from HBM; H100.)
        KeyRegs pre;
        attend_preload(kc + kvh * hd, vc + kvh * hd, kv_dim, hd, j0, j1, pos, pre);
        const int warp = threadIdx.x >> 5;
        NormRopeRegs nr;
        if (warp == 0) norm_rope_load(nr, L.q_norm, hd, cs, sn);
        if (warp == 1 && has_new) norm_rope_load(nr, L.k_norm, hd, cs, sn);
        for (int d = threadIdx.x; d < hd; d += kMegaThreads) {
            const Tagged* const src[3] = {qkv.t + h * hd + d, has_new ? qkv.t + q_dim + kvh * hd + d : nullptr,
                                          has_new ? qkv.t + q_dim + kv_dim + kvh * hd + d : nullptr};
            float v[3];
            wait_gather(src, qkv.tag, qkv.ctl, v);
            sm.att_q[d] = v[0];
            if (has_new) sm.att_k[d] = v[1], sm.att_v[d] = v[2];
        }
        work_sync();
        poll_done(g.ctl);
        if (warp == 0) norm_rope_apply(sm.att_q, nr, hd, st.inv_hd, st.eps);
        if (warp == 1 && has_new) norm_rope_apply(sm.att_k, nr, hd, st.inv_hd, st.eps);
        work_sync();
        fine_mark(g.ctl, kFinePrep);  // fine trace of this phase: prep = q/k norm + RoPE, mma = the scores and
                                      // values, reduce = the chunk counter, store = the combine
        if (writes_kv) {
            for (int d = threadIdx.x; d < hd; d += kMegaThreads) {
                __stcg(kc + size_t(pos) * kv_dim + kvh * hd + d, sm.att_k[d]);
                __stcg(vc + size_t(pos) * kv_dim + kvh * hd + d, sm.att_v[d]);
            }
        }
        float* r = sm.cw;  // (max, sum, acc[hd]) of this chunk
        float* slot = n_chunks == 1 ? nullptr : sc.part + size_t(h * max_chunks + c) * (2 + hd);
        attend_block(sm.att_q, hd, scale, kc + kvh * hd, vc + kvh * hd, kv_dim, j0, j1, pos, sm.att_k, sm.att_v,
                     sm.att_w, r, pre, slot);
        fine_mark(g.ctl, kFineMma);
        if (n_chunks == 1) {
            for (int d = threadIdx.x; d < hd; d += kMegaThreads) st_tagged(sc.attn + h * hd + d, r[2 + d] / r[1], g.out_tag());
            // Not needed for order (the next reader is a later launch), but without it nvcc allocates the talker kernel
            // differently (128 registers instead of 124) and the step is slower: 0.604-0.610 against 0.591-0.598 ms
            // (H100, 3 alternating rounds).
            if (writes_kv) __threadfence();
            continue;
        }
        // The last chunk of head h to finish combines all of them (fixed chunk order: deterministic). The
        // counters are per layer, so a reset is always followed by the launch boundary before the next use.
        // One acq_rel atomic: its release orders this chunk's partial (stored by the block before the sync above)
        // before the count, its acquire the other chunks' partials before the combine's loads. (A __threadfence
        // before a relaxed atomicAdd and one after it: talker step 0.589-0.592 against 0.574-0.580 ms, H100.)
        int* done_ctr = sc.head_done + layer * st.n_head + h;
        if (threadIdx.x == 0) {
            int done;
            asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(done) : "l"(done_ctr) : "memory");
            *g.flag = done == n_chunks - 1;
            if (done == n_chunks - 1) *done_ctr = 0;
        }
        work_sync();
        fine_mark(g.ctl, kFineReduce);
        if (*g.flag) {
            const float* ph = sc.part + size_t(h) * max_chunks * (2 + hd);
            for (int d = threadIdx.x; d < hd; d += kMegaThreads) {
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
                float L = 0.0f, o = 0.0f;
#pragma unroll
                for (int q = 0; q < kMaxChunks; ++q) {
                    const float w = m[q] == -INFINITY ? 0.0f : expf(m[q] - M);
                    L = fmaf(l[q], w, L);
                    o = fmaf(acc[q], w, o);
                }
                st_tagged(sc.attn + h * hd + d, o / L, g.out_tag());
            }
        }
        work_sync();
    }
}

// [O-proj + residual]: h[r] = (layer 0 ? x0 : h)[r] + Wo[r] · attn. The residual rows are this CTA's own (the
// down phase wrote the same rows), so they are read without waiting.
__device__ void phase_oproj(const Grid& g, const StackDev& st, const LayerDev& L, VecIn residual_in,
                            const MegaScratch& sc, Work& wk) {
    const Rows p = wk.layer(st, L, kOut);
    // The residual rows are loaded together with the activation vector (one round trip to L2, not two).
    const float resid = int(threadIdx.x) < p.src.n ? residual_in(p.r0 + threadIdx.x) : 0.0f;
    load_to_split(g.in(sc.attn), st.q_dim(), wk.sm.xs);
    wk.matvec(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads)
        st_tagged(sc.h + p.r0 + i, __fadd_rn(i == int(threadIdx.x) ? resid : residual_in(p.r0 + i), wk.sm.res[i]),
                  g.out_tag());
}

// [norm + gate/up + SiLU·up]: act[r] for this CTA's rows of [F].
__device__ void phase_gateup(const Grid& g, const StackDev& st, const LayerDev& L, const MegaScratch& sc, Work& wk) {
    const Rows p = wk.layer(st, L, kGateUp);
    norm_to_split(g.in(sc.h), L.post_norm, st.n_embd, st.eps, wk.sm.xs, wk.sm.red);
    wk.matvec(p);
    work_sync();  // thread i reads the gate and up results of row i, written by different threads
    const int n = p.src.n_a;
    for (int i = threadIdx.x; i < n; i += kMegaThreads) {
        const float gt = wk.sm.res[i], up = wk.sm.res[n + i];
        st_tagged(sc.act + p.r0 + i, __fmul_rn(gt / (1.0f + expf(-gt)), up), g.out_tag());
    }
}

// [down + residual]: h[r] += Wdown[r] · act (h rows: this CTA's own, from its O-proj phase).
__device__ void phase_down(const Grid& g, const StackDev& st, const LayerDev& L, const MegaScratch& sc, Work& wk) {
    const Rows p = wk.layer(st, L, kDown);
    const VecIn own{.t = sc.h};
    const float resid = int(threadIdx.x) < p.src.n ? own(p.r0 + threadIdx.x) : 0.0f;
    load_to_split(g.in(sc.act), st.n_ff, wk.sm.xs);
    wk.matvec(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads)
        st_tagged(sc.h + p.r0 + i, __fadd_rn(i == int(threadIdx.x) ? resid : own(p.r0 + i), wk.sm.res[i]),
                  g.out_tag());
}

// [final norm + head]: out[r] = head[r] · norm(h) for this CTA's rows; CTA 0 also stores the normed hidden.
// Either out_f (read after the launch) or out_t (read by the next phase) is set.
__device__ void phase_head(const Grid& g, const StackDev& st, const uint16_t* head, int vocab, float* out_f,
                           Tagged* out_t, float* hidden_out, const Tagged* h, Work& wk) {
    const Rows p = wk.matrix(head, vocab, st.n_embd);
    norm_to_split(g.in(h), st.final_norm, st.n_embd, st.eps, wk.sm.xs, wk.sm.red, wk.cta == 0 ? hidden_out : nullptr);
    wk.matvec(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) {
        if (out_t) st_tagged(out_t + p.r0 + i, wk.sm.res[i], g.out_tag());
        else __stcg(out_f + p.r0 + i, wk.sm.res[i]);
    }
}

// Runs every layer for one position; attention(l) is layer l's attention phase (the talker's phase_attention or
// the predictor's predictor_attention). On return the last phase has ended. False when this CTA gave up (the
// caller must return).
// skip_qkv0: layer 0's attention reads its q/k/v elsewhere (the predictor's table), so its QKV phase does not run.
template <class Attention>
__device__ bool run_layers(Grid& g, const StackDev& st, VecIn x0, const MegaScratch& sc, Work& wk,
                           Attention attention, bool skip_qkv0 = false) {
    for (int l = 0; l < st.n_layer; ++l) {
        const LayerDev& L = st.layers[l];
        const VecIn in = l == 0 ? x0 : g.in(sc.h);
        if (l > 0 || !skip_qkv0) {
            phase_qkv(g, st, L, in, sc, wk);
            if (!g.next()) return false;
        }
        attention(l);
        if (!g.next()) return false;
        phase_oproj(g, st, L, l == 0 ? x0 : VecIn{.t = sc.h}, sc, wk);
        if (!g.next()) return false;
        phase_gateup(g, st, L, sc, wk);
        if (!g.next()) return false;
        phase_down(g, st, L, sc, wk);
        if (!g.next()) return false;
    }
    return true;
}

// The talker's weight phases in launch order: per layer QKV, O, gate+up, down; then codec_head.
__device__ Rows talker_rows(const TalkerStepArgs& a, int w, int cta, int n_cta) {
    const StackDev& st = a.stack;
    if (w >= kLayerPhases * st.n_layer) return matrix_rows(a.head, a.vocab, st.n_embd, cta, n_cta);
    return layer_rows(st, st.layers[w / kLayerPhases], w % kLayerPhases, cta, n_cta);
}

// ---- the code predictor's first pass: positions 0 (talker hidden) and 1 (codebook-0 embedding) together ----
// Every weight row is read once and multiplied with both columns (B operand columns 0-2 and 3-5). Each output
// column is computed exactly as by the single-position phases above, so the results equal two separate passes.

// Scratch of the 2-position pass: column c of h / qkv / attn / act at offset c · (E / R_qkv / q_dim / F).
__device__ void phase_qkv2(const Grid& g, const StackDev& st, const LayerDev& L, VecIn in0, VecIn in1,
                           const MegaScratch& sc, Work& wk) {
    const int E = st.n_embd, R = st.q_dim() + 2 * st.kv_dim();
    const Rows p = wk.layer(st, L, kQkv);
    norm_to_split(in0, L.input_norm, E, st.eps, wk.sm.xs, wk.sm.red);
    norm_to_split(in1, L.input_norm, E, st.eps, split_column(wk.sm.xs, E, 1), wk.sm.red);
    wk.matvec2(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) {
        st_tagged(sc.qkv + p.r0 + i, wk.sm.res[i], g.out_tag());
        st_tagged(sc.qkv + R + p.r0 + i, wk.sm.res2[i], g.out_tag());
    }
}

// ---- the code predictor's attention: one warp per (layer, head), the head's K/V in that warp's shared memory ----
// The predictor's cache holds <= G positions per layer and lives for one frame, so it never leaves the SM. The warp
// of item (layer, head) (predictor_kv_slots) keeps its kv group's rows in its own slot, each lane the dims
// lane + 32 i that it handles: it polls q/k/v of a new position (one round trip), normalises and rotates them in
// registers, appends k/v to its slot and attends over keys 0 .. pos. No cache traffic through L2, no fence, no
// block-level step. The two query heads of a kv group each keep a copy of the group's rows. Softmax as CpuPredictor's
// attention (the max subtracted, probabilities times 1 / sum, output = Σ p_j v_j in key order), so position 0, which
// attends to itself only, outputs v0 exactly.

// NP new positions pos0 .. pos0 + NP - 1 (the first pass: 2, q/k/v of column p at offset p · (q_dim + 2 kv_dim)),
// polled one position at a time (polling both at once spilled 536 bytes in this kernel). `table` (NP = 1): q/k/v
// are read from this row, written before the launch (the predictor's layer-0 table), instead of polled.
template <int NP>
__device__ void predictor_attention(const Grid& g, const StackDev& st, int layer, int pos0, int n_groups,
                                    const MegaScratch& sc, const Smem& sm, const float* table = nullptr) {
    constexpr int D = kDimsPerLane;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int h = warp * g.n_cta + g.cta - layer * st.n_head;
    if (h < 0 || h >= st.n_head) return;
    const LayerDev& L = st.layers[layer];
    const int hd = st.head_dim, half = hd >> 1, Q = st.q_dim(), KV = st.kv_dim(), R = Q + 2 * KV;
    const int kvh = h / (st.n_head / st.n_kv_head);
    float* ks = sm.kv + warp * predictor_kv_slot_floats(st, n_groups);
    float* vs = ks + n_groups * hd;
    // The norm weights and RoPE rows first: their loads overlap the wait for q/k/v.
    float qw[D], kw[D], cs[NP][D], sn[NP][D];
    lanes_load(qw, L.q_norm, hd);
    lanes_load(kw, L.k_norm, hd);
#pragma unroll
    for (int p = 0; p < NP; ++p)
        rope_lanes_load(cs[p], sn[p], st.rope_cos + size_t(pos0 + p) * half, st.rope_sin + size_t(pos0 + p) * half, hd);
    const VecIn in = g.in(sc.qkv);
    const float scale = st.attn_scale;
    // Value k = kind · D + i: dim lane + 32 i of q (kind 0), k (1) or v (2); the three rows' addresses once, so a
    // poll retry adds only constant offsets.
    const int off[3] = {h * hd + lane, Q + kvh * hd + lane, Q + KV + kvh * hd + lane};
    const Tagged* const base[3] = {in.t + off[0], in.t + off[1], in.t + off[2]};
    bool dim_ok[D];
#pragma unroll
    for (int i = 0; i < D; ++i) dim_ok[i] = lane + 32 * i < hd;
#pragma unroll
    for (int p = 0; p < NP; ++p) {
        const int pos = pos0 + p;
        const auto at = [&](int k) -> const Tagged* {
            const int i = k % D;
            return dim_ok[i] ? base[k / D] + p * R + 32 * i : nullptr;
        };
        float x[3 * D];
        if (table) {
#pragma unroll
            for (int k = 0; k < 3 * D; ++k) x[k] = dim_ok[k % D] ? __ldg(table + off[k / D] + 32 * (k % D)) : 0.0f;
        } else {
            wait_gather<3 * D>(at, in.tag, in.ctl, x);
        }
        if (p == 0) poll_done(g.ctl);
        float q[D], k[D];
#pragma unroll
        for (int i = 0; i < D; ++i) q[i] = x[i], k[i] = x[D + i];
        norm_rope_lanes(q, qw, cs[p], sn[p], hd, st.inv_hd, st.eps);
        norm_rope_lanes(k, kw, cs[p], sn[p], hd, st.inv_hd, st.eps);
#pragma unroll
        for (int i = 0; i < D; ++i) {
            const int d = lane + 32 * i;
            if (d < hd) ks[pos * hd + d] = k[i], vs[pos * hd + d] = x[2 * D + i];
        }
        fine_mark(g.ctl, kFinePrep);  // fine trace (warp 0 of the CTAs whose first item it is): prep = norm, RoPE and
                                      // append, mma = the scores, reduce = softmax and values, store = the stores
        // Scores (attend_block's arithmetic), four keys at a time; lane j keeps key j's.
        float mine = -INFINITY;
        for (int j0 = 0; j0 <= pos; j0 += 4) {
            float part[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const float* kr = ks + min(j0 + u, pos) * hd;
                float a = 0.0f;
#pragma unroll
                for (int i = 0; i < D; ++i)
                    if (lane + 32 * i < hd) a = fmaf(q[i], kr[lane + 32 * i], a);
                part[u] = a;
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1)
#pragma unroll
                for (int u = 0; u < 4; ++u) part[u] += __shfl_xor_sync(kFull, part[u], o);
#pragma unroll
            for (int u = 0; u < 4; ++u)
                if (lane == j0 + u && j0 + u <= pos) mine = part[u] * scale;
        }
        fine_mark(g.ctl, kFineMma);
        const float mx = warp_max(mine);
        const float e = lane <= pos ? expf(mine - mx) : 0.0f;
        const float pr = e * (1.0f / warp_sum(e));
        float o[D] = {};
        for (int j = 0; j <= pos; ++j) {
            const float pj = __shfl_sync(kFull, pr, j);
#pragma unroll
            for (int i = 0; i < D; ++i)
                if (lane + 32 * i < hd) o[i] = fmaf(pj, vs[j * hd + lane + 32 * i], o[i]);
        }
        fine_mark(g.ctl, kFineReduce);
#pragma unroll
        for (int i = 0; i < D; ++i)
            if (lane + 32 * i < hd) st_tagged(sc.attn + p * Q + h * hd + lane + 32 * i, o[i], g.out_tag());
        fine_mark(g.ctl, kFineStore);
    }
}

__device__ void phase_oproj2(const Grid& g, const StackDev& st, const LayerDev& L, VecIn res0, VecIn res1,
                             const MegaScratch& sc, Work& wk) {
    const int E = st.n_embd, Q = st.q_dim();
    const Rows p = wk.layer(st, L, kOut);
    const bool mine = int(threadIdx.x) < p.src.n;
    const float r0v = mine ? res0(p.r0 + threadIdx.x) : 0.0f, r1v = mine ? res1(p.r0 + threadIdx.x) : 0.0f;
    load_to_split(g.in(sc.attn), Q, wk.sm.xs);
    load_to_split(g.in(sc.attn + Q), Q, split_column(wk.sm.xs, Q, 1));
    wk.matvec2(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) {
        const bool own = i == int(threadIdx.x);
        st_tagged(sc.h + p.r0 + i, __fadd_rn(own ? r0v : res0(p.r0 + i), wk.sm.res[i]), g.out_tag());
        st_tagged(sc.h + E + p.r0 + i, __fadd_rn(own ? r1v : res1(p.r0 + i), wk.sm.res2[i]), g.out_tag());
    }
}

__device__ void phase_gateup2(const Grid& g, const StackDev& st, const LayerDev& L, const MegaScratch& sc,
                              Work& wk) {
    const int E = st.n_embd, F = st.n_ff;
    const Rows p = wk.layer(st, L, kGateUp);
    norm_to_split(g.in(sc.h), L.post_norm, E, st.eps, wk.sm.xs, wk.sm.red);
    norm_to_split(g.in(sc.h + E), L.post_norm, E, st.eps, split_column(wk.sm.xs, E, 1), wk.sm.red);
    wk.matvec2(p);
    work_sync();  // as in phase_gateup
    const int n = p.src.n_a;
    for (int i = threadIdx.x; i < n; i += kMegaThreads) {
        const float gt = wk.sm.res[i], up = wk.sm.res[n + i];
        st_tagged(sc.act + p.r0 + i, __fmul_rn(gt / (1.0f + expf(-gt)), up), g.out_tag());
        const float gt2 = wk.sm.res2[i], up2 = wk.sm.res2[n + i];
        st_tagged(sc.act + F + p.r0 + i, __fmul_rn(gt2 / (1.0f + expf(-gt2)), up2), g.out_tag());
    }
}

__device__ void phase_down2(const Grid& g, const StackDev& st, const LayerDev& L, const MegaScratch& sc,
                            Work& wk) {
    const int E = st.n_embd, F = st.n_ff;
    const Rows p = wk.layer(st, L, kDown);
    const VecIn own0{.t = sc.h}, own1{.t = sc.h + E};
    const bool mine = int(threadIdx.x) < p.src.n;
    const float r0v = mine ? own0(p.r0 + threadIdx.x) : 0.0f;
    const float r1v = mine ? own1(p.r0 + threadIdx.x) : 0.0f;
    load_to_split(g.in(sc.act), F, wk.sm.xs);
    load_to_split(g.in(sc.act + F), F, split_column(wk.sm.xs, F, 1));
    wk.matvec2(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) {
        const bool own = i == int(threadIdx.x);
        st_tagged(sc.h + p.r0 + i, __fadd_rn(own ? r0v : own0(p.r0 + i), wk.sm.res[i]), g.out_tag());
        st_tagged(sc.h + E + p.r0 + i, __fadd_rn(own ? r1v : own1(p.r0 + i), wk.sm.res2[i]), g.out_tag());
    }
}

// run_layers for positions 0 and 1 at once (the predictor's first pass); same phases.
__device__ bool run_layers2(Grid& g, const StackDev& st, VecIn x0, VecIn x1, int n_groups, const MegaScratch& sc,
                            Work& wk) {
    const int E = st.n_embd;
    for (int l = 0; l < st.n_layer; ++l) {
        const LayerDev& L = st.layers[l];
        const VecIn in0 = l == 0 ? x0 : g.in(sc.h), in1 = l == 0 ? x1 : g.in(sc.h + E);
        phase_qkv2(g, st, L, in0, in1, sc, wk);
        if (!g.next()) return false;
        predictor_attention<2>(g, st, l, 0, n_groups, sc, wk.sm);
        if (!g.next()) return false;
        phase_oproj2(g, st, L, l == 0 ? x0 : VecIn{.t = sc.h}, l == 0 ? x1 : VecIn{.t = sc.h + E}, sc, wk);
        if (!g.next()) return false;
        phase_gateup2(g, st, L, sc, wk);
        if (!g.next()) return false;
        phase_down2(g, st, L, sc, wk);
        if (!g.next()) return false;
    }
    return true;
}

// The consumers' phase state; ctl and flag are the CTA's shared words. The stalled CTA of the watchdog test
// waits here until another CTA's watchdog fires (it never publishes anything).
__device__ Grid make_grid(const GridSync& sync, const MegaLaunch& cfg, PollCtl* ctl, int* flag, Work& wk) {
    Grid g;
#ifdef QTTS_FINE_TRACE
    g.ring_prof = wk.rr.prof;
    wk.rr.ctl = ctl;
#else
    (void)wk;
#endif
    g.sync = sync;
    g.cta = blockIdx.x;
    g.n_cta = gridDim.x;
    g.epoch = *(volatile unsigned*)sync.epoch;
    g.ctl = ctl;
    g.flag = flag;
    g.barriers = cfg.barriers != 0;
    if (threadIdx.x == 0) {
        ctl->error = sync.error;
        ctl->timeout_ns = sync.timeout_ns;
        ctl->backoff_ns = sync.backoff_ns;
        ctl->fail = 0;
        ctl->stamp = nullptr;
#ifdef QTTS_FINE_TRACE
        ctl->fine_on = sync.trace != nullptr;
        for (int s = 0; s < kFineSegs; ++s) ctl->fine_acc[s] = 0;
        ctl->fine_last = clock64();
#endif
    }
    if (sync.trace && threadIdx.x == 0) {
        sync.trace[size_t(g.cta) * sync.trace_cap * 2 + 1] = global_ns();
        if (g.cta == 0) sync.trace[0] = clock64();
    }
    if (g.cta == sync.stall_cta && threadIdx.x == 0) {
        while (!*(volatile int*)sync.error) __nanosleep(1000);
        ctl->fail = 1;
    }
    work_sync();
    return g;
}

// Carves shared memory, sets up the ring and fills the row table (all threads, before the producer / consumer split).
__device__ Work start_work(char* smem_raw, const SmemPlan& plan, int rows_max, const MegaLaunch& cfg,
                           const int* error, unsigned long long* prof, const StackDev& st) {
    __shared__ RowTable row_table;
    Work wk;
    wk.sm = carve(smem_raw, plan, rows_max);
    wk.rows = &row_table;
    fill_row_table(&row_table, st, blockIdx.x, gridDim.x, cfg.ring_bytes, cfg.chunk_rows);
    wk.rr.rs = wk.sm.ring_state;
    wk.rr.ring = wk.sm.ring;
    wk.rr.ring_bytes = cfg.ring_bytes;
    wk.rr.chunk_rows = cfg.chunk_rows;
    wk.rr.error = error;
    wk.cta = blockIdx.x;
    wk.n_cta = gridDim.x;
    if (threadIdx.x == 0) ring_init(wk.sm.ring_state);
#ifdef QTTS_FINE_TRACE
    if (prof) {  // every CTA: the per-phase ring wait of the fine trace
#else
    if (prof && blockIdx.x == 0) {
#endif
        wk.rr.prof = prof;
        if (threadIdx.x == 0) prof[0] = prof[1] = 0;
    }
    __syncthreads();
    return wk;
}

__global__ void __launch_bounds__(kCtaThreads, 1)
    talker_step_kernel(const __grid_constant__ TalkerStepArgs a, const MegaLaunch cfg) {
    extern __shared__ __align__(128) char smem_raw[];
    __shared__ PollCtl poll_ctl;
    __shared__ int flag;
    __shared__ unsigned long long ring_prof[2];
    if (a.stop && *(volatile const int*)a.stop) return;  // the device frame loop drew EOS before this step
    const StackDev& st = a.stack;
    const int rows_max = rows_max_of(st, a.vocab, st.n_embd, gridDim.x);
    const SmemPlan plan = make_smem_plan(max_k_of(st, st.n_embd), rows_max, st.head_dim, 0, 0, 1, true, 0);
    Work wk = start_work(smem_raw, plan, rows_max, cfg, a.sync.error, a.sync.trace ? ring_prof : nullptr, st);
    if (threadIdx.x >= kMegaThreads) {
        ring_produce(wk.sm.ring_state, wk.sm.ring, cfg, kLayerPhases * st.n_layer + 1,
                     [&](int w) { return talker_rows(a, w, wk.cta, wk.n_cta).src; }, a.sync.error);
        return;
    }
    Grid g = make_grid(a.sync, cfg, &poll_ctl, &flag, wk);
    if (poll_ctl.fail) return;
    const auto attention = [&](int l) { phase_attention(g, st, l, a.pos, a.n_chunks, cfg.max_chunks, a.s, wk.sm); };
    if (!run_layers(g, st, VecIn{.f = a.x0}, a.s, wk, attention)) return;
    phase_head(g, st, a.head, a.vocab, a.logits_out, nullptr, a.hidden_out, a.s.h, wk);
    g.finish(ring_prof);
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

// Inclusive prefix sum over the warp's lanes (lane order; every lane takes part).
__device__ __forceinline__ int warp_inclusive_sum(int x) {
    const int lane = threadIdx.x & 31;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
        const int y = __shfl_up_sync(kFull, x, o);
        if (lane >= o) x += y;
    }
    return x;
}

// Exclusive prefix sum over the block (thread order); *total gets the sum. wsum: shared [kWarps].
__device__ int block_exclusive_scan(int v, int* wsum, int* total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int x = warp_inclusive_sum(v);
    if (lane == 31) wsum[warp] = x;
    work_sync();
    int off = 0, tot = 0;
    for (int w = 0; w < kWarps; ++w) {
        const int s = wsum[w];
        if (w < warp) off += s;
        tot += s;
    }
    work_sync();
    *total = tot;
    return off + x - v;
}

// Lowest index of the maximum (torch.argmax / core argmax).
__device__ int block_argmax(const float* v, int n, float* red, int* ired) {
    float bv = -INFINITY;
    int bi = n;
    for (int i = threadIdx.x; i < n; i += kMegaThreads)
        if (v[i] > bv || (bi == n && v[i] == bv)) bv = v[i], bi = i;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(kFull, bv, o);
        const int oi = __shfl_xor_sync(kFull, bi, o);
        if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    const int warp = threadIdx.x >> 5;
    if ((threadIdx.x & 31) == 0) red[warp] = bv, ired[warp] = bi;
    work_sync();
    float rv = red[0];
    int ri = ired[0];
    for (int w = 1; w < kWarps; ++w)
        if (red[w] > rv || (red[w] == rv && ired[w] < ri)) rv = red[w], ri = ired[w];
    work_sync();
    return ri >= n ? 0 : ri;
}

// A threshold t with {i : v[i] >= t} = the k largest values of v[0, n) and every value equal to the k-th: radix
// select over order-preserving keys, 8 bits a pass, with warp-aggregated shared-memory histograms. It stops early
// once the k-th value's bucket is kept whole (t is then the bucket's lowest key; +0.0 and the NaN key excluded, as -0.0
// < t would differ from the key order), else t is the k-th value. The first pass also divides v by `divisor` in place
// (the sampler's temperature: one sweep and one block sync fewer) and gives the maximum of the divided values (*vmax;
// red: shared [kWarps]). hist: shared [4][256] ints; sel: shared [3] ints.
__device__ float block_kth_largest(float* v, int n, int k, float divisor, int* hist, int* sel, float* red,
                                   float* vmax) {
    for (int i = threadIdx.x; i < 4 * 256; i += kMegaThreads) hist[i] = 0;
    if (threadIdx.x == 0) sel[0] = 0, sel[1] = k, sel[2] = 0;
    work_sync();
    const int lane = threadIdx.x & 31;
    float mloc = -INFINITY;
    for (int pass = 0; pass < 4; ++pass) {
        const int shift = 24 - 8 * pass;
        const unsigned prefix = unsigned(sel[0]);
        int* h = hist + pass * 256;
        for (int base = 0; base < n; base += kMegaThreads) {
            const int i = base + threadIdx.x;
            float x = 0.0f;
            if (i < n) {
                x = v[i];
                if (pass == 0) v[i] = x = x / divisor, mloc = fmaxf(mloc, x);  // by the thread that reads it later
            }
            const unsigned key = i < n ? order_key(x) : 0u;
            const bool match = i < n && (pass == 0 || (key >> (shift + 8)) == (prefix >> (shift + 8)));
            const unsigned active = __ballot_sync(kFull, match);
            if (match) {
                const unsigned digit = (key >> shift) & 255u;
                const unsigned same = __match_any_sync(active, digit);
                if (lane == __ffs(same) - 1) atomicAdd(h + digit, __popc(same));
            }
        }
        if (pass == 0) {
            mloc = warp_max(mloc);
            if (lane == 0) red[threadIdx.x >> 5] = mloc;
        }
        work_sync();
        if (pass == 0) {
            mloc = red[0];
            for (int w = 1; w < kWarps; ++w) mloc = fmaxf(mloc, red[w]);
        }
        if (threadIdx.x < 32) {
            // Digits from 255 down: lane l owns digits 255 - 8l .. 248 - 8l.
            const int need = sel[1];
            int c[8], sum = 0;
#pragma unroll
            for (int q = 0; q < 8; ++q) sum += (c[q] = h[255 - 8 * lane - q]);
            __syncwarp();  // every lane has read sel[1] before one lane rewrites it below (racecheck)
            const int incl = warp_inclusive_sum(sum), excl = incl - sum;
            if (excl < need && incl >= need) {
                int cum = excl;
#pragma unroll
                for (int q = 0; q < 8; ++q) {
                    if (cum + c[q] >= need) {
                        const unsigned key = prefix | (unsigned(255 - 8 * lane - q) << shift);
                        sel[0] = int(key);
                        sel[1] = need - cum;
                        sel[2] = need - cum == c[q] && key != 0x80000000u && key != 0u;
                        break;
                    }
                    cum += c[q];
                }
            }
        }
        work_sync();
        if (sel[2]) break;
    }
    *vmax = mloc;
    return key_value(unsigned(sel[0]));
}

__device__ __forceinline__ void stamp(unsigned long long* sub, int k) {
    if (sub && threadIdx.x == 0) sub[2 * k] = global_ns();
}

// sample_token of core/sampler.cpp on lg (shared, modified): temperature → top-k → top-p → inverse CDF draw.
__device__ int block_sample(const Smem& sm, int n, const DevSampler& s, double u, unsigned long long* sub) {
    float* lg = sm.lg;
    if (!s.do_sample) return block_argmax(lg, n, sm.red, sm.ired);
    if (s.top_k <= 0 || s.top_k >= n) {
        for (int i = threadIdx.x; i < n; i += kMegaThreads) lg[i] = lg[i] / s.temperature;
        work_sync();
    }
    // Values below keep_from have probability 0 (top-k without top-p: the select's threshold instead of a sweep that
    // sets them to -inf); vmax: their maximum, once known.
    float keep_from = -INFINITY, vmax = -INFINITY;
    bool have_max = false;
    if (s.top_k > 0 && s.top_k < n) {  // the first pass of the select divides by the temperature
        stamp(sub, 2);
        const float kth =
            block_kth_largest(lg, n, s.top_k, s.temperature, sm.sorted, sm.ired + 2 * kWarps + 8, sm.red, &vmax);
        stamp(sub, 3);
        if (s.top_p < 1.0f) {
            for (int i = threadIdx.x; i < n; i += kMegaThreads)
                if (lg[i] < kth) lg[i] = -INFINITY;
            work_sync();
        } else {
            keep_from = kth;
            have_max = true;  // the largest value is always kept
        }
    }
    const int per = (n + kMegaThreads - 1) / kMegaThreads, i0 = threadIdx.x * per, i1 = min(n, i0 + per);
    int* total_s = sm.ired + 2 * kWarps;  // [0]: count, [2..3]: result
    if (s.top_p < 1.0f) {
        // HF TopP: ascending stable order of the finite logits; drop while cumulative prob <= 1 - top_p.
        const float mx = block_max([&] {
            float m = -INFINITY;
            for (int i = threadIdx.x; i < n; i += kMegaThreads) m = fmaxf(m, lg[i]);
            return m;
        }(), sm.red);
        // Candidate r is value lg[cidx[r]]; thread 0 drops values only after every one has been read.
        int cnt = 0;
        for (int i = i0; i < i1; ++i) cnt += lg[i] != -INFINITY;
        int m = 0;
        int off = block_exclusive_scan(cnt, sm.ired, &m);
        for (int i = i0; i < i1; ++i)
            if (lg[i] != -INFINITY) sm.cidx[off++] = uint16_t(i);
        work_sync();
        for (int r = threadIdx.x; r < m; r += kMegaThreads) {
            const int idx = sm.cidx[r];
            const float v = lg[idx];
            int rank = 0;
            for (int q = 0; q < m; ++q) {
                const int iq = sm.cidx[q];
                rank += lg[iq] < v || (lg[iq] == v && iq < idx);
            }
            sm.sorted[rank] = r;
        }
        work_sync();
        if (threadIdx.x == 0 && m > 0) {
            double total = 0.0;
            for (int r = 0; r < m; ++r) total += double(expf(lg[sm.cidx[r]] - mx));
            double cum = 0.0;
            for (int r = 0; r + 1 < m; ++r) {
                const int iq = sm.cidx[sm.sorted[r]];
                cum += double(expf(lg[iq] - mx)) / total;
                if (cum <= 1.0 - double(s.top_p)) lg[iq] = -INFINITY;
            }
        }
        work_sync();
    }
    stamp(sub, 4);
    if (!have_max) {
        float mloc = -INFINITY;
        for (int i = threadIdx.x; i < n; i += kMegaThreads) mloc = fmaxf(mloc, lg[i]);
        vmax = block_max(mloc, sm.red);
    }
    const float mx = vmax;
    if (mx == -INFINITY) return 0;
    // Only the values top-k / top-p left finite need the (slow) fp64 exp; the others have probability 0. The count
    // needs no exp above -700 (exp(-700) ~ 1e-304 > 0), the same predicate.
    int cnt = 0;
    for (int i = i0; i < i1; ++i) {
        const float dl = lg[i] - mx;
        cnt += lg[i] != -INFINITY && lg[i] >= keep_from && (dl > -700.0f || exp(double(dl)) > 0.0);
    }
    int m = 0;
    int off = block_exclusive_scan(cnt, sm.ired, &m);
    for (int i = i0; i < i1; ++i) {
        if (lg[i] == -INFINITY || lg[i] < keep_from) continue;
        const double p = exp(double(lg[i] - mx));
        if (p > 0.0) sm.cidx[off] = uint16_t(i), sm.cp[off] = p, ++off;
    }
    work_sync();
    stamp(sub, 5);
    if (threadIdx.x < 32) {
        // Lane 0 turns the probabilities into their running sums (the host's order, so the same doubles); the total
        // is the last. Then the warp finds the first running sum above u · total, 32 candidates per step.
        if (threadIdx.x == 0) {
            double cum = 0.0;
            for (int r = 0; r < m; ++r) sm.cp[r] = cum += sm.cp[r];
        }
        __syncwarp();
        const int lane = threadIdx.x;
        const double target = m > 0 ? u * sm.cp[m - 1] : 0.0;
        int pick = m > 0 ? sm.cidx[m - 1] : 0;
        for (int base = 0; base < m; base += 32) {
            const unsigned hit = __ballot_sync(kFull, base + lane < m && target < sm.cp[base + lane]);
            if (hit) {
                pick = sm.cidx[base + __ffs(hit) - 1];
                break;
            }
        }
        if (lane == 0) total_s[2] = pick;
    }
    work_sync();
    stamp(sub, 6);
    const int pick = total_s[2];
    work_sync();
    return pick;
}

// [mtp projection] (1.7B): xproj[r] = W[r] · x + b[r] for this CTA's rows.
__device__ void phase_project(const Grid& g, const PredictorFrameArgs& a, VecIn x, Work& wk) {
    const Rows p = wk.matrix(a.mtp_w, a.stack.n_embd, a.in_dim);
    load_to_split(x, a.in_dim, wk.sm.xs);
    wk.matvec(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads)
        st_tagged(a.s.xproj + p.r0 + i, wk.sm.res[i] + a.mtp_b[p.r0 + i], g.out_tag());
}

// Both columns of the first pass (xproj holds 2 · E values).
__device__ void phase_project2(const Grid& g, const PredictorFrameArgs& a, VecIn x0, VecIn x1, Work& wk) {
    const int E = a.stack.n_embd;
    const Rows p = wk.matrix(a.mtp_w, E, a.in_dim);
    load_to_split(x0, a.in_dim, wk.sm.xs);
    load_to_split(x1, a.in_dim, split_column(wk.sm.xs, a.in_dim, 1));
    wk.matvec2(p);
    for (int i = threadIdx.x; i < p.src.n; i += kMegaThreads) {
        st_tagged(a.s.xproj + p.r0 + i, wk.sm.res[i] + a.mtp_b[p.r0 + i], g.out_tag());
        st_tagged(a.s.xproj + E + p.r0 + i, wk.sm.res2[i] + a.mtp_b[p.r0 + i], g.out_tag());
    }
}

// Weight phases of a pass: [the mtp projection], the layers, the head. Passes 2 .. G-1 with the layer-0 table
// skip the projection and layer 0's QKV (their first `predictor_table_skip` phases).
__device__ __forceinline__ int predictor_phases_per_pass(const PredictorFrameArgs& a) {
    return kLayerPhases * a.stack.n_layer + 1 + (a.mtp_w ? 1 : 0);
}
__device__ __forceinline__ int predictor_table_skip(const PredictorFrameArgs& a) {
    return a.qkv0 ? 1 + (a.mtp_w ? 1 : 0) : 0;
}
__device__ __forceinline__ int predictor_weight_phases(const PredictorFrameArgs& a) {
    return (a.n_groups - 1) * predictor_phases_per_pass(a) - (a.n_groups - 2) * predictor_table_skip(a);
}

// The predictor's weight phases in launch order: for each pass t = 1 .. G-1, [the mtp projection], the
// layers, then lm_head[t - 1] (less the skipped phases of passes 2 .. G-1).
__device__ Rows predictor_rows(const PredictorFrameArgs& a, int w, int cta, int n_cta) {
    const StackDev& st = a.stack;
    const int mtp = a.mtp_w ? 1 : 0, per_pass = predictor_phases_per_pass(a), skip = predictor_table_skip(a);
    int t = 1, r = w;
    if (w >= per_pass) {
        const int later = per_pass - skip;
        t = 2 + (w - per_pass) / later;
        r = (w - per_pass) % later + skip;
    }
    r -= mtp;
    if (r < 0) return matrix_rows(a.mtp_w, st.n_embd, a.in_dim, cta, n_cta);
    if (r == kLayerPhases * st.n_layer)
        return matrix_rows(a.heads + size_t(t - 1) * a.vocab * st.n_embd, a.vocab, st.n_embd, cta, n_cta);
    return layer_rows(st, st.layers[r / kLayerPhases], r % kLayerPhases, cta, n_cta);
}

__global__ void __launch_bounds__(kCtaThreads, 1)
    predictor_frame_kernel(const __grid_constant__ PredictorFrameArgs a, const MegaLaunch cfg) {
    extern __shared__ __align__(128) char smem_raw[];
    __shared__ PollCtl poll_ctl;
    __shared__ int flag;
    __shared__ unsigned long long ring_prof[2];
    __shared__ int abandon;  // the consumers drew EOS: the producer stops streaming
    const FrameLoopArgs& fl = a.loop;
    if (fl.stop && *(volatile const int*)fl.stop) return;  // an earlier frame of the device loop drew EOS
    const StackDev& st = a.stack;
    const int E = st.n_embd, G = a.n_groups, V = a.vocab;
    const int rows_max = rows_max_of(st, V, a.in_dim, gridDim.x);
    const SmemPlan plan = make_smem_plan(max_k_of(st, a.in_dim), rows_max, st.head_dim, max(V, a.vocab0), G, 2, false,
                                         predictor_kv_bytes(st, gridDim.x, G));
    if (threadIdx.x == 0) abandon = 0;
    Work wk = start_work(smem_raw, plan, rows_max, cfg, a.sync.error, a.sync.trace ? ring_prof : nullptr, st);
    if (threadIdx.x >= kMegaThreads) {
        ring_produce(wk.sm.ring_state, wk.sm.ring, cfg, predictor_weight_phases(a),
                     [&](int w) { return predictor_rows(a, w, wk.cta, wk.n_cta).src; }, a.sync.error, &abandon);
        return;
    }
    const Smem& sm = wk.sm;
    Grid g = make_grid(a.sync, cfg, &poll_ctl, &flag, wk);
    if (poll_ctl.fail) return;
    if (fl.talker_logits) {
        // Codebook 0, as core/engine.cpp does on the host: repetition penalty over the utterance's ids, control ids
        // suppressed except EOS, EOS banned when asked, then the talker's sampler (every CTA draws the same id)
        // while the producer already streams pass 1's weights.
        const int V0 = a.vocab0;
        const float penalty = fl.sampler.repetition_penalty;
        for (int i = threadIdx.x; i < V0; i += kMegaThreads) {
            float l = __ldcg(fl.talker_logits + i);
            if (penalty != 1.0f && fl.seen[i]) l = l < 0.0f ? l * penalty : l / penalty;
            if ((i >= fl.suppress_from && i != fl.eos) || (i == fl.eos && fl.ban_eos)) l = -INFINITY;
            sm.lg[i] = l;
        }
        work_sync();
        const int code0 = block_sample(sm, V0, fl.sampler, counter_uniform(fl.sampler.seed, 0, fl.sampler.frame), nullptr);
        if (code0 == fl.eos) {
            if (threadIdx.x == 0) {
                *(volatile int*)&abandon = 1;
                if (g.cta == 0) a.codes_out[0] = code0, *fl.stop = 1;
            }
            return;  // no phase ran: the epoch stays where it was
        }
        if (threadIdx.x == 0) sm.codes[0] = code0;
    } else if (threadIdx.x == 0) {
        sm.codes[0] = a.code0;
    }
    work_sync();
    // Pass t (1 .. G-1) ends with head t-1, which predicts codebook t. Pass 1 runs positions 0 (the talker
    // hidden) and 1 (codebook 0 embedded with the talker table) together, reading the weights once.
    for (int t = 1; t < G; ++t) {
        const uint16_t* head = a.heads + size_t(t - 1) * V * E;
        const Tagged* head_in = a.s.h;  // the head reads the last position's hidden
        if (t == 1) {
            VecIn x0{.f = a.talker_hidden}, x1{.b = a.emb0 + size_t(sm.codes[0]) * a.in_dim};
            if (a.mtp_w) {
                phase_project2(g, a, x0, x1, wk);
                QTTS_NEXT_PHASE(g);
                x0 = g.in(a.s.xproj);
                x1 = g.in(a.s.xproj + E);
            }
            if (!run_layers2(g, st, x0, x1, G, a.s, wk)) return;
            head_in += E;
        } else {
            const size_t code = size_t(t - 2) * V + sm.codes[t - 1];
            VecIn x{.b = a.emb + code * a.in_dim};
            // With the table, layer 0's q/k/v (and the projected input, with mtp) of this code are its row: no
            // projection or QKV phase.
            const int R = st.q_dim() + 2 * st.kv_dim();
            const float* row = a.qkv0 ? a.qkv0 + code * size_t(R + (a.mtp_w ? E : 0)) : nullptr;
            if (row && a.mtp_w) {
                x = VecIn{.f = row + R};
            } else if (a.mtp_w) {
                phase_project(g, a, x, wk);
                QTTS_NEXT_PHASE(g);
                x = g.in(a.s.xproj);
            }
            const auto attention = [&](int l) { predictor_attention<1>(g, st, l, t, G, a.s, sm, l == 0 ? row : nullptr); };
            if (!run_layers(g, st, x, a.s, wk, attention, row != nullptr)) return;
        }
        phase_head(g, st, head, V, nullptr, a.s.logits, nullptr, head_in, wk);
        QTTS_NEXT_PHASE(g);
        unsigned long long* sub =
            a.sync.trace && g.cta == 0 ? a.sync.trace + size_t(a.sync.trace_cap - 8) * 2 : nullptr;
        stamp(sub, 0);
        const VecIn logits = g.in(a.s.logits);
        for (int base = 0; base < V; base += 8 * kMegaThreads) {
            float v[8];
            wait_values(logits, base + threadIdx.x, kMegaThreads, V, v);
#pragma unroll
            for (int k = 0; k < 8; ++k)
                if (base + threadIdx.x + k * kMegaThreads < V) sm.lg[base + threadIdx.x + k * kMegaThreads] = v[k];
        }
        work_sync();
        poll_done(g.ctl);
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
        work_sync();
        const double u = counter_uniform(a.sampler.seed, 1ull + unsigned(t), a.sampler.frame);
        stamp(sub, 1);
        const int code = block_sample(sm, V, a.sampler, u, sub);
        stamp(sub, 7);
        if (threadIdx.x == 0) sm.codes[t] = code;
        work_sync();
    }
    if (g.cta == 0)
        for (int k = threadIdx.x; k < G; k += kMegaThreads) a.codes_out[k] = sm.codes[k];
    // Every CTA has drawn codebook 0 by now (CTA 0 consumed everyone's last head rows, written after it).
    if (fl.talker_logits && g.cta == 0 && threadIdx.x == 0) {
        fl.seen[sm.codes[0]] = 1;
        // The host's cancel flag, read once per frame (one PCIe round trip on one thread): later launches of the
        // batch return at entry.
        if (fl.cancel && *(volatile const int*)fl.cancel) *fl.stop = 1;
    }
    if (fl.next_out) {
        // The next talker input, summed in the host loop's order: codebooks 0 .. G-1, then the text vector.
        const int D = a.in_dim;
        for (int d = g.cta * kMegaThreads + threadIdx.x; d < D; d += g.n_cta * kMegaThreads) {
            float x = 0.0f;
            for (int k = 0; k < G; ++k) {
                const size_t row = k == 0 ? size_t(sm.codes[0]) : size_t(a.vocab0) + size_t(k - 1) * V + sm.codes[k];
                x += fl.tables_f32 ? fl.tables_f32[row * D + d]
                     : k == 0      ? bf16_at(a.emb0 + row * D, d)
                                   : bf16_at(a.emb + (row - a.vocab0) * D, d);
            }
            fl.next_out[d] = x + fl.text_row[d];
        }
    }
    g.finish(ring_prof);
}

// Tests and benchmarks only: block `b` draws from logits [b][n] with settings[b] and u[b] into out[b] with the decode
// kernels' sampler (block_sample).
QTTS_HD inline SmemPlan sample_test_plan(int n) { return make_smem_plan(16, 1, 0, n, 1, 1, false, 0); }

__global__ void __launch_bounds__(kCtaThreads, 1)
    sample_test_kernel(const float* logits, int n, const DevSampler* settings, const double* u, int* out) {
    extern __shared__ __align__(128) char smem_raw[];
    if (threadIdx.x >= kMegaThreads) return;
    const Smem sm = carve(smem_raw, sample_test_plan(n), 1);
    for (int i = threadIdx.x; i < n; i += kMegaThreads) sm.lg[i] = logits[size_t(blockIdx.x) * n + i];
    work_sync();
    const DevSampler& s = settings[blockIdx.x];
    const double ub = u[blockIdx.x];
    const int id = block_sample(sm, n, s, ub, nullptr);
    if (threadIdx.x == 0) out[blockIdx.x] = id;
}

template <class Kernel>
MegaLaunch plan_grid(Kernel kernel, const StackDev& st, int vocab, int in_dim, int vocab_sample, int n_groups,
                     int max_chunks, int cols, int chunk_rows, int pace_bytes, bool predictor,
                     const LaunchLimits& limits) {
    int device = 0;
    QTTS_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    QTTS_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    if (!prop.cooperativeLaunch) throw_gpu_error("this GPU does not support cooperative launches");
    MegaLaunch m;
    m.max_chunks = max_chunks;
    m.chunk_rows = chunk_rows;
    m.pace_bytes = pace_bytes;
    m.n_cta = limits.ctas > 0 ? std::min(limits.ctas, prop.multiProcessorCount) : prop.multiProcessorCount;
    const long long smem_optin = limits.smem_bytes > 0 ? std::min<long long>(limits.smem_bytes, prop.sharedMemPerBlockOptin)
                                                      : (long long)prop.sharedMemPerBlockOptin;
    const long long max_rows = std::max({(long long)st.q_dim() + 2 * st.kv_dim(), (long long)st.n_ff,
                                         (long long)st.n_embd, (long long)vocab});
    if (max_rows * m.n_cta >= (1ll << 32))  // cta_rows splits rows in 32-bit arithmetic
        throw_gpu_error("decode megakernel: a matrix has too many rows for this GPU's grid");
    const int K = max_k_of(st, in_dim);
    int kv_bytes = 0;
    if (predictor) {
        // predictor_attention: lane j holds key j's score, and a CTA's items go to different warps. The sampler keeps
        // candidate ids in 16 bits.
        if (n_groups > 32) throw_gpu_error("code predictor: the CUDA backend supports at most 32 code groups");
        if (vocab_sample > 65536) throw_gpu_error("code predictor: the CUDA backend supports at most 65536 codes");
        if (predictor_kv_slots(st, m.n_cta) > kWarps)
            throw_gpu_error("code predictor: this GPU has too few SMs for the predictor's attention items");
        kv_bytes = predictor_kv_bytes(st, m.n_cta, n_groups);
    }
    const SmemPlan plan = make_smem_plan(K, rows_max_of(st, vocab, in_dim, m.n_cta), st.head_dim, vocab_sample,
                                         n_groups, cols, !predictor, kv_bytes);
    QTTS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(prop.sharedMemPerBlockOptin) - 1024));
    cudaFuncAttributes attr{};
    QTTS_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
    // The weight ring takes the rest of the CTA's shared memory (the static part and 1 KB of slack excluded).
    const long long avail = smem_optin - 1024 - (long long)attr.sharedSizeBytes;
    m.ring_bytes = int((avail - plan.ring) & ~127ll);
    if (m.ring_bytes < 2 * ring_row_stride(K))
        throw_gpu_error("decode megakernel needs more shared memory than this GPU has");
    m.smem = size_t(plan.ring) + size_t(m.ring_bytes);
    // The predictor's ring is capped (kPredictorRingBytes), but its blocks still take all the shared memory: the two
    // kernels alternate on every SM, and one L1 / shared-memory split for both is the configuration measured.
    if (predictor) m.ring_bytes = std::min(m.ring_bytes, kPredictorRingBytes);
    int per_sm = 0;
    QTTS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kCtaThreads, m.smem));
    if (per_sm < 1) throw_gpu_error("decode megakernel cannot be resident on this GPU (registers/shared memory)");
    return m;
}

}  // namespace

MegaLaunch plan_talker_launch(const StackDev& st, int vocab, int max_chunks, const LaunchLimits& limits) {
    return plan_grid(talker_step_kernel, st, vocab, st.n_embd, 0, 0, max_chunks, 1, kTalkerChunkRows,
                     talker_pace_bytes(st.n_embd), false, limits);
}

MegaLaunch plan_predictor_launch(const StackDev& st, int vocab, int vocab0, int in_dim, int n_groups, int max_chunks,
                                 const LaunchLimits& limits) {
    return plan_grid(predictor_frame_kernel, st, vocab, in_dim, std::max(vocab, vocab0), n_groups, max_chunks, 2,
                     kPredictorChunkRows, kPredictorPaceBytes, true, limits);
}

void launch_talker_step(const TalkerStepArgs& args, const MegaLaunch& grid, cudaStream_t stream) {
    MegaLaunch cfg = grid;
    void* params[] = {const_cast<TalkerStepArgs*>(&args), &cfg};
    QTTS_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(talker_step_kernel), dim3(grid.n_cta),
                                                dim3(kCtaThreads), params, grid.smem, stream));
}

void launch_sample_test(const float* logits, int n, const DevSampler* settings, const double* u, int cases, int* out,
                        cudaStream_t stream, bool one_per_sm) {
    if (n < 1 || n > 65536) throw_gpu_error("sampler test: n must be 1 .. 65536");
    int smem = sample_test_plan(n).ring;
    if (one_per_sm) {  // more than half an SM's shared memory: no second block fits beside it
        int device = 0, per_sm = 0;
        QTTS_CUDA_CHECK(cudaGetDevice(&device));
        QTTS_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
        smem = std::max(smem, per_sm / 2 + 1024);
    }
    QTTS_CUDA_CHECK(cudaFuncSetAttribute(sample_test_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    sample_test_kernel<<<cases, kCtaThreads, smem, stream>>>(logits, n, settings, u, out);
    QTTS_CUDA_CHECK(cudaGetLastError());
}

void launch_predictor_frame(const PredictorFrameArgs& args, const MegaLaunch& grid, cudaStream_t stream) {
    MegaLaunch cfg = grid;
    void* params[] = {const_cast<PredictorFrameArgs*>(&args), &cfg};
    QTTS_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(predictor_frame_kernel),
                                                dim3(grid.n_cta), dim3(kCtaThreads), params, grid.smem, stream));
}

}  // namespace qtts::cuda
