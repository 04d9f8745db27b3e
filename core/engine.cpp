// Generation protocol (spec §5): prompt → prefill → per frame {sample codebook 0, stop on EOS or cap,
// predict codebooks 1..G-1, vocode, feed the next talker input}. Backend-agnostic.
#include "core/engine.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <system_error>

#include <unistd.h>

#include "core/error.h"
#include "core/prompt.h"
#include "core/random_model.h"
#include "core/utf8.h"

namespace qtts {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void warn(const ModelOptions& options, const std::string& message) {
    if (options.warn)
        options.warn(message);
    else
        fmt::print(stderr, "warning: {}\n", message);
}

void warn_unused_tensors(const TensorStore& store, std::initializer_list<std::string_view> known_prefixes,
                         const ModelOptions& options) {
    std::vector<std::string> unknown;
    for (std::string& name : store.unused())
        if (std::none_of(known_prefixes.begin(), known_prefixes.end(), [&](auto p) { return name.starts_with(p); }))
            unknown.push_back(std::move(name));
    if (unknown.empty()) return;
    std::string names;
    for (size_t i = 0; i < unknown.size() && i < 8; ++i) names += fmt::format("{}'{}'", i ? ", " : "", unknown[i]);
    if (unknown.size() > 8) names += fmt::format(" and {} more", unknown.size() - 8);
    warn(options, fmt::format("{}: {} unknown tensor{} ignored: {}", store.description(), unknown.size(),
                              unknown.size() == 1 ? "" : "s", names));
}

}  // namespace

SamplerSettings talker_sampler_defaults(const GenerationDefaults& g) {
    return {g.do_sample, float(g.temperature), g.top_k, float(g.top_p), float(g.repetition_penalty)};
}

SamplerSettings predictor_sampler_defaults(const GenerationDefaults& g) {
    return {g.subtalker_do_sample, float(g.subtalker_temperature), g.subtalker_top_k, float(g.subtalker_top_p), 1.0f};
}

void constrain_talker_logits(std::span<float> logits, int64_t step, const TalkerConfig& t, bool ban_eos) {
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();
    const int64_t vocab = int64_t(logits.size()), eos = t.codec_eos_id;
    for (int64_t id = vocab - kTalkerControlIds; id < vocab; ++id)
        if (id != eos) logits[size_t(id)] = kNegInf;
    if (talker_eos_banned(step, ban_eos)) logits[size_t(eos)] = kNegInf;
}

std::vector<int32_t> wrap_prompt_ids(const Tokenizer& tokenizer, std::span<const int32_t> text_ids) {
    std::vector<int32_t> ids = tokenizer.encode("<|im_start|>assistant\n");
    ids.insert(ids.end(), text_ids.begin(), text_ids.end());
    for (int32_t id : tokenizer.encode("<|im_end|>\n<|im_start|>assistant\n")) ids.push_back(id);
    return ids;
}

Device parse_device(std::string_view name) {
    if (name == "cpu") return Device::cpu;
    if (name == "cuda") return Device::cuda;
    if (name == "auto") return Device::automatic;
    throw InputError(fmt::format("unknown device '{}'", name), "use --device cpu, cuda or auto");
}

std::string_view stop_reason_name(StopReason r) {
    switch (r) {
        case StopReason::eos: return "eos";
        case StopReason::frame_cap: return "frame-cap";
        case StopReason::cancelled: return "cancelled";
    }
    return "?";
}

namespace {
BackendFactory& gpu_factory_slot() {
    static BackendFactory factory;
    return factory;
}
}  // namespace

void register_gpu_backend(BackendFactory factory) { gpu_factory_slot() = std::move(factory); }
const BackendFactory* gpu_backend() { return gpu_factory_slot() ? &gpu_factory_slot() : nullptr; }

std::shared_ptr<const Model> Model::load(const std::filesystem::path& dir, const ModelOptions& options) {
    std::shared_ptr<Model> m(new Model());
    m->dir_ = dir;
    m->config_ = load_model_config(dir);
    m->tokenizer_.emplace(Tokenizer::from_directory(dir));
    m->store_ = TensorStore::open_in(dir, "model");
    const TensorStore vocoder_store = TensorStore::open_in(dir / "speech_tokenizer", "model");
    m->finish(vocoder_store, options);
    // Tensors that nothing read: a checkpoint of another variant or a renamed tensor. Warn once per file and
    // go on. Known families that synthesis does not read (the speaker encoder; the speech tokenizer's encoder
    // and the quantizer input projections it uses) are not reported.
    warn_unused_tensors(m->store_, {"speaker_encoder."}, options);
    warn_unused_tensors(vocoder_store,
                        {"encoder.", "decoder.quantizer.rvq_first.input_proj.", "decoder.quantizer.rvq_rest.input_proj."},
                        options);
    return m;
}

std::shared_ptr<const Model> Model::load_random(std::string_view size, uint64_t seed, const ModelOptions& options) {
    std::shared_ptr<Model> m(new Model());
    m->random_ = true;
    m->random_size_ = size;
    m->random_seed_ = seed;
    const std::string source = fmt::format("<random {} config>", size);
    m->config_ = parse_model_config(random_model_config_json(size), source);
    m->config_.vocoder = parse_vocoder_config(random_vocoder_config_json(size), source);
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("qtts-random-tokenizer-{}", ::getpid());
    std::filesystem::create_directories(dir);
    write_byte_level_tokenizer(dir);
    m->tokenizer_.emplace(Tokenizer::from_vocab_merges(dir / "vocab.json", dir / "merges.txt", {}));
    std::filesystem::remove_all(dir);
    m->store_ = make_random_store(seed, m->config_.talker.text_vocab_size, m->config_.talker.text_hidden_size,
                                 RandomValues::bf16);
    m->finish(make_random_store(seed + 1, 0, 0, RandomValues::f32), options);
    return m;
}

void Model::finish(const TensorStore& vocoder_store, const ModelOptions& options) {
    weights_ = ModelWeights::load(store_, config_);
    vocoder_ = std::make_unique<Vocoder>(Vocoder::load(vocoder_store, config_.vocoder));
    if (config_.speaker_encoder)
        speaker_encoder_ = std::make_unique<SpeakerEncoder>(SpeakerEncoder::load(store_, *config_.speaker_encoder));
    options_ = options;
    device_ = Device::cpu;
    if (options.device != Device::cpu) {
        if (gpu_backend()) {
            device_ = Device::cuda;
        } else if (options.device == Device::cuda) {
            throw GpuError("no CUDA engine available (no CUDA GPU found, or this build has no CUDA)",
                           "use --device cpu, or --device auto to fall back to the CPU");
        }
    }
}

std::string Model::description() const {
    return random_ ? fmt::format("random {} weights (seed {})", random_size_, random_seed_) : dir_.string();
}

std::string prepare_text(std::string_view raw) {
    if (raw.size() > kMaxTextBytes)
        throw InputError(fmt::format("the text is {:.1f} MiB; qtts speaks at most {} MiB per run",
                                     double(raw.size()) / (1 << 20), kMaxTextBytes >> 20),
                         "split the text into several runs");
    if (!is_valid_utf8(raw))
        throw InputError("the text is not valid UTF-8", "convert the input to UTF-8 (e.g. with iconv)");
    std::string text;
    text.reserve(raw.size());
    for (char c : raw) {
        const auto u = static_cast<unsigned char>(c);
        text.push_back((u < 0x20 && c != '\n' && c != '\t') || u == 0x7F ? ' ' : c);
    }
    // Trim Unicode white space on both ends: leading white space that holds a newline would change how the
    // official template's "assistant\n" tokenizes and shift its fixed [3:-5] slice.
    const std::vector<char32_t> cps = utf8_code_points(text);
    size_t b = 0, e = cps.size();
    while (b < e && is_unicode_space(cps[b])) ++b;
    while (e > b && is_unicode_space(cps[e - 1])) --e;
    if (b == e) throw InputError("the text is empty", "give the text to speak as an argument, with -f FILE, or on stdin");
    return utf8_encode(std::span(cps).subspan(b, e - b));
}

Session::Session(std::shared_ptr<const Model> model) : model_(std::move(model)) {
    if (model_->device() == Device::cuda) {
        try {
            Backends b = (*gpu_backend())(model_->config(), model_->weights(), model_->vocoder());
            talker_ = std::move(b.talker);
            predictor_ = std::move(b.predictor);
            vocoder_ = std::move(b.vocoder);
            frame_loop_ = std::move(b.frame_loop);
        } catch (const GpuError& e) {
            // --device auto promises the CPU engine when the GPU one cannot run (out of memory, unsupported GPU).
            if (model_->options().device != Device::automatic) throw;
            warn(model_->options(), fmt::format("the CUDA engine is unavailable ({}); using the CPU engine", e.what()));
            frame_loop_.reset();
            talker_.reset();
            predictor_.reset();
            vocoder_.reset();
        }
    }
    if (!talker_) {
        talker_ = make_cpu_talker(model_->weights());
        predictor_ = make_cpu_predictor(model_->weights());
    }
    if (!vocoder_) vocoder_ = std::make_unique<VocoderStream>(model_->vocoder());
    template_text_ = TextRowCache(model_->weights(), model_->store(), prompt_template_text_ids(model_->config()));
    // A GPU engine leaves the host's cores idle; the CPU engine needs every core itself.
    if (talker_->name() != "cpu") try {
            host_worker_ = std::make_unique<HostWorker>();
        } catch (const std::system_error&) {  // no thread to be had: the rows come when first needed instead
        }
}

std::string Session::backend_name() const { return talker_->name(); }

void Session::warmup(std::span<const int64_t> chunk_frames) {
    SynthesisRequest req;
    req.text = "Warm up every path once.";
    req.ignore_eos = true;
    for (bool sampled : {false, true}) {
        req.talker = SamplerSettings{.do_sample = sampled, .repetition_penalty = 1.05f};
        req.predictor = SamplerSettings{.do_sample = sampled};
        for (int64_t chunk : chunk_frames) {
            req.vocoder_chunk_frames = chunk;
            req.max_frames = std::max<int64_t>(2, chunk);
            synthesize(req);
        }
    }
}

SynthesisResult Session::synthesize(const SynthesisRequest& req, SynthesisObserver* observer) {
    const auto t_start = std::chrono::steady_clock::now();
    const ModelConfig& c = model_->config();
    const int64_t E = c.talker.stack.n_embd, G = c.talker.num_code_groups, vocab = c.talker.stack.vocab_size;
    const int64_t eos = c.talker.codec_eos_id;
    SynthesisResult res;

    // Text: user text is tokenized on its own with added tokens NOT matched, so "<|im_end|>" typed by a
    // user is spoken as characters, never obeyed; this equals the official [3:-5] slice of the wrapped
    // prompt for every text without literal special tokens (prepare_text removes the leading newline case).
    const std::string text = prepare_text(req.text);
    const auto language = language_codec_id(c, req.language);
    res.text_ids = model_->tokenizer().encode(text, Tokenizer::Specials::as_text);
    if (res.text_ids.empty()) throw InputError("the text has no tokens", "give some text to speak");
    res.times.tokenize_s = seconds_since(t_start);
    if (req.speaker_embedding && int64_t(req.speaker_embedding->size()) != E)
        throw InputError(fmt::format("speaker embedding has {} values; this model needs {}",
                                     req.speaker_embedding->size(), E),
                         "compute it with the same model size");

    const int64_t cap_limit = c.generation.max_new_tokens - 1;  // HF: N codebook-0 samples → ≤ N-1 frames
    res.frame_cap = req.max_frames > 0 ? req.max_frames : std::min(default_frame_cap(text), cap_limit);
    const std::vector<int32_t>* forced = req.forced_codes ? &*req.forced_codes : nullptr;
    if (forced) {
        if (forced->empty() || forced->size() % size_t(G) != 0)
            throw InputError(fmt::format("forced codes hold {} values; expected a positive multiple of {}",
                                         forced->size(), G));
        for (size_t i = 0; i < forced->size(); ++i) {
            const int64_t limit = i % size_t(G) == 0 ? vocab : c.predictor.stack.vocab_size;
            if ((*forced)[i] < 0 || (*forced)[i] >= limit)
                throw InputError(fmt::format("forced code {} of frame {} is {}, outside [0, {})", i % size_t(G),
                                             i / size_t(G), (*forced)[i], limit));
        }
        res.frame_cap = int64_t(forced->size()) / G;
    }
    const SamplerSettings talker_settings = req.talker.value_or(talker_sampler_defaults(c.generation));
    const SamplerSettings predictor_settings = req.predictor.value_or(predictor_sampler_defaults(c.generation));
    const CounterRng rng(req.seed);

    // Prefill.
    const PromptPlan plan = build_prompt_plan(
        c, res.text_ids, {.language_codec_id = language, .has_speaker = req.speaker_embedding.has_value(),
                          .non_streaming_text = req.non_streaming_text});
    const int64_t L = int64_t(plan.prefill.size()), T = int64_t(plan.trailing_text.size());
    // Text vectors of the prefill positions (rows 0..L-1, which become the prefill input), the trailing text
    // (rows L..L+T-1) and the pad (row L+T). Step 0's row comes with the prefill rows; on a GPU engine the
    // rest is projected on the session's host worker while the GPU works, on the CPU engine (which needs every
    // core itself) at step 1.
    std::vector<int64_t> text_ids;
    for (const PrefillPosition& pos : plan.prefill) text_ids.push_back(pos.text_id);
    text_ids.insert(text_ids.end(), plan.trailing_text.begin(), plan.trailing_text.end());
    text_ids.push_back(c.tts_pad_token_id);
    TextTrack text_track(model_->weights(), model_->store(), std::move(text_ids), L + 1,
                         host_worker_ ? TextTrack::Rest::background : TextTrack::Rest::on_first_use, &template_text_,
                         host_worker_.get());
    std::vector<float> prefill_in(size_t(L * E));
    for (int64_t i = 0; i < L; ++i) {
        const PrefillPosition& pos = plan.prefill[size_t(i)];
        float* row = &prefill_in[size_t(i * E)];
        std::copy_n(text_track.row(i), E, row);
        const float* codec = pos.codec_id >= 0             ? model_->weights().codebook_row(0, pos.codec_id)
                             : pos.codec_id == kSpeakerVector ? req.speaker_embedding->data()
                                                              : nullptr;
        if (codec)
            for (int64_t d = 0; d < E; ++d) row[d] += codec[d];
    }

    auto t0 = std::chrono::steady_clock::now();
    talker_->prefill(prefill_in, L);
    res.times.prefill_s = seconds_since(t0);

    VocoderBackend& vocoder = *vocoder_;
    vocoder.reset();
    std::vector<int32_t> history, frame(static_cast<size_t>(G)), predicted(static_cast<size_t>(G)), pending;
    if (req.vocoder_chunk_frames < 1)
        throw InputError(fmt::format("vocoder chunk of {} frames; it must be at least 1", req.vocoder_chunk_frames));
    int64_t chunk_frames = req.vocoder_ramp ? 1 : req.vocoder_chunk_frames;
    std::vector<float> logits(static_cast<size_t>(vocab)), next(static_cast<size_t>(E)), pcm;
    const auto flush_vocoder = [&]() {
        if (pending.empty()) return;
        const auto tv = std::chrono::steady_clock::now();
        pcm.clear();
        vocoder.push(pending, pcm);
        pending.clear();
        res.times.vocoder_s += seconds_since(tv);
        if (res.times.first_audio_s < 0) {
            res.times.first_audio_s = seconds_since(t_start);
            res.first_audio_times = res.times;
            res.first_audio_times.text_s = text_track.wait_s();
            res.first_audio_times.total_s = res.times.first_audio_s;
        }
        res.audio.insert(res.audio.end(), pcm.begin(), pcm.end());
        if (observer) observer->on_audio(pcm);
    };

    // Takes frame g's codes: record, stream to the vocoder in chunks. False when the frame cap is reached.
    const auto take_frame = [&](int64_t g, std::span<const int32_t> codes) {
        res.codes.insert(res.codes.end(), codes.begin(), codes.end());
        pending.insert(pending.end(), codes.begin(), codes.end());
        ++res.n_frames;
        if (observer) observer->on_frame(g, codes);
        if (int64_t(pending.size()) >= chunk_frames * G) {
            flush_vocoder();
            if (req.vocoder_ramp) chunk_frames = std::min(chunk_frames * 2, req.vocoder_chunk_frames);
        }
        if (res.n_frames < res.frame_cap) return true;
        res.stop = StopReason::frame_cap;
        return false;
    };

    if (frame_loop_ && !forced && !req.host_frame_loop && !(observer && observer->wants_talker_logits())) {
        // The device runs the frames of one vocoder chunk back to back; the host collects their codes once.
        FrameLoopBackend& loop = *frame_loop_;
        res.device_frame_loop = true;
        loop.begin({.talker = talker_settings, .predictor = predictor_settings, .seed = req.seed,
                    .frame_offset = req.rng_frame_offset, .ban_eos = req.ignore_eos, .text_rows = L + T + 1});
        struct Drain {  // an exception mid-batch leaves no frame running
            FrameLoopBackend& loop;
            ~Drain() {
                try {
                    loop.finish();
                } catch (const std::exception&) {  // already unwinding from the first error
                }
            }
        } drain{loop};
        int64_t uploaded = L;  // text rows [L, uploaded) are on the device
        std::vector<int32_t> codes;
        // Polled while each batch runs, so a cancel lands within about one frame.
        std::function<bool()> should_cancel;
        if (observer) should_cancel = [observer] { return observer->should_stop(); };
        for (int64_t first = 0; first < res.frame_cap;) {
            if (observer && observer->should_stop()) {
                res.stop = StopReason::cancelled;
                break;
            }
            const int64_t n = std::min(chunk_frames - int64_t(pending.size()) / G, res.frame_cap - first);
            // Frame g's next input needs text row L + min(g, T) when a frame g + 1 follows.
            const int64_t last_row = L + std::min(first + n - 1, T);
            if (last_row >= uploaded) {
                for (int64_t r = uploaded; r <= last_row; ++r) text_track.row(r);  // waits; rethrows a batch's error
                loop.put_text_rows(uploaded, {text_track.row(uploaded), size_t((last_row + 1 - uploaded) * E)});
                uploaded = last_row + 1;
            }
            for (int64_t g = first; g < first + n; ++g)
                loop.enqueue_frame(g, g + 1 < res.frame_cap ? L + std::min(g, T) : -1);
            codes.resize(size_t(n * G));
            const FrameLoopBackend::Times t = loop.collect(first, n, codes, should_cancel);
            res.times.talker_s += t.talker_s;
            res.times.predictor_s += t.predictor_s;
            res.times.talker_steps += t.talker_steps;
            bool more = true;
            for (int64_t i = 0; i < n && more; ++i) {
                const std::span<const int32_t> frame_codes(codes.data() + i * G, size_t(G));
                if (frame_codes[0] == eos || frame_codes[0] < 0) {  // EOS, or the frames after a cancel
                    res.stop = frame_codes[0] == eos ? StopReason::eos : StopReason::cancelled;
                    more = false;
                } else {
                    more = take_frame(first + i, frame_codes);
                }
            }
            if (!more) break;
            first += n;
        }
        loop.finish();
    } else {
        for (int64_t g = 0;; ++g) {
            if (observer && observer->should_stop()) {
                res.stop = StopReason::cancelled;
                break;
            }
            // Codebook 0 (spec §5.5): penalty → EOS ban (first 2) → suppress control ids → sample.
            const auto raw = talker_->logits();
            std::copy(raw.begin(), raw.end(), logits.begin());
            if (observer && observer->wants_talker_logits()) observer->on_talker_logits(g, logits);
            apply_repetition_penalty(logits, history, talker_settings.repetition_penalty);
            constrain_talker_logits(logits, g, c.talker, req.ignore_eos);
            const int32_t c0 = forced ? (*forced)[size_t(g * G)]
                                      : sample_token(logits, talker_settings, rng.uniform(0, req.rng_frame_offset + uint64_t(g)));
            if (c0 == eos) {
                res.stop = StopReason::eos;
                break;
            }
            history.push_back(c0);
            frame[0] = c0;
            t0 = std::chrono::steady_clock::now();
            if (forced) {
                std::copy(forced->begin() + g * G, forced->begin() + (g + 1) * G, frame.begin());
                predictor_->forced_argmax(talker_->hidden(), frame, predicted);
                if (observer) observer->on_predictor_argmax(g, predicted);
            } else {
                predictor_->predict(talker_->hidden(), frame, predictor_settings, rng, req.rng_frame_offset + uint64_t(g));
            }
            res.times.predictor_s += seconds_since(t0);
            if (!take_frame(g, frame)) break;
            // Next talker input: all 16 codebook embeddings of this frame + the trailing text vector.
            // Summed in the reference's order: codebooks 0..G-1, then the text vector.
            std::fill(next.begin(), next.end(), 0.0f);
            for (int64_t k = 0; k < G; ++k) {
                const float* row = model_->weights().codebook_row(k, frame[size_t(k)]);
                for (int64_t d = 0; d < E; ++d) next[size_t(d)] += row[d];
            }
            const float* text_part = text_track.row(L + std::min(g, T));  // trailing text, then the pad
            for (int64_t d = 0; d < E; ++d) next[size_t(d)] += text_part[d];
            t0 = std::chrono::steady_clock::now();
            talker_->step(next);
            res.times.talker_s += seconds_since(t0);
            ++res.times.talker_steps;
        }
    }
    flush_vocoder();
    res.times.text_s = text_track.wait_s();
    res.times.total_s = seconds_since(t_start);
    return res;
}

}  // namespace qtts
