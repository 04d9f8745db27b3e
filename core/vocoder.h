// The speech-tokenizer decoder ("vocoder"), CPU reference in fp32: codes [T, num_quantizers] -> 24 kHz audio,
// samples_per_frame (1920) samples per frame. `Vocoder` holds the immutable weights (shared by any number of
// streams); `VocoderStream` decodes one utterance incrementally, keeping each causal conv's input history and
// the transformer's sliding-window K/V, so any chunking of the frames gives output bit-identical to one full
// pass, with memory bounded independently of the stream length.
//
//   auto store = qtts::TensorStore::open_in(dir / "speech_tokenizer");
//   const qtts::Vocoder vocoder = qtts::Vocoder::load(store, config.vocoder);
//   qtts::VocoderStream stream(vocoder);
//   std::vector<float> pcm;
//   stream.push(frame_codes, pcm);   // frame-major codes; appends 1920 samples per frame
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/backend.h"
#include "core/model_config.h"
#include "core/safetensors.h"

namespace qtts {

struct VocoderWeights;  // packed fp32 weights, defined in vocoder.cpp
struct VocoderState;    // one stream's carried state, defined in vocoder.cpp

class Vocoder {
public:
    // Reads the "decoder.*" tensors (the "encoder.*" ones are ignored) and repacks them for the CPU kernels;
    // codebooks are precomputed as embedding_sum / max(cluster_usage, 1e-5). Throws ModelError naming the
    // tensor when one is missing or has the wrong shape, or naming the field when the config is inconsistent.
    static Vocoder load(const TensorStore& store, const VocoderConfig& config);

    const VocoderConfig& config() const;
    // One pass over codes [n_frames * num_quantizers], frame-major (frame f's codes are contiguous); returns
    // n_frames * samples_per_frame samples in [-1, 1]. Throws InputError for a code outside [0, codebook_size).
    std::vector<float> decode(std::span<const int32_t> codes) const;
    // The loaded weights (core/vocoder_weights.h), for backends that upload them elsewhere.
    const VocoderWeights& weights() const { return *weights_; }

private:
    friend class VocoderStream;
    explicit Vocoder(std::shared_ptr<const VocoderWeights> weights);
    std::shared_ptr<const VocoderWeights> weights_;
};

// Throws InputError unless `codes` is a whole number of frames with every code in [0, codebook_size);
// `first_frame` numbers the frames in the message.
void check_vocoder_codes(const VocoderConfig& config, std::span<const int32_t> codes, int64_t first_frame);

class VocoderStream final : public VocoderBackend {
public:
    // Frames per internal pass: a longer push is decoded in pieces of this many frames (same result, bounded
    // scratch memory: about 30 MB per 32 frames at the real widths).
    static constexpr int64_t kDefaultMaxChunkFrames = 32;

    // Keeps a reference to `vocoder`'s weights; the Vocoder object itself may go away.
    explicit VocoderStream(const Vocoder& vocoder, int64_t max_chunk_frames = kDefaultMaxChunkFrames);
    ~VocoderStream() override;
    VocoderStream(VocoderStream&&) noexcept;
    VocoderStream& operator=(VocoderStream&&) noexcept;

    // Decodes the next frames (codes frame-major, a whole number of frames) and appends exactly
    // n_frames * samples_per_frame samples to `out`. On InputError (a code out of range) nothing is consumed.
    void push(std::span<const int32_t> codes, std::vector<float>& out) override;
    // Back to the start of a new utterance (zero history, position 0).
    void reset() override;
    std::string name() const override { return "cpu"; }
    int64_t frames_done() const;

private:
    std::shared_ptr<const VocoderWeights> weights_;
    std::unique_ptr<VocoderState> state_;
    int64_t max_chunk_frames_;
};

}  // namespace qtts
