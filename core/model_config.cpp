// JSON -> ModelConfig. Size-defining fields are required (the official Python class defaults are wrong
// for real checkpoints); every error names the file and the field.
#include "core/model_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int64_t kMaxSize = int64_t(1) << 24;  // any width, count or vocabulary; real ones are < 2^18
const char* const kHintConfig = "the model directory must hold an unmodified Qwen3-TTS checkpoint";

[[noreturn]] void bad_field(const std::string& source, const std::string& path, const std::string& what) {
    throw ModelError(fmt::format("{}: field '{}' {}", source, path, what), kHintConfig);
}

json parse_json(const std::string& text, const std::string& source) {
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw ModelError(fmt::format("{}: not valid JSON ({})", source, e.what()), kHintConfig);
    }
}

// Typed field access with a dotted path for messages.
struct Fields {
    const json& j;
    std::string source;
    std::string prefix;

    const json* find(const char* key) const {
        if (!j.is_object()) bad_field(source, prefix, "is not an object");
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return nullptr;
        return &*it;
    }
    std::string path(const char* key) const { return prefix.empty() ? key : prefix + "." + key; }

    int64_t integer(const char* key) const {
        const json* v = find(key);
        if (!v) bad_field(source, path(key), "is missing");
        if (!v->is_number_integer()) bad_field(source, path(key), "must be an integer");
        return v->get<int64_t>();
    }
    int64_t integer_or(const char* key, int64_t fallback) const { return find(key) ? integer(key) : fallback; }
    int64_t positive(const char* key) const {
        int64_t v = integer(key);
        if (v <= 0) bad_field(source, path(key), fmt::format("must be positive, got {}", v));
        // Sizes are bounded so that products of two never overflow and nothing allocates what a config claims.
        if (v > kMaxSize) bad_field(source, path(key), fmt::format("must be at most {}, got {}", kMaxSize, v));
        return v;
    }
    double number_or(const char* key, double fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_number()) bad_field(source, path(key), "must be a number");
        return v->get<double>();
    }
    bool boolean_or(const char* key, bool fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_boolean()) bad_field(source, path(key), "must be true or false");
        return v->get<bool>();
    }
    std::string string_or(const char* key, const std::string& fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_string()) bad_field(source, path(key), "must be a string");
        return v->get<std::string>();
    }
    std::vector<int64_t> int_list_or(const char* key, std::vector<int64_t> fallback) const {
        const json* v = find(key);
        if (!v) return fallback;
        if (!v->is_array()) bad_field(source, path(key), "must be a list of integers");
        std::vector<int64_t> out;
        for (const auto& e : *v) {
            if (!e.is_number_integer()) bad_field(source, path(key), "must be a list of integers");
            out.push_back(e.get<int64_t>());
        }
        return out;
    }
    std::map<std::string, int64_t> id_map(const char* key) const {
        std::map<std::string, int64_t> out;
        const json* v = find(key);
        if (!v) return out;
        if (!v->is_object()) bad_field(source, path(key), "must be an object of name -> id");
        for (auto& [name, id] : v->items()) {
            if (std::any_of(name.begin(), name.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }))
                bad_field(source, path(key), fmt::format("has a name with control characters: {}", json(name).dump()));
            if (!id.is_number_integer()) bad_field(source, path(key) + "." + name, "must be an integer");
            std::string lower = name;
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
            out[lower] = id.get<int64_t>();
        }
        return out;
    }
    Fields sub(const char* key) const {
        const json* v = find(key);
        if (!v) bad_field(source, path(key), "is missing");
        if (!v->is_object()) bad_field(source, path(key), "is not an object");
        return Fields{*v, source, path(key)};
    }
};

DecoderStackConfig parse_stack(const Fields& f) {
    DecoderStackConfig s;
    s.n_layer = f.positive("num_hidden_layers");
    s.n_embd = f.positive("hidden_size");
    s.n_ff = f.positive("intermediate_size");
    s.n_head = f.positive("num_attention_heads");
    s.n_kv_head = f.integer_or("num_key_value_heads", s.n_head);
    s.head_dim = f.find("head_dim") ? f.positive("head_dim") : s.n_embd / s.n_head;
    s.vocab_size = f.positive("vocab_size");
    s.rms_eps = f.number_or("rms_norm_eps", 1e-6);
    s.rope_theta = f.number_or("rope_theta", 0.0);
    if (s.rope_theta <= 0) bad_field(f.source, f.path("rope_theta"), "is missing or not positive");
    s.max_positions = f.integer_or("max_position_embeddings", 32768);
    return s;
}

void check_stack(const DecoderStackConfig& s, const std::string& source, const std::string& name) {
    if (s.n_kv_head <= 0 || s.n_head % s.n_kv_head != 0)
        bad_field(source, name + ".num_key_value_heads",
                  fmt::format("({}) must divide num_attention_heads ({})", s.n_kv_head, s.n_head));
    if (s.head_dim % 2 != 0) bad_field(source, name + ".head_dim", "must be even (rotary embedding)");
    if (s.rms_eps <= 0) bad_field(source, name + ".rms_norm_eps", "must be positive");
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw ModelError(fmt::format("{}: cannot open", path.string()), kHintConfig);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& source) {
    const json root = parse_json(json_text, source);
    Fields f{root, source, ""};
    ModelConfig c;
    c.model_type = f.string_or("model_type", "");
    if (c.model_type != "qwen3_tts")
        bad_field(source, "model_type", fmt::format("is '{}'; expected 'qwen3_tts'", c.model_type));
    c.tts_model_type = f.string_or("tts_model_type", "base");
    c.tts_model_size = f.string_or("tts_model_size", "");
    c.tokenizer_type = f.string_or("tokenizer_type", "qwen3_tts_tokenizer_12hz");
    c.im_start_token_id = f.integer_or("im_start_token_id", c.im_start_token_id);
    c.im_end_token_id = f.integer_or("im_end_token_id", c.im_end_token_id);
    c.assistant_token_id = f.integer_or("assistant_token_id", c.assistant_token_id);
    c.tts_pad_token_id = f.integer_or("tts_pad_token_id", c.tts_pad_token_id);
    c.tts_bos_token_id = f.integer_or("tts_bos_token_id", c.tts_bos_token_id);
    c.tts_eos_token_id = f.integer_or("tts_eos_token_id", c.tts_eos_token_id);

    const Fields t = f.sub("talker_config");
    c.talker.stack = parse_stack(t);
    c.talker.text_vocab_size = t.positive("text_vocab_size");
    c.talker.text_hidden_size = t.positive("text_hidden_size");
    c.talker.num_code_groups = t.positive("num_code_groups");
    c.talker.codec_pad_id = t.integer("codec_pad_id");
    c.talker.codec_bos_id = t.integer("codec_bos_id");
    c.talker.codec_eos_id = t.integer("codec_eos_token_id");
    c.talker.codec_think_id = t.integer("codec_think_id");
    c.talker.codec_nothink_id = t.integer("codec_nothink_id");
    c.talker.codec_think_bos_id = t.integer("codec_think_bos_id");
    c.talker.codec_think_eos_id = t.integer("codec_think_eos_id");
    c.talker.language_ids = t.id_map("codec_language_id");
    c.talker.speaker_ids = t.id_map("spk_id");
    if (const json* d = t.find("spk_is_dialect"); d && d->is_object())
        for (auto& [name, v] : d->items())
            if (v.is_string()) c.talker.speaker_dialect[name] = v.get<std::string>();

    const Fields p = t.sub("code_predictor_config");
    c.predictor.stack = parse_stack(p);
    c.predictor.num_code_groups = p.integer_or("num_code_groups", c.talker.num_code_groups);

    if (const json* s = f.find("speaker_encoder_config"); s && c.is_base()) {
        Fields sf{*s, source, "speaker_encoder_config"};
        SpeakerEncoderConfig e;
        e.mel_dim = sf.integer_or("mel_dim", e.mel_dim);
        e.enc_dim = sf.integer_or("enc_dim", c.talker.stack.n_embd);
        e.channels = sf.int_list_or("enc_channels", e.channels);
        e.kernel_sizes = sf.int_list_or("enc_kernel_sizes", e.kernel_sizes);
        e.dilations = sf.int_list_or("enc_dilations", e.dilations);
        e.attention_channels = sf.integer_or("enc_attention_channels", e.attention_channels);
        e.res2net_scale = sf.integer_or("enc_res2net_scale", e.res2net_scale);
        e.se_channels = sf.integer_or("enc_se_channels", e.se_channels);
        e.sample_rate = sf.integer_or("sample_rate", e.sample_rate);
        c.speaker_encoder = e;
    }
    validate(c, source);
    return c;
}

namespace {
// The ECAPA-TDNN layout the weights and the math rely on (spec §8.2).
void validate_speaker_encoder(const SpeakerEncoderConfig& e, const std::string& source) {
    const auto field = [](const char* name) { return std::string("speaker_encoder_config.") + name; };
    const auto& ch = e.channels;
    if (ch.size() < 3 || e.kernel_sizes.size() != ch.size() || e.dilations.size() != ch.size())
        bad_field(source, field("enc_channels"),
                  "needs at least 3 entries, as many as enc_kernel_sizes and enc_dilations");
    for (size_t i = 0; i < ch.size(); ++i)
        if (ch[i] <= 0 || e.kernel_sizes[i] <= 0 || e.dilations[i] <= 0)
            bad_field(source, field("enc_channels"), "channels, kernel sizes and dilations must be positive");
    if (e.mel_dim <= 0 || e.enc_dim <= 0 || e.attention_channels <= 0 || e.se_channels <= 0 || e.res2net_scale < 2)
        bad_field(source, field("mel_dim"),
                  "mel_dim, enc_dim, enc_attention_channels, enc_se_channels must be positive, enc_res2net_scale >= 2");
    int64_t aggregated = 0;
    for (size_t i = 1; i + 1 < ch.size(); ++i) {
        if (ch[i] != ch[i - 1] || ch[i] % e.res2net_scale != 0)
            bad_field(source, field("enc_channels"),
                      "the SE-Res2Net blocks need the width of their input, divisible by enc_res2net_scale");
        aggregated += ch[i];
    }
    if (aggregated != ch.back())
        bad_field(source, field("enc_channels"), "the last entry must be the sum of the SE-Res2Net widths");
    // The official front-end (n_fft 1024, hop 256, fmax 12 kHz) asserts 24 kHz input.
    if (e.sample_rate != 24000) bad_field(source, field("sample_rate"), "must be 24000");
}
}  // namespace

void validate(const ModelConfig& c, const std::string& source) {
    if (c.tts_model_type != "base" && c.tts_model_type != "custom_voice" && c.tts_model_type != "voice_design")
        bad_field(source, "tts_model_type",
                  fmt::format("is '{}'; expected base, custom_voice or voice_design", c.tts_model_type));
    if (c.tokenizer_type != "qwen3_tts_tokenizer_12hz")
        bad_field(source, "tokenizer_type",
                  fmt::format("is '{}'; only the 12 Hz speech tokenizer is supported", c.tokenizer_type));
    check_stack(c.talker.stack, source, "talker_config");
    check_stack(c.predictor.stack, source, "talker_config.code_predictor_config");
    const auto& t = c.talker;
    if (t.num_code_groups < 2 || c.predictor.num_code_groups != t.num_code_groups)
        bad_field(source, "talker_config.num_code_groups", "must be >= 2 and equal the code predictor's");
    for (int64_t id : {t.codec_pad_id, t.codec_bos_id, t.codec_eos_id, t.codec_think_id, t.codec_nothink_id,
                       t.codec_think_bos_id, t.codec_think_eos_id})
        if (id < 0 || id >= t.stack.vocab_size)
            bad_field(source, "talker_config.codec_*_id", fmt::format("id {} is outside the codec vocabulary", id));
    for (const auto& [name, id] : t.language_ids)
        if (id < 0 || id >= t.stack.vocab_size)
            bad_field(source, "talker_config.codec_language_id." + name, "is outside the codec vocabulary");
    if (c.predictor.stack.vocab_size > t.codec_pad_id)
        bad_field(source, "talker_config.code_predictor_config.vocab_size",
                  "must not reach the codec control ids");
    for (int64_t id : {c.im_start_token_id, c.im_end_token_id, c.assistant_token_id, c.tts_pad_token_id,
                       c.tts_bos_token_id, c.tts_eos_token_id})
        if (id < 0 || id >= t.text_vocab_size)
            bad_field(source, "*_token_id", fmt::format("id {} is outside the text vocabulary", id));
    if (c.speaker_encoder && c.speaker_encoder->enc_dim != t.stack.n_embd)
        bad_field(source, "speaker_encoder_config.enc_dim", "must equal the talker hidden size");
    if (c.speaker_encoder) validate_speaker_encoder(*c.speaker_encoder, source);
}

GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& source) {
    const json root = parse_json(json_text, source);
    Fields f{root, source, ""};
    GenerationDefaults g;
    g.do_sample = f.boolean_or("do_sample", g.do_sample);
    g.temperature = f.number_or("temperature", g.temperature);
    g.top_k = f.integer_or("top_k", g.top_k);
    g.top_p = f.number_or("top_p", g.top_p);
    g.repetition_penalty = f.number_or("repetition_penalty", g.repetition_penalty);
    g.subtalker_do_sample = f.boolean_or("subtalker_dosample", g.subtalker_do_sample);
    g.subtalker_temperature = f.number_or("subtalker_temperature", g.subtalker_temperature);
    g.subtalker_top_k = f.integer_or("subtalker_top_k", g.subtalker_top_k);
    g.subtalker_top_p = f.number_or("subtalker_top_p", g.subtalker_top_p);
    g.max_new_tokens = f.integer_or("max_new_tokens", g.max_new_tokens);
    if (g.temperature <= 0 || g.subtalker_temperature <= 0) bad_field(source, "temperature", "must be positive");
    if (g.top_p <= 0 || g.top_p > 1 || g.subtalker_top_p <= 0 || g.subtalker_top_p > 1)
        bad_field(source, "top_p", "must be in (0, 1]");
    if (g.repetition_penalty <= 0) bad_field(source, "repetition_penalty", "must be positive");
    if (g.max_new_tokens < 1) bad_field(source, "max_new_tokens", "must be positive");
    return g;
}

VocoderConfig parse_vocoder_config(const std::string& json_text, const std::string& source) {
    const json root = parse_json(json_text, source);
    Fields top{root, source, ""};
    const std::string type = top.string_or("model_type", "");
    if (type != "qwen3_tts_tokenizer_12hz")
        bad_field(source, "model_type", fmt::format("is '{}'; expected 'qwen3_tts_tokenizer_12hz'", type));
    const Fields d = top.sub("decoder_config");
    VocoderConfig v;
    v.num_quantizers = d.positive("num_quantizers");
    v.codebook_size = d.positive("codebook_size");
    v.codebook_dim = d.positive("codebook_dim");
    v.latent_dim = d.positive("latent_dim");
    v.hidden_size = d.positive("hidden_size");
    v.n_layer = d.positive("num_hidden_layers");
    v.n_head = d.positive("num_attention_heads");
    v.n_kv_head = d.integer_or("num_key_value_heads", v.n_head);
    v.head_dim = d.find("head_dim") ? d.positive("head_dim") : v.hidden_size / v.n_head;
    v.n_ff = d.positive("intermediate_size");
    v.rms_eps = d.number_or("rms_norm_eps", v.rms_eps);
    v.rope_theta = d.number_or("rope_theta", v.rope_theta);
    v.sliding_window = d.positive("sliding_window");
    v.upsampling_ratios = d.int_list_or("upsampling_ratios", v.upsampling_ratios);
    v.upsample_rates = d.int_list_or("upsample_rates", v.upsample_rates);
    v.decoder_dim = d.positive("decoder_dim");
    if (const std::string act = d.string_or("hidden_act", "silu"); act != "silu")
        bad_field(source, "decoder_config.hidden_act", fmt::format("is '{}'; only 'silu' is supported", act));
    v.sample_rate = top.integer_or("output_sample_rate", v.sample_rate);
    v.samples_per_frame = top.integer_or("decode_upsample_rate", v.samples_per_frame);
    validate(v, source);
    return v;
}

void validate(const VocoderConfig& v, const std::string& source) {
    if (v.codebook_dim % 2 != 0) bad_field(source, "decoder_config.codebook_dim", "must be even");
    if (v.n_kv_head <= 0 || v.n_head % v.n_kv_head != 0)
        bad_field(source, "decoder_config.num_key_value_heads", "must divide num_attention_heads");
    if (v.head_dim % 2 != 0) bad_field(source, "decoder_config.head_dim", "must be even");
    int64_t total = 1;  // stays <= kMaxSize, so no product below can overflow
    for (int64_t r : v.upsampling_ratios) {
        if (r <= 0) bad_field(source, "decoder_config.upsampling_ratios", "must be positive");
        if (r > kMaxSize / total)
            bad_field(source, "decoder_config.upsampling_ratios", fmt::format("multiply to more than {}", kMaxSize));
        total *= r;
    }
    for (int64_t r : v.upsample_rates) {
        if (r <= 0) bad_field(source, "decoder_config.upsample_rates", "must be positive");
        if (r > kMaxSize / total)
            bad_field(source, "decoder_config.upsample_rates", fmt::format("multiply to more than {}", kMaxSize));
        total *= r;
    }
    if (total != v.samples_per_frame)
        bad_field(source, "decode_upsample_rate",
                  fmt::format("({}) must equal the product of the upsampling ratios ({})", v.samples_per_frame, total));
    if (v.upsample_rates.size() >= 24 || v.decoder_dim >> v.upsample_rates.size() <= 0)
        bad_field(source, "decoder_config.decoder_dim", "is too small for the number of decoder blocks");
}

ModelConfig load_model_config(const fs::path& dir) {
    if (!fs::is_directory(dir))
        throw ModelError(fmt::format("{}: not a directory", dir.string()),
                         "pass --model DIR with the Qwen3-TTS checkpoint (config.json, model.safetensors, ...)");
    const fs::path main = dir / "config.json";
    if (!fs::exists(main))
        throw ModelError(fmt::format("{}: missing config.json", dir.string()),
                         "pass the directory of a Qwen3-TTS checkpoint (e.g. Qwen/Qwen3-TTS-12Hz-0.6B-Base)");
    ModelConfig c = parse_model_config(read_file(main), main.string());
    const fs::path gen = dir / "generation_config.json";
    if (fs::exists(gen)) c.generation = parse_generation_config(read_file(gen), gen.string());
    const fs::path voc = dir / "speech_tokenizer" / "config.json";
    if (!fs::exists(voc))
        throw ModelError(fmt::format("{}: missing speech_tokenizer/config.json", dir.string()),
                         "the checkpoint must include its speech_tokenizer/ folder");
    c.vocoder = parse_vocoder_config(read_file(voc), voc.string());
    return c;
}

std::string ModelConfig::summary() const {
    const auto& t = talker.stack;
    const auto& p = predictor.stack;
    return fmt::format(
        "qwen3_tts {} {}: talker {}L h{} ff{} {}q/{}kv×{}, predictor {}L h{}, {} codebooks, vocoder {}L h{} dec{}",
        tts_model_size, tts_model_type, t.n_layer, t.n_embd, t.n_ff, t.n_head, t.n_kv_head, t.head_dim, p.n_layer,
        p.n_embd, talker.num_code_groups, vocoder.n_layer, vocoder.hidden_size, vocoder.decoder_dim);
}

}  // namespace qtts
