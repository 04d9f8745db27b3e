// Weight ring of the persistent decode kernels. One producer warp per CTA copies every weight row the CTA
// will use during the launch, in order, into a byte ring in shared memory: TMA bulk copies on sm_90+
// (cp.async 16-byte copies before that, or when forced for testing). Weights never depend on activations, so
// the producer runs ahead through phase ends, attention and sampling, bounded only by ring space; the
// consumer warps wait for a chunk's mbarrier, multiply with tensor cores (mma_chunk) and release the space.
//
// A phase's rows are cut into chunks of at most ring_chunk_rows rows; chunk i of the launch uses slot
// i % kRingSlots (full / empty mbarriers) and sits at byte offset `head` of the ring, or at 0 when it would
// run past the end. That offset depends only on the sequence of chunk sizes, so producer and consumers compute
// it independently. Include only from .cu files.
#pragma once

#include <cstdint>

#include "cuda/stack_device.cuh"

namespace qtts::cuda::dev {

constexpr int kRingSlots = 8;                    // chunks in flight at most
constexpr int kPaceSlots = 2;                    // paced copy batches in flight
// Chunk size caps of the two kernels (MegaLaunch::chunk_rows; H100, same codes in all). With the ldmatrix matvec
// both kernels are fastest with whole-phase chunks: talker 0.636-0.642 ms at 48 rows, 0.66-0.67 at 16-32;
// predictor 2.11-2.13 ms at 48, 2.12-2.14 at 32, 2.14-2.16 at 16, 2.17-2.22 at 24 (three alternating rounds).
// (With the earlier LDS.128 matvec the predictor preferred 16-row chunks: 2.12 against 2.15 ms.)
constexpr int kTalkerChunkRows = 48, kPredictorChunkRows = 48;
// Paced copy batches (MegaLaunch::pace_bytes, two in flight). With the ldmatrix matvec and 48-row chunks (H100, one
// binary, 3 alternating rounds, device ms): talker 10 KB 0.603-0.604, 8 KB 0.604-0.608, 6 KB 0.615-0.622, 12 KB
// 0.626-0.632, 16 KB 0.633-0.636, 20-32 KB 0.652-0.690; predictor 12 KB 2.032-2.051, 10 KB 2.054-2.083, 8 KB
// 2.070-2.103, 16 KB 2.051-2.078, 6 KB 2.12-2.14. (Before the ldmatrix matvec: talker 16 KB, predictor 8 KB.)
// The 1.7B talker (2048 wide: rows of 4 KB) wants larger batches: 24 KB 1.535-1.539 ms, 20 KB 1.564-1.574, 16 KB
// 1.572-1.577, 10 KB 1.714-1.716. So the talker's pacing grows with its width, from 10 KB at 1024 to 24 KB at 2048.
constexpr int kPredictorPaceBytes = 12 << 10;
// The predictor's ring is capped: with its sampling buffers slimmed (42 instead of 72 KB) it could take 165 KB of an
// H100's shared memory, and a larger ring lets the producer run further ahead and slows the latency-bound phases
// (H100, one binary, 3 alternating rounds, predictor frame: 165 KB 1.852-1.864 ms, 134 KB 1.783-1.801, 110 KB
// 1.890-1.899). The talker keeps all it gets (capped at 134 KB it took 0.664-0.668 ms instead of 0.591-0.598).
constexpr int kPredictorRingBytes = 134 << 10;
QTTS_HD inline int talker_pace_bytes(int n_embd) {
    const int extra = n_embd <= 1024 ? 0 : n_embd >= 2048 ? 14 << 10 : (n_embd - 1024) * 14;
    return (10 << 10) + extra;
}
static_assert(kTalkerChunkRows <= kMaxRingChunkRows && kPredictorChunkRows <= kMaxRingChunkRows,
              "mma_chunk takes <= 48 rows");

struct RingShared {
    unsigned long long full[kRingSlots];   // producer lanes arrive (32); bytes complete the transaction
    unsigned long long empty[kRingSlots];  // consumer warps arrive (kWarps) after their MMAs
    int off[kRingSlots], size[kRingSlots]; // producer-only bookkeeping of the chunks in flight
    unsigned long long pace[kPaceSlots];   // paced copies: the producer's own batches (count 1 + bytes)
};

// Rows per chunk of an n × K phase: a chunk takes at most 3/5 of the ring (so the next one can be in flight),
// at most max_rows (the kernel's cap above), and the phase's chunks are balanced. Unsigned arithmetic and a
// one-chunk shortcut: every consumer thread runs this once per phase (signed divisions were ~7 % of a launch's
// instructions).
QTTS_HD inline int ring_chunk_rows(int n, int K, int ring_bytes, int max_rows) {
    const unsigned cap_bytes = unsigned(ring_bytes) * 3u / 5u, cap_rows = cap_bytes / unsigned(ring_row_stride(K));
    const unsigned cap = cap_rows < 1u ? 1u : cap_rows > unsigned(max_rows) ? unsigned(max_rows) : cap_rows;
    if (n <= 0) return 1;
    if (unsigned(n) <= cap) return n;
    const unsigned chunks = (unsigned(n) + cap - 1u) / cap;
    return int((unsigned(n) + chunks - 1u) / chunks);
}

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ bool mbar_done(uint32_t bar, uint32_t parity) {
    uint32_t done;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
#else
    asm volatile("{ .reg .pred p; mbarrier.test_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
#endif
    return done != 0;
}

// Waits for phase `parity` of the mbarrier; gives up (false) once *error is set (another CTA's watchdog) or
// *abort (a CTA-shared flag: the consumers left the launch early, e.g. the frame drew EOS).
__device__ __forceinline__ bool mbar_wait(uint32_t bar, uint32_t parity, const int* error,
                                          const volatile int* abort = nullptr) {
    for (unsigned spin = 1;; ++spin) {
        if (mbar_done(bar, parity)) return true;
        if (abort && *abort) return false;
        if ((spin & 1023u) == 0 && *(volatile const int*)error) return false;
    }
}

__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    asm volatile("{ .reg .b64 state; mbarrier.arrive.shared::cta.b64 state, [%0]; }" ::"r"(bar) : "memory");
}

// Thread 0, before the block-wide __syncthreads that precedes the producer / consumer split.
__device__ __forceinline__ void ring_init(RingShared* rs) {
    for (int i = 0; i < kRingSlots; ++i) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(rs->full + i)), "r"(32) : "memory");
        asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(rs->empty + i)), "r"(kWarps) : "memory");
    }
    for (int i = 0; i < kPaceSlots; ++i)
        asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_u32(rs->pace + i)), "r"(1) : "memory");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
#endif
}

// Where chunk of `bytes` goes, given the end of the previous one (same rule on both sides).
__device__ __forceinline__ int ring_place(int head, int bytes, int ring_bytes) {
    return head + bytes <= ring_bytes ? head : 0;
}

// L2 policy of the weight stream: evict first. Each weight byte is read once per launch, and the stream (0.9-2.4
// GB per launch) would otherwise push out what is read again soon: the K/V cache, the norm weights and RoPE tables,
// the tagged values of the handoffs (predictor frame 1.97-2.01 -> 1.82-1.84 ms, talker step 0.603-0.605 -> 0.594-0.598
// on an H100). Keeping 5-25 % of the predictor's weight lines in L2 across its 15 passes (evict-last) gained nothing
// or lost (1.81-1.83 / 1.82-1.84 / 1.87-1.88 / 1.93-1.94 ms): the kernel is bound by latency, not bytes.
__device__ __forceinline__ uint64_t weight_l2_policy() {
    uint64_t p = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
#endif
    return p;
}

// One producer warp: rows [r0, r0 + n) of src into dst (row stride RS), one TMA bulk copy per row; lane 0
// arrives on `bar` expecting all their bytes (sm_90+).
__device__ __forceinline__ void bulk_copy_rows(char* dst, int RS, const RowSrc& src, int r0, int n, uint32_t bar,
                                               uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int lane = threadIdx.x & 31, row_bytes = 2 * src.K;
    if (lane == 0)
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(n * row_bytes) : "memory");
    __syncwarp();
    for (int i = lane; i < n; i += 32)
        asm volatile(
            "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;" ::"r"(
                smem_u32(dst + i * RS)),
            "l"(src.row(r0 + i)), "r"(row_bytes), "r"(bar), "l"(policy)
            : "memory");
#else
    (void)dst, (void)RS, (void)src, (void)r0, (void)n, (void)bar, (void)policy;
#endif
}

// The producer warp: streams phases 0 .. n_phases-1 (phase_at(w) gives this CTA's rows of phase w) into the
// ring, with cfg's chunk size and pacing (cfg.cp_async: 16-byte cp.async copies instead of bulk copies, always so
// before sm_90). Stops early when *error or *abort is set (mbar_wait), after the copies already issued have landed.
template <class PhaseAt>
__device__ void ring_produce(RingShared* rs, char* ring, const MegaLaunch& cfg, int n_phases, PhaseAt phase_at,
                             const int* error, const volatile int* abort = nullptr) {
    constexpr int pace_depth = kPaceSlots;
    const int lane = threadIdx.x & 31, ring_bytes = cfg.ring_bytes, chunk_rows = cfg.chunk_rows,
              pace_bytes = cfg.pace_bytes;
    int cp_async = cfg.cp_async;
#if !(defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
    cp_async = 1;
#endif
    int head = 0, item = 0, oldest = 0, batch = 0;
    bool ok = true;
    const uint64_t policy = weight_l2_policy();
    for (int w = 0; w < n_phases && ok; ++w) {
        const RowSrc src = phase_at(w);
        const int RS = ring_row_stride(src.K), per = ring_chunk_rows(src.n, src.K, ring_bytes, chunk_rows);
        for (int r0 = 0; r0 < src.n && ok; r0 += per, ++item) {
            const int rows = min(per, src.n - r0), bytes = rows * RS, slot = item % kRingSlots;
            const int at = ring_place(head, bytes, ring_bytes);
            // Wait until no chunk in flight overlaps [at, at + bytes) and a slot is free (FIFO release).
            for (;;) {
                bool clash = item - oldest == kRingSlots;
                for (int i = oldest; i < item && !clash; ++i) {
                    const int s = i % kRingSlots;
                    clash = at < rs->off[s] + rs->size[s] && rs->off[s] < at + bytes;
                }
                if (!clash) break;
                if (!mbar_wait(smem_u32(rs->empty + oldest % kRingSlots), uint32_t(oldest / kRingSlots) & 1u,
                               error, abort)) {
                    ok = false;
                    break;
                }
                ++oldest;
            }
            if (!ok) break;
            __syncwarp();  // every lane has read off / size before lane 0 rewrites them (and after, below)
            if (lane == 0) rs->off[slot] = at, rs->size[slot] = bytes;
            __syncwarp();
            head = at + bytes;
            const uint32_t bar = smem_u32(rs->full + slot);
            char* dst = ring + at;
            if (!cp_async && pace_bytes > 0) {  // (bulk copies: sm_90+ only; cp_async is forced before that)
                // Paced: batches of ~pace_bytes, two in flight. Whole-chunk copies from every SM at once (up to
                // 13 MB, issued as the consumers head for a grid barrier) queue ahead of the barrier's atomics and
                // polls and of the next activation loads: barrier release took 2.5-4 us instead of ~1.2-1.8
                // (H100: talker step 1.01 -> 0.90 ms). The chunk is released once all of it has landed.
                const int per_batch = max(1, pace_bytes / (2 * src.K));
                for (int b0 = 0; b0 < rows && ok; b0 += per_batch, ++batch) {
                    const int nb = min(per_batch, rows - b0);
                    const uint32_t pb = smem_u32(rs->pace + batch % pace_depth);
                    if (batch >= pace_depth && !(ok = mbar_wait(pb, uint32_t(batch / pace_depth - 1) & 1u, error, abort)))
                        break;
                    bulk_copy_rows(dst + b0 * RS, RS, src, r0 + b0, nb, pb, policy);
                }
                for (int k = max(0, batch - pace_depth); k < batch && ok; ++k)
                    ok = mbar_wait(smem_u32(rs->pace + k % pace_depth), uint32_t(k / pace_depth) & 1u, error, abort);
                __syncwarp();
                mbar_arrive(bar);
            } else if (!cp_async) {
                bulk_copy_rows(dst, RS, src, r0, rows, bar, policy);
                if (lane != 0) mbar_arrive(bar);
            } else {
                const int per_row = src.K >> 3;
                for (int p = lane; p < rows * per_row; p += 32) {
                    const int i = p / per_row, c = p - i * per_row;
                    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_u32(dst + i * RS + 16 * c)),
                                 "l"(src.row(r0 + i) + 8 * c)
                                 : "memory");
                }
                asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
            }
        }
    }
    if (!ok) {
        // Failed or abandoned launch: let the copies already issued land before this CTA's shared memory goes
        // away (paced batches: the last kPaceSlots issued; every earlier one was waited for before its slot's reuse).
        for (int k = max(0, batch - pace_depth); k < batch; ++k)
            for (int spin = 0; spin < (1 << 22); ++spin)
                if (mbar_done(smem_u32(rs->pace + k % pace_depth), uint32_t(k / pace_depth) & 1u)) break;
        for (int i = oldest; i < item; ++i)
            for (int spin = 0; spin < (1 << 22); ++spin)
                if (mbar_done(smem_u32(rs->full + i % kRingSlots), uint32_t(i / kRingSlots) & 1u)) break;
    }
}

// The consumers' side: chunks are taken in the producer's order.
struct RingReader {
    RingShared* rs = nullptr;
    const char* ring = nullptr;
    int ring_bytes = 0, chunk_rows = kMaxRingChunkRows;
    const int* error = nullptr;
    int item = 0, head = 0;
    unsigned long long* prof = nullptr;  // trace: thread 0's [0] ns waiting for chunks, [1] ns in the MMAs
    PollCtl* ctl = nullptr;              // trace: the fine segments (fine_mark)

    // res[c][i] = row(i) · x_c for this CTA's rows of the current phase (src.n rows of src.K), x_c split in
    // xsp (column c at split_column(xsp, K, c)). part[c]: [src.n · kWarps] scratch. Thread i % kMegaThreads
    // writes res[c][i] and may read it on return; reading other threads' rows needs a work_sync first (the phase
    // end's sync orders everything before part / res are written again).
    template <int C>
    __device__ void matvec(const RowSrc& src, const uint16_t* xsp, float* const (&part)[C],
                           float* const (&res)[C]) {
        const int RS = ring_row_stride(src.K),
                  per = src.per > 0 ? src.per : ring_chunk_rows(src.n, src.K, ring_bytes, chunk_rows);
        fine_mark(ctl, kFinePrep);
        for (int r0 = 0; r0 < src.n; r0 += per, ++item) {
            const int rows = min(per, src.n - r0), slot = item % kRingSlots;
            const int at = ring_place(head, rows * RS, ring_bytes);
            head = at + rows * RS;
            const bool timed = prof && threadIdx.x == 0;
            const unsigned long long t0 = timed ? global_ns() : 0;
            if (!mbar_wait(smem_u32(rs->full + slot), uint32_t(item / kRingSlots) & 1u, error)) continue;
            fine_mark(ctl, kFineRing);
            const unsigned long long t1 = timed ? global_ns() : 0;
            mma_chunk<C>(ring + at, rows, src.K, xsp, part, r0);
            fine_mark(ctl, kFineMma);
            if (timed) {
                prof[0] += t1 - t0;
                prof[1] += global_ns() - t1;
            }
            __syncwarp();
            if ((threadIdx.x & 31) == 0) mbar_arrive(smem_u32(rs->empty + slot));
        }
        work_sync();
#pragma unroll
        for (int c = 0; c < C; ++c)
            for (int i = threadIdx.x; i < src.n; i += kMegaThreads) {
                float v = 0.0f;
#pragma unroll
                for (int w = 0; w < kWarps; ++w) v += part[c][i * kWarps + w];
                res[c][i] = v;
            }
        fine_mark(ctl, kFineReduce);
    }
    __device__ void matvec1(const RowSrc& src, const uint16_t* xsp, float* part, float* res) {
        float* const pt[1] = {part};
        float* const out[1] = {res};
        matvec<1>(src, xsp, pt, out);
    }
};

}  // namespace qtts::cuda::dev
