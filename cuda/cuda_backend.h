// The CUDA backends of the talker and the code predictor (core/backend.h interfaces): weights uploaded once as
// bf16, fp32 activations and KV cache, batched prefill, one persistent cooperative launch per talker step and
// one per code-predictor frame (15 codebooks sampled on the device).
//
//   qtts::cuda::register_backend();                       // at program start; no-op without a GPU
//   auto model = qtts::Model::load(dir, {.device = qtts::Device::cuda});
//   qtts::Session session(model);                          // builds CudaTalker + CudaPredictor
#pragma once

#include <string>

#include "core/backend.h"

namespace qtts::cuda {

struct CudaOptions {
    int max_chunks = 8;         // most attention chunks per head in a decode step (fewer when CTAs are few)
    bool ring_cp_async = false; // weight ring copies with cp.async (the pre-Hopper path) instead of bulk copies
    double timeout_s = 2.0;     // watchdog: a CTA waiting longer than this for another's values fails with GpuError
                                // (the environment's QTTS_WATCHDOG_S replaces this default, e.g. under compute-sanitizer)
    unsigned backoff_ns = 0;    // sleep between polls for another CTA's values or a grid barrier (0: spin)
    bool trace = false;         // record per-CTA phase end / next-input times (CudaTimed::trace_report)
    int test_stall_cta = -1;    // tests only: this CTA never publishes anything (proves the watchdog)
    int ring_pace_kb = -1;      // weight ring: bulk copies in batches of this many KB, two in flight (0: whole
                                // chunks at once; -1: each kernel's own, talker 10-24 KB by width, predictor 12)
    int ring_chunk_rows = 0;    // weight ring: rows per chunk at most (0: each kernel's own, kTalkerChunkRows / ...)
    int test_ring_bytes = 0;    // tests only: a smaller weight ring (phases cut into more chunks, more wrap-arounds)
    bool grid_barriers = false; // a grid barrier at every phase boundary as well (comparison runs: the phases
                                // otherwise only poll the tagged values they read, see cuda/NOTES.md)
    int test_grid_ctas = 0;     // tests only: the persistent kernels run this many CTAs (0: one per SM), as on a GPU
                                // with few SMs (several attention items and predictor K/V slots per CTA)
    int test_smem_bytes = 0;    // tests only: plan for this much shared memory per block (0: the device's), e.g.
                                // 99 KB as on RTX 30/40/50 GPUs
    bool predictor_table = true; // code predictor: layer 0's q/k/v of every code of codebooks 1 .. G-2 computed
                                // once at load (0.6B: 470 MB), so passes 2 .. G-1 skip their first QKV phase (and
                                // the input projection); left out when free GPU memory is short
};

// Registers the CUDA factory with core when qtts::cuda::device_count() > 0; otherwise does nothing.
void register_backend();
// Builds both backends on the current device; throws GpuError (no device, out of memory, unsupported shape).
Backends make_backends(const ModelConfig& config, const ModelWeights& weights, const CudaOptions& options = {});

// The watchdog (seconds) of a backend built with CudaOptions::timeout_s = `configured`: the environment's
// QTTS_WATCHDOG_S (seconds, > 0) replaces the default, for runs that slow the kernels by orders of magnitude
// (compute-sanitizer). Throws GpuError for a value that is not a positive number of seconds.
double watchdog_seconds(double configured);

// Implemented by the CUDA backends: device time of the most recent prefill / step / frame launch sequence.
class CudaTimed {
public:
    virtual ~CudaTimed() = default;
    virtual double last_device_ms() const = 0;
    // With CudaOptions::trace: per phase kind, mean / max CTA work time, wait for inputs and cycle (µs).
    virtual std::string trace_report() const { return {}; }
};

}  // namespace qtts::cuda
