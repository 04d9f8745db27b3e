// The speech-tokenizer decoder on the GPU: `CudaVocoder` holds the decoder weights on the device (fp32, one
// allocation, uploaded once from a loaded qtts::Vocoder); `CudaVocoderStream` is a core VocoderBackend that
// decodes pushed frames incrementally with the same carried state as the CPU VocoderStream (each causal
// conv's input history, the transformer's sliding-window K/V, the absolute position), so any chunking gives
// bit-identical audio to one pass. All work of a chunk runs on one CUDA stream, replayed from a CUDA graph
// captured once per (chunk length, buffer parity) and cached (bounded; other lengths launch directly, with the
// same kernels and results); the only host sync is the final PCM copy of each chunk.
//
//   auto weights = std::make_shared<const qtts::cuda::CudaVocoder>(model->vocoder());
//   qtts::cuda::CudaVocoderStream stream(weights);
//   stream.warmup(std::vector<int64_t>{1, 2, 4, 8});  // optional: capture these graphs now, not at first use
//   stream.push(frame_codes, pcm);   // appends 1920 samples per frame
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/vocoder.h"
#include "cuda/cuda_backend.h"

namespace qtts::cuda {

struct CudaVocoderWeights;  // device pointers, defined in cuda_vocoder.cpp
struct CudaVocoderState;    // one stream's buffers, defined in cuda_vocoder.cpp

class CudaVocoder {
public:
    // Uploads `vocoder`'s weights to the current device. Throws GpuError (no device, out of memory).
    explicit CudaVocoder(const Vocoder& vocoder);
    ~CudaVocoder();
    CudaVocoder(const CudaVocoder&) = delete;
    CudaVocoder& operator=(const CudaVocoder&) = delete;

    const VocoderConfig& config() const;
    size_t weight_bytes() const;
    // Work of one frame: GEMM FLOPs (2 per multiply-add), activation bytes the GEMMs read and write (each
    // input row once, each output twice: stored, then read by the next op), and the weight bytes (read once
    // per chunk, so per frame they divide by the chunk length).
    struct Cost {
        double flops = 0, activation_bytes = 0, weight_bytes = 0;
    };
    Cost cost_per_frame() const;

private:
    friend class CudaVocoderStream;
    std::unique_ptr<CudaVocoderWeights> w_;
};

class CudaVocoderStream final : public VocoderBackend, public CudaTimed {
public:
    // Frames per internal pass: longer pushes are decoded in pieces of this many (device scratch scales with it,
    // about 10 MB per frame at the real widths).
    static constexpr int64_t kDefaultMaxChunkFrames = 32;
    // Distinct chunk lengths that get CUDA graphs (two each, one per buffer parity; ~100 kernel nodes per
    // graph). The first lengths used are captured (at their first push or by warmup()); later new lengths
    // launch their kernels directly. 16 covers the ramp (1, 2, 4, 8, ...), the longest chunk and most tails.
    static constexpr int64_t kDefaultMaxGraphChunks = 16;

    // max_graph_chunks = 0, or the environment variable QTTS_NO_GRAPHS=1, turns CUDA graphs off.
    explicit CudaVocoderStream(std::shared_ptr<const CudaVocoder> vocoder,
                               int64_t max_chunk_frames = kDefaultMaxChunkFrames,
                               int64_t max_graph_chunks = kDefaultMaxGraphChunks);
    ~CudaVocoderStream() override;

    void push(std::span<const int32_t> codes, std::vector<float>& out) override;
    void reset() override;
    std::string name() const override { return "cuda"; }
    int64_t frames_done() const;
    // Device time of the most recent push (all of its chunks), from CUDA events.
    double last_device_ms() const override;
    // Captures the graphs (both parities) of pushes of these frame counts now, as far as the cache allows;
    // decodes nothing and leaves the stream's state alone. A push of n > max_chunk_frames frames uses the
    // chunk lengths max_chunk_frames and n % max_chunk_frames.
    void warmup(std::span<const int64_t> push_frames);
    // Chunk lengths with captured graphs so far.
    int64_t graph_chunks() const;
    bool graphs_enabled() const;

private:
    // Makes the graphs of chunk length n when graphs are on, n is new and the cache has room.
    void prepare_graphs(int64_t n);
    // Enqueues all device work of one chunk (inputs already in the pinned input slot) on the stream.
    void enqueue_chunk(int64_t n, int parity);
    void decode_chunk(const int32_t* codes, int64_t n, std::vector<float>& out);
    std::shared_ptr<const CudaVocoder> vocoder_;
    std::unique_ptr<CudaVocoderState> st_;
};

// A CudaVocoderStream over freshly uploaded weights (what the registered GPU factory gives each Session).
std::unique_ptr<VocoderBackend> make_vocoder_stream(const Vocoder& vocoder);

}  // namespace qtts::cuda
