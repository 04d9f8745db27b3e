// Plain structs handed to the decoder-stack kernels (decode megakernels in decode_megakernel.cu, batched
// prefill in prefill_kernels.cu) and their launchers. Weights are bf16 bit patterns (uint16_t), norms,
// activations and the KV cache fp32. Dimensions come from the config at run time. No core/ headers here.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace qtts::cuda {

#ifdef __CUDACC__
#define QTTS_HD __host__ __device__
#else
#define QTTS_HD
#endif

// The persistent kernels run 16 warps per CTA (4 per scheduler, so each may use 128 registers): 15 do the
// work (kMegaThreads, also the block size of the prefill kernels that share their helpers) and one streams
// the weights into shared memory.
constexpr int kCtaThreads = 512;
constexpr int kMegaThreads = kCtaThreads - 32;
constexpr int kMaxNormPerThread = 5;  // RMSNorm keeps n_embd <= kMaxNormPerThread * kMegaThreads values in registers
constexpr int kMaxChunks = 8;      // attention chunks per head in a decode step
constexpr int kMaxLayers = 32;     // per-layer pointers travel in the kernel parameters (constant bank)
constexpr int kMaxHeadDim = 128;   // attention keeps head_dim / 32 values per lane in registers

struct LayerDev {
    const float* input_norm;  // [E]
    const float* post_norm;   // [E]
    const float* q_norm;      // [hd]
    const float* k_norm;      // [hd]
    const uint16_t* wqkv;     // [q_dim + 2 kv_dim, E]: q rows, then k rows, then v rows
    const uint16_t* wo;       // [E, q_dim]
    const uint16_t* w_gate;   // [F, E]
    const uint16_t* w_up;     // [F, E]
    const uint16_t* w_down;   // [E, F]
};

struct StackDev {
    int n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_kv_head = 0, head_dim = 0;
    float eps = 1e-6f;
    float attn_scale = 0.0f;  // 1 / sqrt(head_dim), rounded as the CPU's (set by the host: one IEEE sqrt and division)
    float inv_hd = 0.0f;      // 1 / head_dim, exact (head_dim is a power of two): x * inv_hd == x / head_dim
    LayerDev layers[kMaxLayers];       // [n_layer] used
    const float* final_norm = nullptr; // [E]
    float* k_cache = nullptr;          // [n_layer][capacity][kv_dim] post-norm, post-RoPE keys
    float* v_cache = nullptr;          // [n_layer][capacity][kv_dim] raw values
    int capacity = 0;                  // positions the cache and the RoPE tables hold
    const float* rope_cos = nullptr;   // [capacity][hd / 2]
    const float* rope_sin = nullptr;   // [capacity][hd / 2]

    QTTS_HD int q_dim() const { return n_head * head_dim; }
    QTTS_HD int kv_dim() const { return n_kv_head * head_dim; }
};

// Single-position scratch of one backend instance (device). The vectors one phase of a launch writes and the
// next reads are tagged: 64-bit words of fp32 bits (low) and the tag of the writing phase (high), see
// stack_device.cuh.
struct MegaScratch {
    unsigned long long* h = nullptr;       // [E] residual stream
    unsigned long long* qkv = nullptr;     // [q_dim + 2 kv_dim]
    float* part = nullptr;                 // [n_head][max_chunks][2 + hd] attention partials (max, sum, acc)
    unsigned long long* attn = nullptr;    // [q_dim] attention output (partials combined by the last CTA of each head)
    int* head_done = nullptr;              // [n_layer][n_head] chunks finished; reset to 0 by the combining CTA
    unsigned long long* act = nullptr;     // [F] SwiGLU output
    unsigned long long* logits = nullptr;  // [vocab] (predictor: per-codebook logits read back by every CTA)
    unsigned long long* xproj = nullptr;   // [E] small_to_mtp_projection output (1.7B predictor)
};

// Segments of a phase in the fine trace (thread 0's view): waiting for the inputs, preparing the activation
// vector, waiting for weight chunks, MMAs, the cross-warp sums, storing the outputs, the phase end.
enum FineSeg { kFineWait, kFinePrep, kFineRing, kFineMma, kFineReduce, kFineStore, kFineEnd, kFineSegs };

// Phase-ordering state owned by one backend instance; never reset between launches (monotonic epochs).
struct GridSync {
    unsigned* counter = nullptr;  // grid-barrier arrivals so far (mod 2^32; MegaLaunch::barriers only)
    unsigned* epoch = nullptr;    // phases completed by all previous launches (the next phase's tag is epoch + 1)
    int* error = nullptr;         // 1 after a watchdog timeout: the instance is unusable
    unsigned long long timeout_ns = 2'000'000'000ull;
    // Optional phase trace (profiling): [n_cta][trace_cap][2] %globaltimer ns; slot 0 holds the CTA's start,
    // slot b >= 1 the end of the b-th phase of the launch and the moment the CTA had the inputs of the next.
    unsigned long long* trace = nullptr;
    int trace_cap = 0;
    // With the trace: [n_cta][trace_cap] ns the CTA's warp 0 had waited for weight chunks by the end of phase b.
    unsigned long long* trace_ring = nullptr;
    // With the trace: [n_cta][trace_cap][kFineSegs] SM cycles of thread 0 in each segment of phase b.
    unsigned long long* trace_fine = nullptr;
    unsigned backoff_ns = 0;  // __nanosleep between polls of tagged values or the barrier counter (0: spin)
    int stall_cta = -1;       // tests only: this CTA never publishes anything, so the watchdog must fire
};

constexpr int kMaxRingChunkRows = 48;  // the weight ring's chunks: mma_chunk multiplies up to 3 tiles of 16 rows

struct MegaLaunch {
    int n_cta = 0;           // co-resident CTAs (cooperative launch)
    size_t smem = 0;         // dynamic shared memory per CTA
    int max_chunks = 8;      // attention split of one head over the context (partials buffer stride)
    int ring_bytes = 0;      // the weight ring: the shared memory left after the other regions
    int chunk_rows = 48;     // the ring's chunks hold at most this many rows (kTalkerChunkRows / kPredictorChunkRows)
    int cp_async = 0;        // 1: the producer copies with 16-byte cp.async instead of bulk copies (tests)
    int pace_bytes = 0;      // > 0: bulk copies in batches of about this many bytes, two in flight
    int barriers = 0;        // 1: a grid barrier at every phase boundary as well (comparison runs)
};

struct TalkerStepArgs {
    StackDev stack;
    MegaScratch s;
    GridSync sync;
    const float* x0 = nullptr;        // [E] input embedding of the new position
    int pos = 0;                      // its absolute position (= KV slot)
    int n_chunks = 1;                 // attention chunks per head (<= max_chunks)
    const uint16_t* head = nullptr;   // [vocab, E] codec_head
    int vocab = 0;
    float* hidden_out = nullptr;      // [E] final-normed hidden
    float* logits_out = nullptr;      // [vocab]
    const int* stop = nullptr;        // device frame loop: once *stop is set (EOS drawn), the launch does nothing
};

struct DevSampler {
    int do_sample = 0;
    float temperature = 1.0f;
    int top_k = 0;
    float top_p = 1.0f;
    float repetition_penalty = 1.0f;
    unsigned long long seed = 0;
    unsigned long long frame = 0;
};

// The device frame loop (FrameLoopBackend in core/backend.h): a predictor frame that draws codebook 0 itself from
// the talker's logits with the engine's rules (repetition penalty over the utterance's codebook-0 ids, control ids
// suppressed, EOS banned when asked; core/engine.cpp) and forms the next talker input.
struct FrameLoopArgs {
    const float* talker_logits = nullptr;  // [vocab0] raw codec_head logits; null: the host gives code0
    int eos = 0, ban_eos = 0;
    int suppress_from = 0;                 // ids >= this, except EOS, are suppressed (codec control ids)
    DevSampler sampler;                    // the talker's settings; the draw uses stream 0, counter sampler.frame
    unsigned char* seen = nullptr;         // [vocab0] 1 for the codebook-0 ids drawn so far in the utterance
    int* stop = nullptr;                   // set to 1 when EOS is drawn; a launch that finds it set does nothing
    const int* cancel = nullptr;           // host-mapped: once the host sets it, a frame's end sets *stop as well
    float* next_out = nullptr;             // [in_dim] the next talker input (null: none)
    const float* text_row = nullptr;       // [in_dim] its text vector
    const float* tables_f32 = nullptr;     // [vocab0 + (G-1) vocab][in_dim] fp32 code embeddings (null: emb0 / emb)
};

struct PredictorFrameArgs {
    StackDev stack;
    MegaScratch s;
    GridSync sync;
    const float* talker_hidden = nullptr;  // [in_dim]
    const uint16_t* emb0 = nullptr;        // [vocab0, in_dim] talker codec_embedding (embeds codebook 0)
    const uint16_t* emb = nullptr;         // [G-1][vocab, in_dim] predictor tables (codebooks 1 .. G-1)
    const uint16_t* heads = nullptr;       // [G-1][vocab, E] lm_head[k-1] predicts codebook k
    const uint16_t* mtp_w = nullptr;       // [E, in_dim] or null (identity)
    const float* mtp_b = nullptr;          // [E]
    // Layer 0's table, or null: row (t - 2) · vocab + c holds layer 0's qkv [q_dim + 2 kv_dim] for code c of
    // codebook t - 1 as the input of pass t (2 .. G-1), then, with mtp_w, the projected input [E] (the residual).
    const float* qkv0 = nullptr;
    int in_dim = 0, vocab = 0, n_groups = 0, code0 = 0;
    int vocab0 = 0;                        // rows of emb0 (the sampling buffers hold max(vocab, vocab0) values)
    DevSampler sampler;
    int* codes_out = nullptr;              // [G] (the frame loop: host-mapped memory)
    FrameLoopArgs loop;
};

// Tests only: plan as on a GPU with fewer SMs or less shared memory per block (0: this device's).
struct LaunchLimits {
    int ctas = 0;        // CTAs of the persistent kernels (one per SM by default)
    int smem_bytes = 0;  // shared memory per block (e.g. 99 KB: RTX 30/40/50, sm_86/89/120)
};
// Grid and shared memory for the persistent kernels on the current device.
MegaLaunch plan_talker_launch(const StackDev& stack, int vocab, int max_chunks, const LaunchLimits& limits = {});
MegaLaunch plan_predictor_launch(const StackDev& stack, int vocab, int vocab0, int in_dim, int n_groups, int max_chunks,
                                 const LaunchLimits& limits = {});
void launch_talker_step(const TalkerStepArgs& args, const MegaLaunch& grid, cudaStream_t stream);
void launch_predictor_frame(const PredictorFrameArgs& args, const MegaLaunch& grid, cudaStream_t stream);
// Tests and benchmarks only: case b draws one id from logits [b][n] with settings[b] and u[b] into out[b] with the
// decode kernels' sampler (device pointers; one block per case). one_per_sm: the blocks take enough shared memory
// that each SM runs one at a time (timing).
void launch_sample_test(const float* logits, int n, const DevSampler* settings, const double* u, int cases, int* out,
                        cudaStream_t stream, bool one_per_sm = false);

// ---- batched prefill (prefill_kernels.cu) ----
struct GemmArgs {
    const float* x = nullptr;     // [n, K] row stride ldx
    const uint16_t* w = nullptr;  // [R, K] bf16
    float* y = nullptr;           // [n, R] row stride ldy
    int n = 0, R = 0, K = 0, ldx = 0, ldy = 0;
    int accumulate = 0;           // 1: y += x·Wᵀ, 0: y = x·Wᵀ
    float* part = nullptr;        // split-K scratch (may be null: no split)
    size_t part_cap = 0;          // its size in floats
};
void launch_gemm_bf16(const GemmArgs& args, cudaStream_t stream);
// y[t] = w ⊙ x[t] / rms(x[t]) for n rows of width E (row strides ldx / ldy).
void launch_rms_norm_rows(const float* x, int ldx, const float* w, float* y, int ldy, int n, int E, float eps,
                          cudaStream_t stream);
// In place q/k per-head RMSNorm + RoPE on qkv [n, q_dim + 2 kv_dim] at positions pos0 .. pos0+n-1, then
// appends k and v to layer `layer` of the cache.
void launch_qk_norm_rope_append(const StackDev& stack, int layer, float* qkv, int n, int pos0, cudaStream_t stream);
// Causal attention of n new positions over the cache (keys 0 .. pos0+t): out [n, q_dim].
void launch_attention_prefill(const StackDev& stack, int layer, const float* qkv, int n, int pos0, float* out,
                              cudaStream_t stream);
// dst[i] = src[i] (bf16 bits) as fp32, count values.
void launch_bf16_to_f32(const uint16_t* src, float* dst, size_t count, cudaStream_t stream);
// y[t] = b for n rows of width E (row stride ldy).
void launch_fill_rows(float* y, int ldy, const float* b, int n, int E, cudaStream_t stream);
// act[i] = silu(gate[i]) * up[i], count values.
void launch_silu_mul(const float* gate, const float* up, float* act, int count, cudaStream_t stream);

}  // namespace qtts::cuda
