#include "core/parity.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <limits>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qtts {

namespace {

using json = nlohmann::json;

struct FieldReader {
    std::string where;  // "ref.json: item 2"
    const json& j;
    const json& need(const char* key, json::value_t type) const {
        auto it = j.find(key);
        if (it == j.end())
            throw InputError(fmt::format("{}: missing field '{}'", where, key), "make references with scripts/make_reference.py");
        const bool ok = type == json::value_t::number_integer ? it->is_number_integer()
                        : type == json::value_t::array        ? it->is_array()
                                                              : it->type() == type;
        if (!ok) throw InputError(fmt::format("{}: field '{}' has the wrong type", where, key), "make references with scripts/make_reference.py");
        return *it;
    }
};

template <typename T>
std::vector<T> number_list(const json& j, const std::string& where, const char* key) {
    std::vector<T> out;
    for (const auto& v : j) {
        if constexpr (std::is_integral_v<T>) {
            // Range-checked: converting 1e300 (or 2^40) to int32 would be undefined or wrap silently.
            if (!v.is_number_integer() ||
                (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(std::numeric_limits<T>::max())
                                        : v.get<int64_t>() < int64_t(std::numeric_limits<T>::min()) ||
                                              v.get<int64_t>() > int64_t(std::numeric_limits<T>::max())))
                throw InputError(fmt::format("{}: field '{}' must hold integers in [{}, {}]", where, key,
                                             std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
            out.push_back(T(v.get<int64_t>()));
        } else {
            // 1e300 would become inf in float and poison every comparison downstream.
            if (!v.is_number() || !(std::abs(v.get<double>()) <= double(std::numeric_limits<T>::max())))
                throw InputError(fmt::format("{}: field '{}' must hold finite {}-bit numbers", where, key, 8 * sizeof(T)));
            out.push_back(T(v.get<double>()));
        }
    }
    return out;
}

}  // namespace

ReferenceFile load_reference(const std::filesystem::path& path, const ModelConfig& config) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw InputError(fmt::format("cannot read reference {}", path.string()), "check the path given to --reference");
    const std::string text{std::istreambuf_iterator<char>(in), {}};
    return parse_reference(text, path.string(), config);
}

ReferenceFile parse_reference(std::string_view json_text, const std::string& source, const ModelConfig& config) {
    json root;
    try {
        root = json::parse(json_text);
    } catch (const json::exception& e) {
        throw InputError(fmt::format("{}: not valid JSON ({})", source, e.what()));
    }
    ReferenceFile ref;
    ref.source = source;
    if (!root.is_object() || !root.contains("items") || !root["items"].is_array() || root["items"].empty())
        throw InputError(fmt::format("{}: missing field 'items' (a non-empty list)", source),
                         "make references with scripts/make_reference.py");
    const int64_t G = config.talker.num_code_groups;
    for (size_t i = 0; i < root["items"].size(); ++i) {
        const std::string where = fmt::format("{}: item {}", source, i);
        FieldReader f{where, root["items"][i]};
        ReferenceItem item;
        item.text = f.need("text", json::value_t::string).get<std::string>();
        item.language = f.j.contains("language") ? f.need("language", json::value_t::string).get<std::string>() : "auto";
        // need() rather than json::value(): value() throws nlohmann's type_error on a non-boolean.
        item.non_streaming_text =
            f.j.contains("non_streaming_text") && f.need("non_streaming_text", json::value_t::boolean).get<bool>();
        item.input_ids = number_list<int32_t>(f.need("input_ids", json::value_t::array), where, "input_ids");
        const json& codes = f.need("codes", json::value_t::array);
        if (codes.empty()) throw InputError(fmt::format("{}: field 'codes' is empty", where));
        for (size_t fr = 0; fr < codes.size(); ++fr) {
            if (!codes[fr].is_array() || int64_t(codes[fr].size()) != G)
                throw InputError(fmt::format("{}: codes[{}] has {} values; this model has {} codebooks", where, fr,
                                             codes[fr].is_array() ? codes[fr].size() : 0, G),
                                 "the reference was made for another model");
            for (size_t k = 0; k < codes[fr].size(); ++k) {
                const int64_t limit = k == 0 ? config.talker.codec_eos_id : config.predictor.stack.vocab_size;
                if (!codes[fr][k].is_number_integer() || codes[fr][k].get<int64_t>() < 0 || codes[fr][k].get<int64_t>() >= limit)
                    throw InputError(fmt::format("{}: codes[{}][{}] is not a code in [0, {})", where, fr, k, limit),
                                     "the reference was made for another model");
                item.codes.push_back(codes[fr][k].get<int32_t>());
            }
        }
        item.n_frames = int64_t(codes.size());
        if (f.j.contains("n_frames") && f.need("n_frames", json::value_t::number_integer).get<int64_t>() != item.n_frames)
            throw InputError(fmt::format("{}: n_frames ({}) does not match the {} frames of 'codes'", where,
                                         f.j["n_frames"].get<int64_t>(), item.n_frames));
        if (f.j.contains("talker_logits")) {  // raw codec_head logits of steps 0, 1, ...
            for (const auto& step : f.need("talker_logits", json::value_t::array)) {
                item.talker_logits.push_back(number_list<float>(step, where, "talker_logits"));
                // A row may be a prefix (the oracle keeps the first 64 logits at full size); never longer.
                if (item.talker_logits.back().empty() ||
                    int64_t(item.talker_logits.back().size()) > config.talker.stack.vocab_size)
                    throw InputError(fmt::format("{}: talker_logits rows have {} values; this model's codec vocabulary is {}",
                                                 where, item.talker_logits.back().size(), config.talker.stack.vocab_size),
                                     "the reference was made for another model");
            }
        }
        if (f.j.contains("wav")) item.wav = number_list<float>(f.need("wav", json::value_t::array), where, "wav");
        ref.items.push_back(std::move(item));
    }
    return ref;
}

double cosine_similarity(std::span<const float> a, std::span<const float> b) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        ab += double(a[i]) * b[i];
        aa += double(a[i]) * a[i];
        bb += double(b[i]) * b[i];
    }
    return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

double snr_db(std::span<const float> ref, std::span<const float> test) {
    double signal = 0, noise = 0;
    for (size_t i = 0; i < ref.size() && i < test.size(); ++i) {
        signal += double(ref[i]) * ref[i];
        noise += (double(ref[i]) - test[i]) * (double(ref[i]) - test[i]);
    }
    if (noise == 0) return std::numeric_limits<double>::infinity();
    return 10.0 * std::log10(signal / noise);
}

double top2_gap(std::span<const float> v) {
    float a = -std::numeric_limits<float>::infinity(), b = a;
    for (float x : v) {
        if (x > a) {
            b = a;
            a = x;
        } else if (x > b) {
            b = x;
        }
    }
    return double(a) - double(b);
}

namespace {

// Records every talker logit row and the teacher-forced predictor arg-max.
class Recorder final : public SynthesisObserver {
public:
    std::vector<std::vector<float>> logits;
    std::vector<std::vector<int32_t>> predicted;
    void on_talker_logits(int64_t, std::span<const float> l) override { logits.emplace_back(l.begin(), l.end()); }
    bool wants_talker_logits() const override { return true; }
    void on_predictor_argmax(int64_t, std::span<const int32_t> a) override { predicted.emplace_back(a.begin(), a.end()); }
};

// The talker's arg-max after the same processing the greedy reference applies (suppression, EOS ban).
int32_t processed_argmax(std::vector<float> l, int64_t step, const ModelConfig& c) {
    constrain_talker_logits(l, step, c.talker);
    return argmax(l);
}

}  // namespace

ParityReport run_parity(Session& session, const ReferenceFile& ref, const ParityThresholds& th) {
    const ModelConfig& c = session.model().config();
    const int64_t G = c.talker.num_code_groups;
    const Tokenizer& tok = session.model().tokenizer();
    ParityReport report;
    for (const ReferenceItem& item : ref.items) {
        ItemParity p;
        p.text = item.text;
        SynthesisRequest req;
        req.text = item.text;
        req.language = item.language;
        req.non_streaming_text = item.non_streaming_text;
        req.talker = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
        req.predictor = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
        req.max_frames = item.n_frames;

        // Free-running greedy.
        Recorder free_rec;
        const SynthesisResult free_run = session.synthesize(req, &free_rec);
        p.our_input_ids = wrap_prompt_ids(tok, free_run.text_ids);
        p.tokens_equal = p.our_input_ids == item.input_ids;
        p.frames = item.n_frames;
        p.exact_prefix_per_codebook.assign(size_t(G), item.n_frames);
        for (int64_t f = 0; f < item.n_frames; ++f) {
            for (int64_t k = 0; k < G; ++k) {
                const int32_t r = item.codes[size_t(f * G + k)];
                const int32_t o = f < free_run.n_frames ? free_run.codes[size_t(f * G + k)] : -1;
                if (o == r) continue;
                p.exact_prefix_per_codebook[size_t(k)] = std::min(p.exact_prefix_per_codebook[size_t(k)], f);
                if (!p.divergence) {
                    Divergence d{.frame = f, .codebook = k, .ours = o, .reference = r};
                    if (k == 0 && size_t(f) < item.talker_logits.size() &&
                        int64_t(item.talker_logits[size_t(f)].size()) == c.talker.stack.vocab_size)  // full rows only
                        d.reference_top2_gap = top2_gap(item.talker_logits[size_t(f)]);
                    if (k == 0 && size_t(f) < free_rec.logits.size()) d.our_top2_gap = top2_gap(free_rec.logits[size_t(f)]);
                    p.divergence = d;
                }
            }
            if (!p.divergence) p.exact_frames = f + 1;
        }

        // Teacher-forced: the reference codes drive every step.
        req.forced_codes = item.codes;
        Recorder forced_rec;
        const SynthesisResult forced_run = session.synthesize(req, &forced_rec);
        p.forced_steps = int64_t(std::min<size_t>(forced_rec.logits.size(), size_t(item.n_frames)));
        for (int64_t s = 0; s < p.forced_steps; ++s)
            p.top1_agree += processed_argmax(forced_rec.logits[size_t(s)], s, c) == item.codes[size_t(s * G)];
        p.predictor_agree.assign(size_t(G), 0);
        for (size_t f = 0; f < forced_rec.predicted.size(); ++f)
            for (int64_t k = 1; k < G; ++k)
                p.predictor_agree[size_t(k)] += forced_rec.predicted[f][size_t(k)] == item.codes[f * size_t(G) + size_t(k)];
        for (size_t s = 0; s < item.talker_logits.size() && s < forced_rec.logits.size(); ++s) {
            const auto& r = item.talker_logits[s];  // possibly a prefix of the row
            const std::span<const float> o = std::span(forced_rec.logits[s]).first(r.size());
            p.worst_cosine = std::min(p.worst_cosine, cosine_similarity(r, o));
            double max_abs = 0, max_err = 0;
            for (size_t i = 0; i < r.size(); ++i) {
                max_abs = std::max(max_abs, double(std::fabs(r[i])));
                max_err = std::max(max_err, double(std::fabs(r[i] - o[i])));
            }
            p.worst_max_abs_rel = std::max(p.worst_max_abs_rel, max_abs > 0 ? max_err / max_abs : max_err);
            ++p.logit_steps_compared;
        }
        p.wav_samples_compared = int64_t(std::min(item.wav.size(), forced_run.audio.size()));
        p.snr_db = p.wav_samples_compared ? snr_db(std::span(item.wav).first(size_t(p.wav_samples_compared)),
                                                   std::span(forced_run.audio).first(size_t(p.wav_samples_compared)))
                                          : std::numeric_limits<double>::infinity();

        // Thresholds.
        const std::string who = fmt::format("item '{}'", item.text.substr(0, 40));
        if (th.require_tokens && !p.tokens_equal) report.failures.push_back(who + ": token ids differ");
        const double exact = double(p.exact_frames) / double(p.frames);
        if (exact < th.min_exact_fraction) {
            const Divergence& d = *p.divergence;
            std::string gap;
            if (d.reference_top2_gap) gap += fmt::format("; reference top-2 gap {:.4g}", *d.reference_top2_gap);
            if (d.our_top2_gap) gap += fmt::format("; our top-2 gap {:.4g}", *d.our_top2_gap);
            report.failures.push_back(fmt::format("{}: free-running codes diverge at frame {} codebook {}: ours {}, reference {}{}",
                                                  who, d.frame, d.codebook, d.ours, d.reference, gap));
        }
        const double top1 = p.forced_steps ? double(p.top1_agree) / double(p.forced_steps) : 1.0;
        if (top1 < th.min_top1)
            report.failures.push_back(fmt::format("{}: teacher-forced codebook-0 agreement {:.4f} < {}", who, top1, th.min_top1));
        int64_t pred_total = 0;
        for (int64_t k = 1; k < G; ++k) pred_total += p.predictor_agree[size_t(k)];
        const double pred = forced_rec.predicted.empty() ? 1.0 : double(pred_total) / double(forced_rec.predicted.size() * size_t(G - 1));
        if (pred < th.min_predictor)
            report.failures.push_back(fmt::format("{}: teacher-forced predictor agreement {:.4f} < {}", who, pred, th.min_predictor));
        if (p.logit_steps_compared && p.worst_cosine < th.min_cosine)
            report.failures.push_back(fmt::format("{}: talker logit cosine {:.6f} < {}", who, p.worst_cosine, th.min_cosine));
        if (p.wav_samples_compared && p.snr_db < th.min_snr_db)
            report.failures.push_back(fmt::format("{}: waveform SNR {:.1f} dB < {} dB", who, p.snr_db, th.min_snr_db));
        report.items.push_back(std::move(p));
    }
    return report;
}

}  // namespace qtts
