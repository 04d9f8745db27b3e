// `qtts speak`: text → 24 kHz mono audio in a WAV file or streamed to stdout (`-o -`), plus optional codes
// JSON. No model logic here: options become a DocumentRequest, audio flows from the engine's observer
// into an AudioWriter as it is produced, and progress/warnings go to stderr.
#include <unistd.h>

#include <chrono>
#include <memory>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "cli/common.h"
#include "core/atomic_file.h"
#include "core/audio_writer.h"
#include "core/document.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/speaker_encoder.h"
#include "core/utf8.h"

namespace qtts::cli {

namespace {

struct SpeakOptions {
    std::string text, file, output = "out.wav", language = "auto", codes_out, sample_format = "pcm16";
    uint64_t seed = 0;
    int64_t max_frames = 0, stream_chunk_frames = 32, pause_ms = 250;
    bool greedy = false, non_streaming_text = false, raw = false, no_split = false, quiet = false;
    // Unset values fall back to the checkpoint's generation_config.json.
    std::optional<float> temperature, top_p, repetition_penalty, sub_temperature, sub_top_p, sub_repetition_penalty;
    std::optional<int64_t> top_k, sub_top_k;
    std::string speaker_ref, speaker_embedding, speaker_embedding_out;  // voice of a Base model (x-vector)
};

// At most `n` code points of `text`, with "…" when cut: piece texts in one-line messages.
std::string excerpt(std::string_view text, size_t n) {
    const std::vector<char32_t> cps = utf8_code_points(text);
    if (cps.size() <= n) return std::string(text);
    return utf8_encode(std::span(cps).first(n)) + "\u2026";
}

// Hands audio to the writer as it arrives, stops on SIGINT/SIGTERM or a closed output pipe, warns about
// pieces cut by the frame cap, and draws a progress line when stderr is a terminal.
class SpeakObserver final : public DocumentObserver {
public:
    SpeakObserver(AudioWriter& writer, bool progress, int sample_rate)
        : writer_(writer), progress_(progress), sample_rate_(sample_rate) {}

    void on_audio(std::span<const float> samples) override {
        if (reader_gone_) return;
        reader_gone_ = !writer_.write(samples);
        samples_ += int64_t(samples.size());
    }
    bool should_stop() override { return reader_gone_ || g_signal.load() != 0; }
    void on_piece_start(size_t index, size_t count, std::string_view) override {
        piece_ = index;
        pieces_ = count;
        draw(true);
    }
    void on_frame(int64_t, std::span<const int32_t>) override { draw(false); }
    void on_piece_end(size_t index, const PieceSummary& piece) override {
        if (piece.stop != StopReason::frame_cap || ++capped_pieces_ > kCapWarnings) return;
        clear();
        fmt::print(stderr, "warning: piece {} stopped at the frame cap ({} frames) before the model ended it: "
                           "\"{}\"; raise --max-frames if its audio is cut short\n",
                   index + 1, piece.frame_cap, excerpt(piece.text, 60));
    }
    // The pieces cut by the frame cap beyond the ones warned about one by one.
    void warn_remaining_capped() const {
        if (capped_pieces_ > kCapWarnings)
            fmt::print(stderr, "warning: {} more pieces stopped at the frame cap\n", capped_pieces_ - kCapWarnings);
    }
    void clear() {
        if (drawn_) fmt::print(stderr, "\r\033[K");
        drawn_ = false;
    }
    bool reader_gone() const { return reader_gone_; }
    double audio_s() const { return double(samples_) / sample_rate_; }

private:
    void draw(bool force) {
        if (!progress_) return;
        const auto now = std::chrono::steady_clock::now();
        if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
        last_draw_ = now;
        constexpr int kWidth = 24;
        const int filled = pieces_ ? int(kWidth * piece_ / pieces_) : 0;
        fmt::print(stderr, "\r\033[K[{}{}] piece {}/{}, {:.1f} s of audio", std::string(size_t(filled), '#'),
                   std::string(size_t(kWidth - filled), '.'), piece_ + 1, pieces_, audio_s());
        drawn_ = true;
    }
    AudioWriter& writer_;
    bool progress_;
    int sample_rate_;
    static constexpr size_t kCapWarnings = 3;
    bool reader_gone_ = false, drawn_ = false;
    int64_t samples_ = 0;
    size_t capped_pieces_ = 0;
    size_t piece_ = 0, pieces_ = 0;
    std::chrono::steady_clock::time_point last_draw_{};
};

// One frame per line: [[16 ints],\n [16 ints], ...].
void write_codes_json(const std::string& path, const std::vector<int32_t>& codes, int64_t groups) {
    std::string text = "[";
    for (size_t f = 0; f < codes.size() / size_t(groups); ++f)
        text += fmt::format("{}[{}]", f ? ",\n " : "",
                            fmt::join(codes.begin() + f * groups, codes.begin() + (f + 1) * groups, ", "));
    write_file_atomically(path, text + "]\n");
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
    const bool to_stdout = o.output == "-";
    if (to_stdout && isatty(STDOUT_FILENO))
        throw InputError("refusing to write audio to a terminal", "pipe it into a player (| aplay) or use -o FILE");
    const auto model_dir = resolve_model_dir(common);
    const Device device = parse_device(common.device);
    auto model = Model::load(model_dir, {.device = device});
    if (log_enabled(common, "debug")) fmt::print(stderr, "qtts: {}\n", model->config().summary());
    Session session(model);

    const GenerationDefaults& g = model->config().generation;
    DocumentRequest doc;
    SynthesisRequest& req = doc.piece;
    req.text = text;
    req.language = o.language;
    req.non_streaming_text = o.non_streaming_text;
    req.seed = o.seed;
    req.max_frames = o.max_frames;
    req.vocoder_chunk_frames = o.stream_chunk_frames;
    req.vocoder_ramp = true;
    req.talker = merge(talker_sampler_defaults(g), o.greedy, o.temperature, o.top_k, o.top_p, o.repetition_penalty);
    req.predictor = merge(predictor_sampler_defaults(g), o.greedy, o.sub_temperature, o.sub_top_k, o.sub_top_p,
                          o.sub_repetition_penalty);
    req.speaker_embedding = resolve_speaker_embedding(*model, {o.speaker_ref, o.speaker_embedding, o.speaker_embedding_out});
    doc.split = !o.no_split;
    doc.pause_s = double(o.pause_ms) / 1000.0;

    const int rate = int(model->config().vocoder.sample_rate);
    const AudioContainer container = o.raw ? AudioContainer::raw : AudioContainer::wav;
    const auto writer = to_stdout ? open_audio_stream(STDOUT_FILENO, rate, format, container)
                                  : open_audio_file(o.output, rate, format, container);
    const bool progress = !o.quiet && isatty(STDERR_FILENO) && log_enabled(common, "info");
    SpeakObserver observer(*writer, progress, rate);
    const DocumentResult r = synthesize_document(session, doc, &observer);
    observer.clear();
    observer.warn_remaining_capped();
    if (observer.reader_gone()) {  // the player went away: a normal way for a stream to end
        if (log_enabled(common, "info"))
            fmt::print(stderr, "qtts: the output pipe closed after {:.2f} s of audio; stopped\n", observer.audio_s());
        return;
    }
    if (r.cancelled)
        throw Interrupted(to_stdout ? fmt::format("interrupted after {:.2f} s of audio", observer.audio_s())
                                    : std::string("interrupted; nothing was written"));
    writer->finish();
    if (!o.codes_out.empty()) write_codes_json(o.codes_out, r.codes, model->config().talker.num_code_groups);
    const double audio_s = observer.audio_s();
    if (log_enabled(common, "info") && !o.quiet) {
        const std::string stop = r.pieces.size() == 1 ? fmt::format("stop: {}", stop_reason_name(r.pieces[0].stop))
                                                      : fmt::format("{} pieces", r.pieces.size());
        fmt::print(stderr, "qtts: {} frames, {:.2f} s audio, {:.2f} s wall, RTF {:.3f}, first audio {:.0f} ms, {} ({}, {})\n",
                   r.n_frames, audio_s, r.total_s, audio_s > 0 ? r.total_s / audio_s : 0.0, r.first_audio_s * 1e3,
                   stop, session.backend_name(), to_stdout ? "stdout" : o.output);
    }
}

}  // namespace

void register_speak(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<SpeakOptions>();
    CLI::App* sub = app.add_subcommand("speak", "Synthesize speech from text into a WAV file");
    sub->add_option("text", o->text, "Text to speak (omit, or '-', to read -f FILE or stdin)");
    sub->add_option("-f,--file", o->file, "Read the text from FILE ('-' = stdin)");
    sub->add_option("-o,--output", o->output, "Output path (24 kHz mono WAV); '-' streams to stdout as it is generated")
        ->capture_default_str();
    sub->add_flag("--raw", o->raw, "Headerless PCM (s16le, or f32le with --sample-format f32) instead of WAV");
    sub->add_option("--stream-chunk-frames", o->stream_chunk_frames,
                    "Most frames (80 ms each) decoded to audio at once: the first audio leaves after one frame, "
                    "then the calls double up to N (1 = every frame on its own)")
        ->check(CLI::Range(int64_t(1), int64_t(1000)))
        ->capture_default_str();
    sub->add_option("--pause-ms", o->pause_ms, "Silence between the sentence pieces of a long text")
        ->check(CLI::Range(int64_t(0), int64_t(10000)))
        ->capture_default_str();
    sub->add_flag("--no-split", o->no_split, "Speak the whole text as one piece (as the official code does)");
    sub->add_flag("-q,--quiet", o->quiet, "No progress line and no summary on stderr (warnings and errors stay)");
    sub->add_option("--language", o->language,
                    "auto, chinese, english, french, german, italian, japanese, korean, portuguese, russian, spanish")
        ->capture_default_str();
    sub->add_option("--seed", o->seed, "Random seed for sampling")->capture_default_str();
    sub->add_flag("--greedy", o->greedy, "Arg-max decoding for talker and code predictor (deterministic)");
    sub->add_option("--max-frames", o->max_frames,
                    "Stop a piece after this many 80 ms frames (0 = automatic cap from its text length)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    sub->add_flag("--non-streaming-text", o->non_streaming_text,
                  "Put the whole text in the prompt instead of feeding it one token per frame");
    sub->add_option("--sample-format", o->sample_format, "WAV sample format: pcm16 or f32")
        ->check(CLI::IsMember({"pcm16", "f32"}))
        ->capture_default_str();
    sub->add_option("--codes-out", o->codes_out, "Also write the generated codes as JSON [[16 ints], ...]");
    auto* voice = sub->add_option_group("Voice", "A Base model speaks in the voice of a reference recording (x-vector)");
    voice->add_option("--speaker-ref", o->speaker_ref,
                      "Reference recording: any format libsndfile reads, 1-60 s (3-10 s of clear speech is best)");
    voice->add_option("--speaker-embedding", o->speaker_embedding,
                      "Voice from an x-vector file written by --speaker-embedding-out (no recording needed)");
    voice->add_option("--speaker-embedding-out", o->speaker_embedding_out,
                      "Also save the reference's x-vector to this JSON file");
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
