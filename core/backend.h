// The per-step interfaces every compute backend implements (CPU reference here, CUDA in cuda/). They are
// per step, not per op, so no virtual call sits inside a layer loop. The engine owns the protocol
// (prompt, sampling order, stop rules); a backend owns weights on its device and the KV caches.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/sampler.h"

namespace qtts {

class TalkerBackend {
public:
    virtual ~TalkerBackend() = default;
    // Starts a new sequence: runs `n` prefill positions (embeds [n, n_embd]).
    virtual void prefill(std::span<const float> embeds, int64_t n) = 0;
    // Appends one position (embed [n_embd]).
    virtual void step(std::span<const float> embed) = 0;
    // Final-normed hidden state [n_embd] and raw codec_head logits [vocab] of the last position.
    virtual std::span<const float> hidden() const = 0;
    virtual std::span<const float> logits() const = 0;
    virtual std::string name() const = 0;
};

class PredictorBackend {
public:
    virtual ~PredictorBackend() = default;
    // Given the talker hidden state that produced codes[0], fills codes[1 .. G-1] for frame `frame`.
    // Draws use rng.uniform(stream = 1 + codebook, counter = frame).
    virtual void predict(std::span<const float> talker_hidden, std::span<int32_t> codes,
                         const SamplerSettings& settings, const CounterRng& rng, uint64_t frame) = 0;
    // Teacher forcing (parity): feeds the given codes[0 .. G-2] and writes the arg-max prediction for every
    // codebook 1 .. G-1 into argmax[1 .. G-1]. Backends without it throw.
    virtual void forced_argmax(std::span<const float> talker_hidden, std::span<const int32_t> codes,
                               std::span<int32_t> argmax);
    virtual std::string name() const = 0;
};

// One utterance's streaming speech-tokenizer decoder (codes -> 24 kHz PCM) with its carried state. The CPU
// one is VocoderStream (core/vocoder.h); a GPU backend may supply its own. Any chunking of the pushed frames
// gives the same audio as one push.
class VocoderBackend {
public:
    virtual ~VocoderBackend() = default;
    // Decodes the next frames (codes frame-major, a whole number of frames) and appends exactly
    // n_frames * samples_per_frame samples to `out`. Throws InputError for a code out of range.
    virtual void push(std::span<const int32_t> codes, std::vector<float>& out) = 0;
    // Back to the start of a new utterance (zero history, position 0).
    virtual void reset() = 0;
    virtual std::string name() const = 0;
};

// Optional (GPU backends): the engine's frame loop on the device, so that frames run back to back without a host
// round trip each. Per frame it draws codebook 0 from the talker's logits by the engine's rules (repetition
// penalty over the utterance's codebook-0 ids, control ids suppressed except EOS, EOS banned at frames 0-1 or
// when asked; draws CounterRng(seed).uniform(0, frame_offset + g)), predicts codebooks 1..G-1, sums the next
// talker input (the G code embeddings, then a text row) and runs the talker step. The host enqueues a batch of
// frames and collects their codes once. Same codes as the host loop over the TalkerBackend / PredictorBackend
// it was made with; a frame after one that drew EOS does nothing.
class FrameLoopBackend {
public:
    struct Settings {
        SamplerSettings talker, predictor;
        uint64_t seed = 0, frame_offset = 0;
        bool ban_eos = false;   // EOS banned at every frame
        int64_t text_rows = 0;  // rows put_text_rows may fill
    };
    struct Times {
        double talker_s = 0, predictor_s = 0;  // device time of the frames collected
        int64_t talker_steps = 0;
    };
    virtual ~FrameLoopBackend() = default;
    // Starts an utterance after TalkerBackend::prefill (frame 0 draws from the prefill's logits).
    virtual void begin(const Settings& settings) = 0;
    // Text rows [first, first + rows.size() / n_embd) for later next_text_row arguments (copied before return).
    virtual void put_text_rows(int64_t first, std::span<const float> rows) = 0;
    // Enqueues frame g (0, 1, 2, ...): for g >= 1 the talker step on frame g-1's input, then codebook 0 and the
    // predictor; with next_text_row >= 0 also frame g+1's input (that text row).
    virtual void enqueue_frame(int64_t g, int64_t next_text_row) = 0;
    // Waits for frames [first, first + n), which must be all those enqueued and not yet collected, and copies
    // their codes, frame-major. A frame that drew EOS has only codes[0] set. While it waits it polls
    // `should_cancel` (when given); once that returns true, every frame that has not started by the end of the
    // one running does nothing. A frame that did nothing (after EOS or a cancel) has codes[0] = -1.
    virtual Times collect(int64_t first, int64_t n, std::span<int32_t> codes,
                          const std::function<bool()>& should_cancel) = 0;
    // Waits for every enqueued frame (ends an utterance that stopped early).
    virtual void finish() = 0;
};

struct ModelWeights;
struct ModelConfig;
class Vocoder;

struct Backends {
    std::unique_ptr<TalkerBackend> talker;
    std::unique_ptr<PredictorBackend> predictor;
    std::unique_ptr<VocoderBackend> vocoder;      // nullptr: the session uses the CPU VocoderStream
    std::unique_ptr<FrameLoopBackend> frame_loop; // nullptr: the engine's host loop; refers to talker and predictor
};

// A GPU library registers its factory at program start (the CLI calls qtts::cuda::register_backend());
// core/ itself never depends on CUDA. The factory throws GpuError when no usable device exists.
using BackendFactory =
    std::function<Backends(const ModelConfig& config, const ModelWeights& weights, const Vocoder& vocoder)>;
void register_gpu_backend(BackendFactory factory);
// nullptr when no GPU library was linked in.
const BackendFactory* gpu_backend();

}  // namespace qtts
