// The speech-tokenizer decoder on the GPU: `CudaVocoder` holds the decoder weights on the device (fp32, one
// allocation, uploaded once from a loaded qtts::Vocoder); `CudaVocoderStream` is a core VocoderBackend that
// decodes pushed frames incrementally with the same carried state as the CPU VocoderStream (each causal
// conv's input history, the transformer's sliding-window K/V, the absolute position), so any chunking gives
// bit-identical audio to one pass. All work of a push runs on one CUDA stream; the only host sync is the
// final PCM copy of each chunk.
//
//   auto weights = std::make_shared<const qtts::cuda::CudaVocoder>(model->vocoder());
//   qtts::cuda::CudaVocoderStream stream(weights);
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

    explicit CudaVocoderStream(std::shared_ptr<const CudaVocoder> vocoder,
                               int64_t max_chunk_frames = kDefaultMaxChunkFrames);
    ~CudaVocoderStream() override;

    void push(std::span<const int32_t> codes, std::vector<float>& out) override;
    void reset() override;
    std::string name() const override { return "cuda"; }
    int64_t frames_done() const;
    // Device time of the most recent push (all of its chunks), from CUDA events.
    double last_device_ms() const override;

private:
    void decode_chunk(const int32_t* codes, int64_t n, std::vector<float>& out);
    std::shared_ptr<const CudaVocoder> vocoder_;
    std::unique_ptr<CudaVocoderState> st_;
};

// A CudaVocoderStream over freshly uploaded weights (what the registered GPU factory gives each Session).
std::unique_ptr<VocoderBackend> make_vocoder_stream(const Vocoder& vocoder);

}  // namespace qtts::cuda
