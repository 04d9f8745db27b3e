// `qtts speak`: text → 24 kHz mono WAV, plus optional codes JSON. No model logic here: options are
// turned into a SynthesisRequest and handed to a Session.
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/wav.h"

namespace qtts::cli {

namespace {

struct SpeakOptions {
    std::string text, file, output = "out.wav", language = "auto", codes_out, sample_format = "pcm16";
    uint64_t seed = 0;
    int64_t max_frames = 0;
    bool greedy = false, non_streaming_text = false;
    // Unset values fall back to the checkpoint's generation_config.json.
    std::optional<float> temperature, top_p, repetition_penalty, sub_temperature, sub_top_p, sub_repetition_penalty;
    std::optional<int64_t> top_k, sub_top_k;
};

// Stops the engine between frames once SIGINT/SIGTERM arrived.
class SignalObserver final : public SynthesisObserver {
public:
    bool should_stop() override { return g_signal.load() != 0; }
};

// One frame per line: [[16 ints],\n [16 ints], ...].
void write_codes_json(const std::string& path, const SynthesisResult& r, int64_t groups) {
    std::string text = "[";
    for (int64_t f = 0; f < r.n_frames; ++f)
        text += fmt::format("{}[{}]", f ? ",\n " : "",
                            fmt::join(r.codes.begin() + f * groups, r.codes.begin() + (f + 1) * groups, ", "));
    write_text_file(path, text + "]\n");
}

SamplerSettings merge(SamplerSettings s, bool greedy, const std::optional<float>& t, const std::optional<int64_t>& k,
                      const std::optional<float>& p, const std::optional<float>& penalty) {
    if (greedy) s.do_sample = false;
    if (t) {
        if (*t <= 0) throw InputError("temperature must be positive", "use --greedy for deterministic output");
        s.temperature = *t;
    }
    if (k) s.top_k = *k;
    if (p) s.top_p = *p;
    if (penalty) s.repetition_penalty = *penalty;
    return s;
}

void run_speak(const CommonOptions& common, const SpeakOptions& o) {
    const std::string text = read_text_input(o.text, o.file);
    const SampleFormat format = parse_sample_format(o.sample_format);
    const auto model_dir = resolve_model_dir(common);
    const Device device = parse_device(common.device);
    auto model = Model::load(model_dir, {.device = device});
    if (log_enabled(common, "debug")) fmt::print(stderr, "qtts: {}\n", model->config().summary());
    Session session(model);

    const GenerationDefaults& g = model->config().generation;
    SynthesisRequest req;
    req.text = text;
    req.language = o.language;
    req.non_streaming_text = o.non_streaming_text;
    req.seed = o.seed;
    req.max_frames = o.max_frames;
    req.talker = merge(talker_sampler_defaults(g), o.greedy, o.temperature, o.top_k, o.top_p, o.repetition_penalty);
    req.predictor = merge(predictor_sampler_defaults(g), o.greedy, o.sub_temperature, o.sub_top_k, o.sub_top_p,
                          o.sub_repetition_penalty);
    SignalObserver observer;
    const SynthesisResult r = session.synthesize(req, &observer);
    if (r.stop == StopReason::cancelled) throw Interrupted("interrupted; nothing was written");

    write_wav(o.output, r.audio, int(model->config().vocoder.sample_rate), format);
    if (!o.codes_out.empty()) write_codes_json(o.codes_out, r, model->config().talker.num_code_groups);
    const double audio_s = double(r.audio.size()) / double(model->config().vocoder.sample_rate);
    if (r.stop == StopReason::frame_cap)
        fmt::print(stderr, "warning: stopped at the frame cap ({} frames) before the model ended the speech; "
                           "raise --max-frames if the audio is cut short\n", r.frame_cap);
    if (log_enabled(common, "info"))
        fmt::print(stderr, "qtts: {} frames, {:.2f} s audio, {:.2f} s wall, RTF {:.3f}, stop: {} ({}, {})\n",
                   r.n_frames, audio_s, r.times.total_s, audio_s > 0 ? r.times.total_s / audio_s : 0.0,
                   stop_reason_name(r.stop), session.backend_name(), o.output);
}

}  // namespace

void register_speak(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<SpeakOptions>();
    CLI::App* sub = app.add_subcommand("speak", "Synthesize speech from text into a WAV file");
    sub->add_option("text", o->text, "Text to speak (omit, or '-', to read -f FILE or stdin)");
    sub->add_option("-f,--file", o->file, "Read the text from FILE ('-' = stdin)");
    sub->add_option("-o,--output", o->output, "Output WAV path (24 kHz mono)")->capture_default_str();
    sub->add_option("--language", o->language,
                    "auto, chinese, english, french, german, italian, japanese, korean, portuguese, russian, spanish")
        ->capture_default_str();
    sub->add_option("--seed", o->seed, "Random seed for sampling")->capture_default_str();
    sub->add_flag("--greedy", o->greedy, "Arg-max decoding for talker and code predictor (deterministic)");
    sub->add_option("--max-frames", o->max_frames,
                    "Stop after this many 80 ms frames (0 = automatic cap from the text length)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    sub->add_flag("--non-streaming-text", o->non_streaming_text,
                  "Put the whole text in the prompt instead of feeding it one token per frame");
    sub->add_option("--sample-format", o->sample_format, "WAV sample format: pcm16 or f32")
        ->check(CLI::IsMember({"pcm16", "f32"}))
        ->capture_default_str();
    sub->add_option("--codes-out", o->codes_out, "Also write the generated codes as JSON [[16 ints], ...]");
    auto* talker = sub->add_option_group("Talker sampling", "Defaults come from the model's generation_config.json");
    talker->add_option("--temperature", o->temperature, "Sampling temperature (default 0.9)");
    talker->add_option("--top-k", o->top_k, "Top-k (0 = off; default 50)")->check(CLI::NonNegativeNumber);
    talker->add_option("--top-p", o->top_p, "Top-p (1 = off; default 1.0)")->check(CLI::Range(0.0, 1.0));
    talker->add_option("--repetition-penalty", o->repetition_penalty, "Penalty on repeated codebook-0 codes (default 1.05)")
        ->check(CLI::PositiveNumber);
    auto* sub_group = sub->add_option_group("Code predictor sampling", "Codebooks 1-15");
    sub_group->add_option("--sub-temperature", o->sub_temperature, "Sampling temperature (default 0.9)");
    sub_group->add_option("--sub-top-k", o->sub_top_k, "Top-k (default 50)")->check(CLI::NonNegativeNumber);
    sub_group->add_option("--sub-top-p", o->sub_top_p, "Top-p (default 1.0)")->check(CLI::Range(0.0, 1.0));
    sub_group->add_option("--sub-repetition-penalty", o->sub_repetition_penalty,
                          "Penalty on repeated codes within a frame (default 1.0 = off)")
        ->check(CLI::PositiveNumber);
    sub->callback([&common, o] { run_speak(common, *o); });
}

}  // namespace qtts::cli
