#include "core/random_model.h"

#include <cmath>
#include <fstream>
#include <random>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "core/error.h"

namespace qtts {

namespace {

uint64_t name_hash(std::string_view s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (char c : s) h = (h ^ uint64_t(uint8_t(c))) * 1099511628211ull;
    return h;
}

// Fast deterministic normal-ish values: sum of 4 uniforms (Irwin-Hall), scaled to unit variance.
class FastNormal {
public:
    explicit FastNormal(uint64_t seed) : state_(seed | 1) {}
    float next() {
        float s = 0;
        for (int i = 0; i < 4; ++i) s += float(step() >> 40) * (1.0f / 16777216.0f);
        return (s - 2.0f) * 1.7320508f;  // var of sum of 4 U(0,1) = 1/3
    }
    float uniform() { return float(step() >> 40) * (1.0f / 16777216.0f); }

private:
    uint64_t step() {
        state_ ^= state_ << 13, state_ ^= state_ >> 7, state_ ^= state_ << 17;
        return state_;
    }
    uint64_t state_;
};

// The two published 12 Hz Base sizes differ only in the talker's width (hidden, FFN, speaker x-vector); the code
// predictor stays 1024 wide, so 1.7B adds the predictor's input projection (small_to_mtp_projection).
struct RandomSize {
    const char* name;
    int64_t talker_hidden, talker_ffn;
    const char* tts_model_size;
};
constexpr RandomSize kRandomSizes[] = {{"0.6b", 1024, 3072, "0b6"}, {"1.7b", 2048, 6144, "1b7"}};

const RandomSize& random_size(std::string_view size) {
    for (const RandomSize& rs : kRandomSizes)
        if (size == rs.name) return rs;
    throw InputError(fmt::format("unknown random model size '{}'", size),
                     fmt::format("use one of: {}", fmt::join(random_model_sizes(), ", ")));
}

}  // namespace

const std::vector<std::string>& random_model_sizes() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> v;
        for (const RandomSize& rs : kRandomSizes) v.emplace_back(rs.name);
        return v;
    }();
    return names;
}

std::string random_model_config_json(std::string_view size) {
    const RandomSize& rs = random_size(size);
    nlohmann::json talker = {
        {"hidden_size", rs.talker_hidden}, {"intermediate_size", rs.talker_ffn}, {"num_hidden_layers", 28},
        {"num_attention_heads", 16}, {"num_key_value_heads", 8}, {"head_dim", 128}, {"text_hidden_size", 2048},
        {"text_vocab_size", 151936}, {"vocab_size", 3072}, {"rope_theta", 1000000},
        {"max_position_embeddings", 32768}, {"num_code_groups", 16},
        {"rms_norm_eps", 1e-6}, {"codec_bos_id", 2149}, {"codec_eos_token_id", 2150}, {"codec_pad_id", 2148},
        {"codec_think_id", 2154}, {"codec_nothink_id", 2155}, {"codec_think_bos_id", 2156},
        {"codec_think_eos_id", 2157},
        {"codec_language_id",
         {{"chinese", 2055}, {"english", 2050}, {"german", 2053}, {"italian", 2070}, {"portuguese", 2071},
          {"spanish", 2054}, {"japanese", 2058}, {"korean", 2064}, {"french", 2061}, {"russian", 2069}}},
        {"code_predictor_config",
         {{"hidden_size", 1024}, {"intermediate_size", 3072}, {"num_hidden_layers", 5}, {"num_attention_heads", 16},
          {"num_key_value_heads", 8}, {"head_dim", 128}, {"vocab_size", 2048}, {"rope_theta", 1000000},
          {"num_code_groups", 16}, {"rms_norm_eps", 1e-6}}}};
    nlohmann::json root = {{"model_type", "qwen3_tts"}, {"tts_model_type", "base"}, {"tts_model_size", rs.tts_model_size},
                           {"tokenizer_type", "qwen3_tts_tokenizer_12hz"}, {"talker_config", talker},
                           {"speaker_encoder_config", {{"enc_dim", rs.talker_hidden}, {"sample_rate", 24000}}}};
    return root.dump();
}

std::string random_vocoder_config_json(std::string_view size) {
    (void)random_size(size);  // the same speech-tokenizer decoder serves both sizes
    nlohmann::json dec = {{"codebook_size", 2048}, {"sliding_window", 72}, {"rms_norm_eps", 1e-5},
                          {"num_quantizers", 16}, {"upsample_rates", {8, 5, 4, 3}}, {"upsampling_ratios", {2, 2}},
                          {"rope_theta", 10000}, {"codebook_dim", 512}, {"hidden_size", 512}, {"head_dim", 64},
                          {"latent_dim", 1024}, {"num_attention_heads", 16}, {"num_key_value_heads", 16},
                          {"intermediate_size", 1024}, {"num_hidden_layers", 8}, {"decoder_dim", 1536}};
    return nlohmann::json{{"model_type", "qwen3_tts_tokenizer_12hz"}, {"output_sample_rate", 24000},
                          {"decode_upsample_rate", 1920}, {"decoder_config", dec}}
        .dump();
}

TensorStore make_random_store(uint64_t seed, int64_t text_vocab, int64_t text_hidden, RandomValues values) {
    auto fabricate = [seed, values](std::string_view name, const Shape& shape) {
        Tensor t(shape);
        FastNormal rng(seed ^ name_hash(name));
        if (shape.size() <= 1) {
            for (float& v : t.data) v = 0.5f + 0.5f * rng.uniform();
        } else {
            const float scale = 1.0f / std::sqrt(float(t.numel() / shape[0]));
            for (float& v : t.data) v = rng.next() * scale;
            if (values == RandomValues::bf16)
                for (float& v : t.data) v = bf16_to_f32(f32_to_bf16(v));
        }
        return t;
    };
    TensorStore store = TensorStore::synthetic(fabricate, fmt::format("random weights (seed {})", seed));
    if (text_vocab == 0) return store;
    const std::string name = "talker.model.text_embedding.weight";
    std::vector<uint8_t> bytes(size_t(text_vocab * text_hidden) * 2);
    FastNormal rng(seed ^ name_hash(name));
    auto* p = reinterpret_cast<uint16_t*>(bytes.data());
    for (size_t i = 0; i < size_t(text_vocab * text_hidden); ++i) p[i] = f32_to_bf16(rng.next());
    store.add_owned(name, DType::bf16, {text_vocab, text_hidden}, std::move(bytes));
    return store;
}

void write_byte_level_tokenizer(const std::filesystem::path& dir) {
    // GPT-2 byte → printable code point map: printable Latin-1 bytes map to themselves, the rest to 256+.
    nlohmann::json vocab = nlohmann::json::object();
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
        const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        const char32_t cp = printable ? char32_t(b) : char32_t(256 + extra++);
        std::string utf8;
        if (cp < 0x80) {
            utf8 = char(cp);
        } else {
            utf8 += char(0xC0 | (cp >> 6));
            utf8 += char(0x80 | (cp & 0x3F));
        }
        vocab[utf8] = b;
    }
    std::ofstream(dir / "vocab.json") << vocab.dump();
    std::ofstream(dir / "merges.txt") << "#version: 0.2\n";
}

}  // namespace qtts
