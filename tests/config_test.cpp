// config.json / generation_config.json / speech_tokenizer config parsing and validation.
#include <doctest/doctest.h>

#include "core/costs.h"
#include "core/error.h"
#include "core/model_config.h"
#include "core/random_model.h"
#include "tests/test_util.h"

namespace qtts {

namespace {
std::string tiny_config_text() { return test::read_file(test::tiny_model_dir() / "config.json"); }

std::string error_of(const std::string& text) {
    try {
        parse_model_config(text, "config.json");
    } catch (const ModelError& e) {
        return e.what();
    }
    return "no error";
}

std::string with(nlohmann::json j, const std::string& pointer, const nlohmann::json& value) {
    j[nlohmann::json::json_pointer(pointer)] = value;
    return j.dump();
}
std::string without(nlohmann::json j, const std::string& parent, const std::string& key) {
    j[nlohmann::json::json_pointer(parent)].erase(key);
    return j.dump();
}
}  // namespace

TEST_CASE("the tiny checkpoint's configs parse with the values the checkpoint declares") {
    const ModelConfig c = load_model_config(test::tiny_model_dir());
    CHECK(c.is_base());
    CHECK(c.talker.stack.n_layer == 2);
    CHECK(c.talker.stack.n_embd == 64);
    CHECK(c.talker.stack.head_dim == 16);
    CHECK(c.talker.stack.rope_theta == 1e6);
    CHECK(c.talker.text_hidden_size == 16);
    CHECK(c.talker.codec_eos_id == 2150);
    CHECK(c.talker.language_ids.at("english") == 2050);
    CHECK(c.predictor.stack.vocab_size == 2048);
    CHECK(c.speaker_encoder.has_value());
    CHECK_FALSE(c.has_mtp_projection());
    CHECK(c.generation.max_new_tokens == 8192);
    CHECK(c.generation.repetition_penalty == doctest::Approx(1.05));
    CHECK(c.vocoder.samples_per_frame == 1920);
    CHECK(c.vocoder.sliding_window == 72);
    CHECK(c.vocoder.vq_dim() == 16);
}

TEST_CASE("1.7B-style configs (talker wider than the predictor) enable the MTP projection") {
    auto j = nlohmann::json::parse(tiny_config_text());
    j["talker_config"]["hidden_size"] = 128;
    j["speaker_encoder_config"]["enc_dim"] = 128;
    const ModelConfig c = parse_model_config(j.dump(), "config.json");
    CHECK(c.has_mtp_projection());
}

// The random architectures behind `qtts bench --random-weights --random-size`: the published Base shapes
// (spec §3.1, §4.1), parsed by the same code as a checkpoint's config.json.
TEST_CASE("random model configs: 0.6B and 1.7B Base shapes; 1.7B has the MTP projection") {
    const ModelConfig a = parse_model_config(random_model_config_json("0.6b"), "<random 0.6b>");
    const ModelConfig b = parse_model_config(random_model_config_json("1.7b"), "<random 1.7b>");
    CHECK(a.talker.stack.n_embd == 1024);
    CHECK(a.talker.stack.n_ff == 3072);
    CHECK_FALSE(a.has_mtp_projection());
    CHECK(b.talker.stack.n_embd == 2048);
    CHECK(b.talker.stack.n_ff == 6144);
    CHECK(b.talker.stack.n_layer == 28);
    CHECK(b.talker.stack.q_dim() == 2048);
    CHECK(b.predictor.stack.n_embd == 1024);
    CHECK(b.has_mtp_projection());
    REQUIRE(b.speaker_encoder.has_value());
    CHECK(b.speaker_encoder->enc_dim == 2048);
    CHECK(b.tts_model_size == "1b7");
    CHECK(parse_vocoder_config(random_vocoder_config_json("1.7b"), "<random>").samples_per_frame == 1920);
    CHECK_THROWS_WITH_AS(random_model_config_json("4b"), "unknown random model size '4b'", InputError);
}

// The bandwidth floors of qtts bench and bench_cuda_backend count these bytes. Per-layer parameters match the
// spec's §9.1 table (0.6B 15.73 M, 1.7B 50.34 M per talker layer); the KV cache is fp32 in both engines.
TEST_CASE("decode byte counts: talker step and predictor frame, 0.6B and 1.7B") {
    const ModelConfig a = parse_model_config(random_model_config_json("0.6b"), "<random 0.6b>");
    const ModelConfig b = parse_model_config(random_model_config_json("1.7b"), "<random 1.7b>");
    CHECK(stack_params(a.talker.stack) == 28 * 15730944 + 1024);
    CHECK(stack_params(b.talker.stack) == 28 * int64_t(50336000) + 2048);
    const int64_t kv_per_position = 2 * 28 * 1024 * 4;  // K and V, 8 kv heads of 128, fp32
    CHECK(talker_step_bytes(a, 2, 0) == (28 * int64_t(15730944) + 1024 + 3072 * 1024) * 2);
    CHECK(talker_step_bytes(a, 2, 100) - talker_step_bytes(a, 2, 0) == 100 * kv_per_position);
    CHECK(talker_step_bytes(b, 4, 0) == (28 * int64_t(50336000) + 2048 + 3072 * 2048) * 4);
    // 15 passes of the 5-layer predictor + one 2048-row head each + one embedding row (talker width); 1.7B also
    // streams the 2048 → 1024 input projection every pass.
    CHECK(predictor_frame_bytes(a, 2) == int64_t(2422617600));
    CHECK(predictor_frame_bytes(b, 2) == 15 * (5 * int64_t(15730944) + 1024 + 2048 * 1024 + 1024 * 2048 + 1024 + 2048) * 2);
}

TEST_CASE("config errors name the file and the field") {
    const auto j = nlohmann::json::parse(tiny_config_text());
    CHECK(error_of("{") .find("config.json: not valid JSON") == 0);
    CHECK(error_of(with(j, "/model_type", "llama")) == "config.json: field 'model_type' is 'llama'; expected 'qwen3_tts'");
    CHECK(error_of(without(j, "/talker_config", "num_hidden_layers")) ==
          "config.json: field 'talker_config.num_hidden_layers' is missing");
    CHECK(error_of(with(j, "/talker_config/hidden_size", "big")) ==
          "config.json: field 'talker_config.hidden_size' must be an integer");
    CHECK(error_of(with(j, "/talker_config/num_key_value_heads", 3)) ==
          "config.json: field 'talker_config.num_key_value_heads' (3) must divide num_attention_heads (4)");
    CHECK(error_of(with(j, "/talker_config/codec_eos_token_id", 5000)) ==
          "config.json: field 'talker_config.codec_*_id' id 5000 is outside the codec vocabulary");
    CHECK(error_of(with(j, "/talker_config/code_predictor_config/num_hidden_layers", 0)) ==
          "config.json: field 'talker_config.code_predictor_config.num_hidden_layers' must be positive, got 0");
    CHECK(error_of(with(j, "/tts_model_type", "music")).find("tts_model_type") != std::string::npos);
}

TEST_CASE("generation and vocoder configs are validated") {
    CHECK_THROWS_WITH_AS(parse_generation_config(R"({"top_p": 1.5})", "generation_config.json"),
                         "generation_config.json: field 'top_p' must be in (0, 1]", ModelError);
    CHECK(parse_generation_config(R"({"do_sample": false})", "g").do_sample == false);
    auto v = nlohmann::json::parse(test::read_file(test::tiny_model_dir() / "speech_tokenizer" / "config.json"));
    v["decoder_config"]["upsample_rates"] = {8, 5, 4, 4};
    CHECK_THROWS_WITH_AS(parse_vocoder_config(v.dump(), "st.json"),
                         doctest::Contains("must equal the product of the upsampling ratios (2560)"), ModelError);
}

TEST_CASE("a model directory without config.json or speech_tokenizer is refused clearly") {
    test::TempDir dir;
    CHECK_THROWS_WITH_AS(load_model_config(dir.path), doctest::Contains("missing config.json"), ModelError);
    std::ofstream(dir.path / "config.json") << tiny_config_text();
    CHECK_THROWS_WITH_AS(load_model_config(dir.path), doctest::Contains("missing speech_tokenizer/config.json"),
                         ModelError);
    CHECK_THROWS_WITH_AS(load_model_config(dir.path / "nope"), doctest::Contains("not a directory"), ModelError);
}

}  // namespace qtts
