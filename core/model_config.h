// Plain, trivially copyable descriptions of a Qwen3-TTS checkpoint, parsed from its config.json,
// generation_config.json and speech_tokenizer/config.json. `validate()` checks internal invariants
// (head counts, widths) so that binding weights and the math can rely on them.
// Class defaults in the official Python config are wrong for the checkpoints (spec pitfall 2): every
// size-defining field must be present in config.json; only harmless fields get defaults here.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qtts {

// One Qwen3 decoder stack (the talker and the code predictor share this description).
struct DecoderStackConfig {
    int64_t n_layer = 0;
    int64_t n_embd = 0;       // hidden size
    int64_t n_ff = 0;         // SwiGLU intermediate size
    int64_t n_head = 0;
    int64_t n_kv_head = 0;
    int64_t head_dim = 0;     // 128 for the real checkpoints even though n_embd / n_head = 64 (pitfall 1)
    int64_t vocab_size = 0;   // output head rows
    double rms_eps = 1e-6;
    double rope_theta = 1e6;
    int64_t max_positions = 0;

    int64_t q_dim() const { return n_head * head_dim; }
    int64_t kv_dim() const { return n_kv_head * head_dim; }
};

struct TalkerConfig {
    DecoderStackConfig stack;
    int64_t text_vocab_size = 0;     // 151936
    int64_t text_hidden_size = 0;    // 2048 (text_embedding width)
    int64_t num_code_groups = 16;
    // codec control ids
    int64_t codec_pad_id = 2148, codec_bos_id = 2149, codec_eos_id = 2150;
    int64_t codec_think_id = 2154, codec_nothink_id = 2155, codec_think_bos_id = 2156, codec_think_eos_id = 2157;
    std::map<std::string, int64_t> language_ids;   // lower-case name -> codec id
    std::map<std::string, int64_t> speaker_ids;    // CustomVoice only
    std::map<std::string, std::string> speaker_dialect;  // speaker -> dialect name, or absent
};

struct CodePredictorConfig {
    DecoderStackConfig stack;
    int64_t num_code_groups = 16;
};

struct SpeakerEncoderConfig {
    int64_t mel_dim = 128;
    int64_t enc_dim = 0;
    std::vector<int64_t> channels{512, 512, 512, 512, 1536};
    std::vector<int64_t> kernel_sizes{5, 3, 3, 3, 1};
    std::vector<int64_t> dilations{1, 2, 3, 4, 1};
    int64_t attention_channels = 128;
    int64_t res2net_scale = 8;
    int64_t se_channels = 128;
    int64_t sample_rate = 24000;
};

// The speech-tokenizer decoder ("vocoder"): codes [T, 16] -> 24 kHz audio, 1920 samples per frame.
struct VocoderConfig {
    int64_t num_quantizers = 16;
    int64_t codebook_size = 2048;
    int64_t codebook_dim = 512;        // quantizer output width; the inner VQ width is codebook_dim / 2
    int64_t latent_dim = 1024;         // pre_conv output width
    int64_t hidden_size = 512;         // transformer width
    int64_t n_layer = 8;
    int64_t n_head = 16;
    int64_t n_kv_head = 16;
    int64_t head_dim = 64;
    int64_t n_ff = 1024;
    double rms_eps = 1e-5;
    double rope_theta = 10000;
    int64_t sliding_window = 72;
    std::vector<int64_t> upsampling_ratios{2, 2};   // ConvNeXt upsampler stages
    std::vector<int64_t> upsample_rates{8, 5, 4, 3};  // decoder blocks
    int64_t decoder_dim = 1536;
    int64_t sample_rate = 24000;
    int64_t samples_per_frame = 1920;

    int64_t vq_dim() const { return codebook_dim / 2; }
};

struct GenerationDefaults {
    bool do_sample = true;
    double temperature = 0.9;
    int64_t top_k = 50;
    double top_p = 1.0;
    double repetition_penalty = 1.05;
    bool subtalker_do_sample = true;
    double subtalker_temperature = 0.9;
    int64_t subtalker_top_k = 50;
    double subtalker_top_p = 1.0;
    int64_t max_new_tokens = 8192;
};

struct ModelConfig {
    std::string model_type;       // "qwen3_tts"
    std::string tts_model_type;   // "base" | "custom_voice" | "voice_design"
    std::string tts_model_size;   // "0b6" | "1b7"
    std::string tokenizer_type;   // "qwen3_tts_tokenizer_12hz"
    int64_t im_start_token_id = 151644, im_end_token_id = 151645, assistant_token_id = 77091;
    int64_t tts_pad_token_id = 151671, tts_bos_token_id = 151672, tts_eos_token_id = 151673;
    TalkerConfig talker;
    CodePredictorConfig predictor;
    std::optional<SpeakerEncoderConfig> speaker_encoder;  // Base checkpoints only
    GenerationDefaults generation;
    VocoderConfig vocoder;

    bool is_base() const { return tts_model_type == "base"; }
    // 1.7B: predictor inputs are projected from the talker width (small_to_mtp_projection).
    bool has_mtp_projection() const { return talker.stack.n_embd != predictor.stack.n_embd; }
    std::string summary() const;  // one-line banner for logs
};

// Parses `<dir>/config.json`, `<dir>/generation_config.json` (optional) and
// `<dir>/speech_tokenizer/config.json`; throws ModelError naming the file and field.
ModelConfig load_model_config(const std::filesystem::path& dir);
// Pieces, exposed for tests; `source` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& source);
VocoderConfig parse_vocoder_config(const std::string& json_text, const std::string& source);
// Throws ModelError when a field contradicts another.
void validate(const ModelConfig& config, const std::string& source);
void validate(const VocoderConfig& config, const std::string& source);

}  // namespace qtts
