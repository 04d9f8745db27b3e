// Checkpoint validation end to end: each test copies tests/data/tiny into a temp dir, breaks one thing, and
// loads it with Model::load. Every broken checkpoint must give a ModelError (exit code 4) whose one-line
// message names the file and the tensor or field at fault; nothing may allocate what a header claims.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "core/engine.h"
#include "core/error.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A writable copy of the tiny checkpoint.
struct Checkpoint {
    test::TempDir tmp;
    fs::path dir = tmp.path / "m";

    Checkpoint() {
        fs::copy(test::tiny_model_dir(), dir, fs::copy_options::recursive);
        for (const auto& e : fs::recursive_directory_iterator(dir))
            fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
    }
    fs::path weights() const { return dir / "model.safetensors"; }

    // model.safetensors as header JSON text + data section.
    std::pair<std::string, std::string> split() const {
        const std::string bytes = test::read_file(weights());
        uint64_t n = 0;
        std::memcpy(&n, bytes.data(), 8);
        return {bytes.substr(8, n), bytes.substr(8 + n)};
    }
    void write(const std::string& header, const std::string& data, uint64_t claimed_len) const {
        std::string bytes(8, '\0');
        for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char(claimed_len >> (8 * i));
        bytes += header;
        bytes += data;
        std::ofstream(weights(), std::ios::binary | std::ios::trunc) << bytes;
    }
    // Rewrites the header through `edit`; the data section stays (offsets are relative to it).
    void edit_header(const std::function<void(json&)>& edit) const {
        auto [header, data] = split();
        json h = json::parse(header);
        edit(h);
        const std::string text = h.dump();
        write(text, data, text.size());
    }
    void edit_json(const fs::path& file, const std::function<void(json&)>& edit) const {
        json j = test::load_json(file);
        edit(j);
        std::ofstream(file, std::ios::trunc) << j.dump();
    }
};

// The ModelError message of loading `dir` ("no error" when it loads); warnings are collected in `warnings`.
std::string load_error(const fs::path& dir, std::vector<std::string>* warnings = nullptr) {
    try {
        ModelOptions options;
        options.warn = [&](const std::string& w) {
            if (warnings) warnings->push_back(w);
        };
        (void)Model::load(dir, options);
    } catch (const ModelError& e) {
        const std::string what = e.what();
        CHECK_MESSAGE(what.find('\n') == std::string::npos, "multi-line message: ", what);
        CHECK(e.exit_code() == ExitCode::bad_model);
        return what;
    }
    return "no error";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* const kNorm = "talker.model.norm.weight";                                       // BF16 [64]
const char* const kNorm2 = "talker.code_predictor.model.layers.0.input_layernorm.weight";   // BF16 [64]

}  // namespace

TEST_CASE("validation: a header length beyond the file, or absurd, names the file and allocates nothing") {
    Checkpoint c;
    auto [header, data] = c.split();
    const uint64_t size = 8 + header.size() + data.size();
    c.write(header, data, size);  // one byte more than the rest of the file could hold
    CHECK(load_error(c.dir) == fmt::format("{}: header length {} does not fit in a file of {} bytes (truncated?)",
                                           c.weights().string(), size, size));
    c.write(header, data, uint64_t(1) << 63);
    CHECK(has(load_error(c.dir), c.weights().string() + ": header length 9223372036854775808 does not fit"));
}

TEST_CASE("validation: offsets out of range or overlapping name the file and the tensors") {
    Checkpoint c;
    const std::string data = c.split().second;
    c.edit_header([&](json& h) { h[kNorm]["data_offsets"] = {data.size() - 64, data.size() + 64}; });
    CHECK(load_error(c.dir) ==
          fmt::format("{}: tensor '{}' data_offsets [{}, {}] lie outside the {}-byte data section", c.weights().string(),
                      kNorm, data.size() - 64, data.size() + 64, data.size()));

    Checkpoint d;
    d.edit_header([&](json& h) { h[kNorm2]["data_offsets"] = h[kNorm]["data_offsets"]; });
    const std::string err = load_error(d.dir);
    CHECK(has(err, d.weights().string() + ": tensors '"));
    CHECK(has(err, kNorm));
    CHECK(has(err, kNorm2));
    CHECK(has(err, "overlap"));
}

TEST_CASE("validation: dtype, shape and byte count must agree") {
    Checkpoint c;
    c.edit_header([&](json& h) { h[kNorm]["dtype"] = "F32"; });  // 128 bytes stored, F32 [64] needs 256
    CHECK(load_error(c.dir) == fmt::format("{}: tensor '{}' is 128 bytes but F32 [64] needs 256", c.weights().string(), kNorm));

    Checkpoint s;
    s.edit_header([&](json& h) { h[kNorm]["shape"] = {32, 2}; });  // same byte count, wrong shape
    CHECK(load_error(s.dir) ==
          fmt::format("{}: tensor '{}' has wrong shape; expected [64], got [32, 2]", s.weights().string(), kNorm));

    Checkpoint i;
    i.edit_header([&](json& h) { h[kNorm]["dtype"] = "I16"; });  // same byte count, not a float
    CHECK(load_error(i.dir) ==
          fmt::format("{}: tensor '{}' has dtype I16; expected a floating type", i.weights().string(), kNorm));
}

TEST_CASE("validation: a tensor named twice in the header is refused") {
    Checkpoint c;
    auto [header, data] = c.split();
    const json h = json::parse(header);
    // Same name again, pointing at another tensor's bytes of equal size: JSON parsers would keep either.
    const std::string dup = fmt::format("{{\"{}\":{},", kNorm, h[kNorm2].dump());
    header = dup + header.substr(1);
    c.write(header, data, header.size());
    CHECK(load_error(c.dir) == fmt::format("{}: header names tensor '{}' twice", c.weights().string(), kNorm));
}

TEST_CASE("validation: truncated and zero-byte weight files") {
    Checkpoint c;
    const auto size = fs::file_size(c.weights());
    fs::resize_file(c.weights(), size - 100);
    const std::string err = load_error(c.dir);
    CHECK(has(err, c.weights().string() + ": tensor 'talker.text_projection.linear_fc2.weight' data_offsets"));
    CHECK(has(err, "lie outside"));

    fs::resize_file(c.weights(), 0);
    CHECK(load_error(c.dir) ==
          c.weights().string() + ": file is 0 bytes, too short for a safetensors header");

    Checkpoint v;  // the vocoder's weights are checked the same way
    const fs::path vw = v.dir / "speech_tokenizer" / "model.safetensors";
    fs::resize_file(vw, 4);
    CHECK(load_error(v.dir) == vw.string() + ": file is 4 bytes, too short for a safetensors header");
}

TEST_CASE("validation: a missing tensor is named with its file") {
    Checkpoint c;
    c.edit_header([&](json& h) { h.erase("talker.codec_head.weight"); });
    CHECK(load_error(c.dir) == c.weights().string() + ": missing tensor 'talker.codec_head.weight'");
}

TEST_CASE("validation: an unknown extra tensor is reported once by name and the model loads") {
    Checkpoint c;
    auto [header, data] = c.split();
    json h = json::parse(header);
    h["talker.mystery.weight"] = {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {data.size(), data.size() + 8}}};
    const std::string text = h.dump();
    c.write(text, data + std::string(8, '\0'), text.size());
    std::vector<std::string> warnings;
    CHECK(load_error(c.dir, &warnings) == "no error");
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0] == c.weights().string() + ": 1 unknown tensor ignored: 'talker.mystery.weight'");

    // The unmodified checkpoint warns about nothing (its speaker-encoder tensors are known).
    warnings.clear();
    CHECK(load_error(test::tiny_model_dir(), &warnings) == "no error");
    CHECK(warnings.empty());
}

TEST_CASE("validation: a config that contradicts the weights names the tensor and the weights file") {
    Checkpoint c;
    c.edit_json(c.dir / "config.json", [](json& j) {
        j["talker_config"]["hidden_size"] = 128;
        j["speaker_encoder_config"]["enc_dim"] = 128;
    });
    CHECK(load_error(c.dir) == c.weights().string() +
                                   ": tensor 'talker.text_projection.linear_fc2.weight' has wrong shape; "
                                   "expected [128, 16], got [64, 16]");

    Checkpoint l;
    l.edit_json(l.dir / "config.json", [](json& j) { j["talker_config"]["num_hidden_layers"] = 3; });
    CHECK(has(load_error(l.dir), l.weights().string() + ": missing tensor 'talker.model.layers.2."));

    Checkpoint v;
    v.edit_json(v.dir / "speech_tokenizer" / "config.json", [](json& j) { j["decoder_config"]["codebook_size"] = 4096; });
    CHECK(has(load_error(v.dir), (v.dir / "speech_tokenizer" / "model.safetensors").string() +
                                     ": tensor 'decoder.quantizer.rvq_first.vq.layers.0._codebook.embedding_sum' "
                                     "has wrong shape; expected [4096, "));
}

TEST_CASE("validation: absurd sizes in a header or config fail fast without allocating them") {
    Checkpoint c;
    // 2^40 × 2^40 bf16: the byte count overflows 64 bits.
    c.edit_header([&](json& h) { h[kNorm]["shape"] = {uint64_t(1) << 40, uint64_t(1) << 40}; });
    CHECK(load_error(c.dir) ==
          fmt::format("{}: tensor '{}' shape [1099511627776, 1099511627776] overflows", c.weights().string(), kNorm));

    Checkpoint d;  // a large claimed shape with a small byte range
    d.edit_header([&](json& h) { h[kNorm]["shape"] = {uint64_t(1) << 50}; });
    CHECK(has(load_error(d.dir), fmt::format("{}: tensor '{}' is 128 bytes but BF16 [1125899906842624] needs",
                                             d.weights().string(), kNorm)));

    Checkpoint v;  // a config size that would make the vocoder reserve petabytes
    const fs::path vc = v.dir / "speech_tokenizer" / "config.json";
    const json original = test::load_json(vc);
    v.edit_json(vc, [](json& j) { j["decoder_config"]["codebook_size"] = int64_t(1) << 40; });
    CHECK(load_error(v.dir) ==
          vc.string() + ": field 'decoder_config.codebook_size' must be at most 16777216, got 1099511627776");
    v.edit_json(vc, [&](json& j) { j = original; });
    // Ratios whose product overflows 64 bits, and more decoder blocks than decoder_dim has bits.
    v.edit_json(vc, [](json& j) { j["decoder_config"]["upsample_rates"] = {1 << 20, 1 << 20, 1 << 20, 1 << 20}; });
    CHECK(load_error(v.dir) == vc.string() + ": field 'decoder_config.upsample_rates' multiply to more than 16777216");
    v.edit_json(vc, [](json& j) {
        j["decoder_config"]["upsample_rates"] = std::vector<int>(70, 1);
        j["decode_upsample_rate"] = 4;
    });
    CHECK(load_error(v.dir) ==
          vc.string() + ": field 'decoder_config.decoder_dim' is too small for the number of decoder blocks");

    Checkpoint t;
    const fs::path tc = t.dir / "config.json";
    t.edit_json(tc, [](json& j) { j["talker_config"]["vocab_size"] = int64_t(1) << 50; });
    CHECK(load_error(t.dir) ==
          tc.string() + ": field 'talker_config.vocab_size' must be at most 16777216, got 1125899906842624");
}

TEST_CASE("validation: a model directory without its tokenizer files names the missing file") {
    for (const char* file : {"vocab.json", "merges.txt"}) {
        Checkpoint c;
        fs::remove(c.dir / file);
        CHECK(load_error(c.dir) == fmt::format("tokenizer file not found: {}", (c.dir / file).string()));
    }
}

TEST_CASE("validation: the qtts binary exits 4 with one error line for a broken checkpoint") {
    Checkpoint c;
    c.edit_header([&](json& h) { h.erase(kNorm); });
    test::TempDir out;
    const std::string cmd = fmt::format("{} --model '{}' speak hi --max-frames 2 -o '{}' 2>'{}'", QTTS_BINARY,
                                        c.dir.string(), (out.path / "x.wav").string(), (out.path / "err").string());
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 4);
    const std::string err = test::read_file(out.path / "err");
    CHECK(err.find(fmt::format("error: {}: missing tensor '{}'\nhint: ", c.weights().string(), kNorm)) == 0);
    CHECK_FALSE(fs::exists(out.path / "x.wav"));
}

TEST_CASE("validation: the qtts binary warns on stderr about an unknown tensor and still speaks") {
    Checkpoint c;
    auto [header, data] = c.split();
    json h = json::parse(header);
    h["talker.extra_head.weight"] = {{"dtype", "BF16"}, {"shape", {4}}, {"data_offsets", {data.size(), data.size() + 8}}};
    const std::string text = h.dump();
    c.write(text, data + std::string(8, '\0'), text.size());
    test::TempDir out;
    const std::string cmd = fmt::format("{} --model '{}' speak hi --max-frames 2 -o '{}' 2>'{}'", QTTS_BINARY,
                                        c.dir.string(), (out.path / "x.wav").string(), (out.path / "err").string());
    const int status = std::system(cmd.c_str());
    REQUIRE(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    const std::string err = test::read_file(out.path / "err");
    const std::string warning =
        fmt::format("warning: {}: 1 unknown tensor ignored: 'talker.extra_head.weight'\n", c.weights().string());
    CHECK(has(err, warning));
    CHECK(err.find(warning) == err.rfind(warning));  // once
    CHECK(fs::exists(out.path / "x.wav"));
}

}  // namespace qtts
