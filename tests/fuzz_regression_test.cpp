// Inputs found by the fuzz targets (fuzz/, scripts/fuzz.sh), each reduced to what triggered the finding.
// Under scripts/sanitize.sh (ASan + UBSan, no recovery) these also prove the undefined behaviour is gone.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "core/dtype.h"
#include "core/error.h"
#include "core/model_config.h"
#include "core/parity.h"
#include "core/safetensors.h"
#include "core/wav.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

std::vector<uint8_t> safetensors_image(const std::string& header, const std::vector<uint8_t>& data) {
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(header.size()) >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

const ModelConfig& tiny_config() {
    static const ModelConfig c = load_model_config(test::tiny_model_dir());
    return c;
}

std::string reference_error(const std::string& text) {
    try {
        (void)parse_reference(text, "ref.json", tiny_config());
    } catch (const InputError& e) {
        return e.what();
    }
    return "no error";
}

}  // namespace

// fuzz_safetensors: an F64 tensor at data offset 4 (after an F16 pair) was read through a misaligned
// `const double*` (UBSan: misaligned load). Safetensors does not promise alignment.
TEST_CASE("fuzz regression: tensors at unaligned offsets convert exactly") {
    std::vector<uint8_t> data = {0x00, 0x3c, 0x00, 0xc0};  // F16 [1, -2]
    double d = 1.5;
    const auto* db = reinterpret_cast<const uint8_t*>(&d);
    data.insert(data.end(), db, db + 8);                    // F64 at offset 4
    data.push_back(7);                                      // U8 at offset 12
    data.insert(data.end(), {0x80, 0x3f, 0x00, 0xc0});      // BF16 [1, -2] at odd offset 13
    const auto bytes = safetensors_image(
        R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F64","shape":[1],"data_offsets":[4,12]},)"
        R"("c":{"dtype":"U8","shape":[1],"data_offsets":[12,13]},"d":{"dtype":"BF16","shape":[2],"data_offsets":[13,17]}})",
        data);
    test::TempDir dir;
    std::ofstream(dir.path / "u.safetensors", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    const auto store = TensorStore::open(dir.path / "u.safetensors");
    CHECK(store.load("a", {2}).data == std::vector<float>{1.0f, -2.0f});
    CHECK(store.load("b", {1}).data == std::vector<float>{1.5f});
    CHECK(store.load("d", {2}).data == std::vector<float>{1.0f, -2.0f});
}

// fuzz_safetensors: an F32 tensor of shape [0, 5] made convert_to_f32 call memcpy with null pointers.
TEST_CASE("fuzz regression: an empty tensor converts without touching memory") {
    const auto bytes = safetensors_image(R"({"e":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}})", {});
    const auto tensors = SafetensorsFile::parse(bytes.data(), bytes.size(), "e.safetensors");
    REQUIRE(tensors.size() == 1);
    CHECK(tensors[0].shape == Shape{0, 5});
    convert_to_f32(DType::f32, nullptr, nullptr, 0);
    convert_to_f32(DType::bf16, nullptr, nullptr, 0);
}

// fuzz_parity: input_ids holding -4e+52 went through nlohmann's get<int32_t>() (UBSan: float-cast-overflow).
TEST_CASE("fuzz regression: reference integers must be integers in range") {
    const std::string head = R"({"items":[{"text":"Hi","codes":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]],"input_ids":)";
    const std::string expected = "ref.json: item 0: field 'input_ids' must hold integers in [-2147483648, 2147483647]";
    CHECK(reference_error(head + "[151644, -4e+52]}]}") == expected);
    CHECK(reference_error(head + "[4294967296]}]}") == expected);
    CHECK(reference_error(head + "[-2147483649]}]}") == expected);
    CHECK(reference_error(head + "[1.5]}]}") == expected);
    CHECK(reference_error(head + "[2147483647, -2147483648]}]}") == "no error");
}

// fuzz_parity (CI run, 32 s): "non_streaming_text": 1 went through json::value<bool>(), whose type_error
// escaped parse_reference as a non-qtts exception (std::terminate in the fuzzer, a crash in `qtts parity`).
TEST_CASE("fuzz regression: reference fields of the wrong type are InputErrors") {
    const std::string head = R"({"items":[{"text":"Hi","codes":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]],"input_ids":[1])";
    CHECK(reference_error(head + R"(,"non_streaming_text":1}]})") ==
          "ref.json: item 0: field 'non_streaming_text' has the wrong type");
    CHECK(reference_error(head + R"(,"non_streaming_text":"yes"}]})") ==
          "ref.json: item 0: field 'non_streaming_text' has the wrong type");
    CHECK(reference_error(head + R"(,"non_streaming_text":true}]})") == "no error");
    // Float fields: a value beyond float range would silently become inf.
    CHECK(reference_error(head + R"(,"wav":[0.5, 1e300]}]})") == "ref.json: item 0: field 'wav' must hold finite 32-bit numbers");
    CHECK(reference_error(head + R"(,"wav":[-3.4e38, 3.4e38]}]})") == "no error");
}

// The harness's one-line-message check (fuzz/fuzz_util.h) on a hand-made input: a tensor or language name
// holding a newline was copied raw into the error message, splitting the `error:` line.
TEST_CASE("fuzz regression: names with control characters are refused with an escaped one-line message") {
    const auto bytes = safetensors_image(R"({"a\nb":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", {0, 0, 0, 0});
    CHECK_THROWS_WITH_AS(SafetensorsFile::parse(bytes.data(), bytes.size(), "n.safetensors"),
                         R"(n.safetensors: tensor name "a\nb" holds control characters)", ModelError);
    auto j = test::load_json(test::tiny_model_dir() / "config.json");
    j["talker_config"]["codec_language_id"]["a\nb"] = "oops";
    CHECK_THROWS_WITH_AS(parse_model_config(j.dump(), "config.json"),
                         R"(config.json: field 'talker_config.codec_language_id' has a name with control characters: "a\nb")",
                         ModelError);
}

// fuzz_config (CI run, 60 s): a config string value holding a newline was quoted raw in the error message.
// qtts::Error now writes control characters as escapes in every message and hint.
TEST_CASE("fuzz regression: config values with control characters are quoted on one line") {
    const std::string config = R"({"model_type": "qwen3_tts_tok\nizer_12hz", "decoder_config": {}})";
    CHECK_THROWS_WITH_AS(parse_vocoder_config(config, "config.json"),
                         R"(config.json: field 'model_type' is 'qwen3_tts_tok\nizer_12hz'; expected 'qwen3_tts_tokenizer_12hz')",
                         ModelError);
    CHECK(std::string(InputError("a\tb\x1b[31m", "c\nd").what()) == R"(a\tb\x1b[31m)");
    CHECK(InputError("a", "c\nd").hint() == R"(c\nd)");
}

// fuzz_wav: a corrupt Ogg/Vorbis setup header (found from the tone.ogg seed). libsndfile refuses it; its
// vorbis reader leaks the codec setup on that path, which scripts/lsan.supp documents and suppresses.
TEST_CASE("fuzz regression: a corrupt Ogg/Vorbis stream is a one-line InputError") {
    const std::string bytes = test::read_file(test::data_dir() / "fuzz" / "ogg_vorbis_bad_setup.ogg");
    REQUIRE(bytes.size() == 3551);
    const std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    CHECK_THROWS_WITH_AS(read_audio(span, "bad.ogg"), doctest::Contains("cannot read audio bad.ogg: "), InputError);
}

TEST_CASE("read_audio from memory equals reading the file") {
    for (const char* name : {"pcm16_stereo.wav", "float32.wav", "tone.flac"}) {
        const auto path = test::data_dir().parent_path().parent_path() / "fuzz" / "corpus" / "wav" / name;
        const std::string bytes = test::read_file(path);
        REQUIRE(!bytes.empty());
        const AudioData from_file = read_audio(path);
        const AudioData from_memory =
            read_audio(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), name);
        CHECK(from_memory.sample_rate == from_file.sample_rate);
        CHECK(from_memory.channels == from_file.channels);
        CHECK(from_memory.samples == from_file.samples);
        CHECK(from_file.samples.size() >= 32);
    }
    CHECK_THROWS_WITH_AS(read_audio(std::span<const uint8_t>(), "empty.wav"),
                         doctest::Contains("cannot read audio empty.wav: "), InputError);
}

}  // namespace qtts
