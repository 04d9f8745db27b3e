// The one entry point every subcommand uses: `Model` (immutable: config, tokenizer, weights, vocoder;
// shared by sessions) and `Session` (mutable: backends with their KV caches, per-stage timers).
//
//   auto model = qtts::Model::load("/models/Qwen3-TTS-12Hz-0.6B-Base", {});
//   qtts::Session session(model);
//   qtts::SynthesisRequest request{.text = "Hello!", .language = "english"};
//   qtts::SynthesisResult result = session.synthesize(request);   // result.audio: 24 kHz mono float
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/sampler.h"
#include "core/speaker_encoder.h"
#include "core/talker.h"
#include "core/tokenizer.h"
#include "core/vocoder.h"

namespace qtts {

enum class Device { cpu, cuda, automatic };
Device parse_device(std::string_view name);  // "cpu" | "cuda" | "auto"; throws InputError

struct ModelOptions {
    Device device = Device::cpu;
    // Receives load-time warnings, one line each (e.g. tensors in the checkpoint that nothing reads);
    // empty: printed as "warning: ..." on stderr.
    std::function<void(const std::string&)> warn = nullptr;
};

class Model {
public:
    static std::shared_ptr<const Model> load(const std::filesystem::path& dir, const ModelOptions& options);
    // Random weights of a real architecture ("0.6b"), built in memory: for benchmarks (audio is noise).
    static std::shared_ptr<const Model> load_random(std::string_view size, uint64_t seed, const ModelOptions& options);

    const ModelConfig& config() const { return config_; }
    const Tokenizer& tokenizer() const { return *tokenizer_; }
    const ModelWeights& weights() const { return weights_; }
    const Vocoder& vocoder() const { return *vocoder_; }
    // The x-vector encoder of Base checkpoints; nullptr for CustomVoice / VoiceDesign.
    const SpeakerEncoder* speaker_encoder() const { return speaker_encoder_.get(); }
    const TensorStore& store() const { return store_; }
    const std::filesystem::path& dir() const { return dir_; }
    Device device() const { return device_; }  // cuda when a GPU engine will be tried, else cpu
    const ModelOptions& options() const { return options_; }
    bool is_random() const { return random_; }
    std::string description() const;  // "DIR" or "random 0.6b weights (seed N)"

private:
    Model() = default;
    // Binds weights, loads the vocoder and picks the device once config_, tokenizer_ and store_ are set.
    void finish(const TensorStore& vocoder_store, const ModelOptions& options);
    std::filesystem::path dir_;
    ModelConfig config_;
    std::optional<Tokenizer> tokenizer_;
    TensorStore store_;
    ModelWeights weights_;
    std::unique_ptr<Vocoder> vocoder_;
    std::unique_ptr<SpeakerEncoder> speaker_encoder_;
    ModelOptions options_;  // as requested (device may be `automatic`)
    Device device_ = Device::cpu;
    bool random_ = false;
    std::string random_size_;
    uint64_t random_seed_ = 0;
};

struct SynthesisRequest {
    std::string text;
    std::string language = "auto";
    bool non_streaming_text = false;
    std::optional<SamplerSettings> talker;     // default: the checkpoint's generation_config.json
    std::optional<SamplerSettings> predictor;  // default: the checkpoint's subtalker_* settings
    uint64_t seed = 0;
    uint64_t rng_frame_offset = 0;             // first RNG counter: pieces of one document continue the stream
    int64_t max_frames = 0;                    // 0: default_frame_cap(text), bounded by max_new_tokens - 1
    std::optional<std::vector<float>> speaker_embedding;  // x-vector [talker n_embd]
    int64_t vocoder_chunk_frames = 1;          // frames handed to the vocoder at a time
    bool vocoder_ramp = false;                 // 1 frame first, then doubling up to vocoder_chunk_frames:
                                               // first audio after one frame, fewer, larger calls after it
    bool ignore_eos = false;                   // benchmarks: never stop early, run exactly the frame cap
    bool host_frame_loop = false;              // sample codebook 0 and form each talker input on the host even
                                               // when the engine has a device frame loop (comparisons)
    // Teacher forcing (parity): frames [n × num_code_groups] replace every sampled code; the talker and
    // predictor still run and report their logits / arg-max predictions through the observer.
    std::optional<std::vector<int32_t>> forced_codes;
};

enum class StopReason { eos, frame_cap, cancelled };
std::string_view stop_reason_name(StopReason reason);

struct StageTimes {
    double tokenize_s = 0, prefill_s = 0, talker_s = 0, predictor_s = 0, vocoder_s = 0, total_s = 0;
    double text_s = 0;  // text projection on the request's thread (the rows before the prefill + any wait)
    double first_audio_s = -1;  // from the call to the first decoded samples
    int64_t talker_steps = 0;
};

struct SynthesisResult {
    std::vector<int32_t> text_ids;   // the user's text tokens t_0 … t_{n-1}
    std::vector<int32_t> codes;      // [n_frames × num_code_groups], frame-major
    int64_t n_frames = 0;
    int64_t frame_cap = 0;
    std::vector<float> audio;        // 24 kHz mono, [-1, 1]
    StopReason stop = StopReason::eos;
    bool device_frame_loop = false;  // the frames ran in the backend's FrameLoopBackend, not the host loop
    StageTimes times;
    StageTimes first_audio_times;    // `times` as they stood when the first audio was delivered (total_s then)
};

// Optional hooks into a running synthesis (parity dumps, streaming output, cancellation).
class SynthesisObserver {
public:
    virtual ~SynthesisObserver() = default;
    // Raw codec_head logits before any processing; step 0 is the last prefill position. Only called when
    // wants_talker_logits() (the logits then come to the host every frame: no device frame loop).
    virtual void on_talker_logits(int64_t step, std::span<const float> logits) { (void)step, (void)logits; }
    virtual bool wants_talker_logits() const { return false; }
    virtual void on_frame(int64_t frame, std::span<const int32_t> codes) { (void)frame, (void)codes; }
    // Teacher forcing only: the predictor's arg-max for codebooks 1..G-1 (index 0 unused) of `frame`.
    virtual void on_predictor_argmax(int64_t frame, std::span<const int32_t> argmax) { (void)frame, (void)argmax; }
    virtual void on_audio(std::span<const float> samples) { (void)samples; }
    virtual bool should_stop() { return false; }
};

// The checkpoint's sampling defaults (generation_config.json) for codebook 0 and for codebooks 1..G-1.
SamplerSettings talker_sampler_defaults(const GenerationDefaults& generation);
SamplerSettings predictor_sampler_defaults(const GenerationDefaults& generation);

// The talker's logit constraints before sampling (spec §5.4): codec control ids (the top kTalkerControlIds) are
// suppressed except EOS, and EOS is banned for the first kEosBanSteps steps (min_new_tokens) or always (`ban_eos`).
// A device frame loop (FrameLoopBackend) applies the same rules from these definitions.
inline constexpr int64_t kTalkerControlIds = 1024, kEosBanSteps = 2;
inline bool talker_eos_banned(int64_t step, bool ban_eos) { return step < kEosBanSteps || ban_eos; }
void constrain_talker_logits(std::span<float> logits, int64_t step, const TalkerConfig& talker, bool ban_eos = false);

// The official prompt ids around user text: "<|im_start|>assistant\n" + text + "<|im_end|>\n<|im_start|>assistant\n".
std::vector<int32_t> wrap_prompt_ids(const Tokenizer& tokenizer, std::span<const int32_t> text_ids);

// Validates and normalizes user text: rejects invalid UTF-8 and text with nothing to say, turns control
// characters into spaces, trims surrounding whitespace (a leading newline would break the template).
// Text longer than kMaxTextBytes is refused (about 80 hours of speech; a bound on memory and run time).
std::string prepare_text(std::string_view raw);
inline constexpr size_t kMaxTextBytes = size_t(4) << 20;

class Session {
public:
    explicit Session(std::shared_ptr<const Model> model);
    SynthesisResult synthesize(const SynthesisRequest& request, SynthesisObserver* observer = nullptr);
    // Exercises every path a request can take (greedy and sampled talker and predictor, each vocoder chunk
    // shape in `chunk_frames`) so the first real request runs at steady-state speed.
    void warmup(std::span<const int64_t> chunk_frames = kWarmupChunkFrames);
    static constexpr int64_t kWarmupChunkFrames[] = {1, 2, 4, 8, 16, 32};  // qtts speak's ramp
    const Model& model() const { return *model_; }
    std::string backend_name() const;

private:
    std::shared_ptr<const Model> model_;
    std::unique_ptr<TalkerBackend> talker_;
    std::unique_ptr<PredictorBackend> predictor_;
    std::unique_ptr<VocoderBackend> vocoder_;  // GPU one from the factory, else the CPU VocoderStream
    std::unique_ptr<FrameLoopBackend> frame_loop_;  // GPU engines: the frame loop on the device (uses talker_ etc.)
    TextRowCache template_text_;               // the prompt template's text rows, projected once
    std::unique_ptr<HostWorker> host_worker_;  // GPU engines: the text projection while the GPU works
};

}  // namespace qtts
