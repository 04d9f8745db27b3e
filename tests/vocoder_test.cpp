// Vocoder (speech-tokenizer decoder) on the tiny checkpoint: the full pass against the official fp32 decoder
// output stored in the fixtures, streaming in chunks against the full pass (bit-identical), a stream longer
// than the attention window, code range errors, and a wrong-shape weight.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/vocoder.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path kData = QTTS_TEST_DATA;
const fs::path kTinyTokenizer = kData / "tiny" / "speech_tokenizer";

std::string read_text(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot read " << p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

qtts::VocoderConfig tiny_config() {
    return qtts::parse_vocoder_config(read_text(kTinyTokenizer / "config.json"), "tiny config.json");
}

const qtts::Vocoder& tiny_vocoder() {
    static const qtts::TensorStore store = qtts::TensorStore::open_in(kTinyTokenizer);
    static const qtts::Vocoder vocoder = qtts::Vocoder::load(store, tiny_config());
    return vocoder;
}

// Frame-major codes [frames * 16] from a fixture item's [frames][16].
std::vector<int32_t> flat_codes(const json& frames) {
    std::vector<int32_t> codes;
    for (const json& frame : frames)
        for (const json& c : frame) codes.push_back(c.get<int32_t>());
    return codes;
}

std::vector<int32_t> random_codes(int64_t n_frames, const qtts::VocoderConfig& c, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, int32_t(c.codebook_size) - 1);
    std::vector<int32_t> codes(size_t(n_frames * c.num_quantizers));
    for (int32_t& v : codes) v = dist(rng);
    return codes;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0.0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(double(a[i]) - double(b[i])));
    return m;
}

double rms(const std::vector<float>& a) {
    double s = 0.0;
    for (float v : a) s += double(v) * double(v);
    return std::sqrt(s / double(a.size()));
}

// The reference: one pass over all frames (no internal chunking).
std::vector<float> single_pass(const qtts::Vocoder& vocoder, const std::vector<int32_t>& codes) {
    qtts::VocoderStream stream(vocoder, int64_t(1) << 30);
    std::vector<float> out;
    stream.push(codes, out);
    return out;
}

std::vector<float> chunked(const qtts::Vocoder& vocoder, const std::vector<int32_t>& codes, int64_t chunk) {
    const int64_t q = vocoder.config().num_quantizers;
    const int64_t n_frames = int64_t(codes.size()) / q;
    qtts::VocoderStream stream(vocoder);
    std::vector<float> out;
    for (int64_t f = 0; f < n_frames; f += chunk) {
        const int64_t n = std::min(chunk, n_frames - f);
        const size_t before = out.size();
        stream.push(std::span<const int32_t>(codes).subspan(size_t(f * q), size_t(n * q)), out);
        CHECK(int64_t(out.size() - before) == n * vocoder.config().samples_per_frame);
        CHECK(stream.frames_done() == f + n);
    }
    return out;
}

}  // namespace

TEST_CASE("vocoder: full pass matches the official fp32 decoder on the tiny fixtures") {
    const qtts::Vocoder& vocoder = tiny_vocoder();
    for (const std::string name : {"tiny_english.json", "tiny_auto.json"}) {
        const json fixture = json::parse(read_text(kData / "fixtures" / name));
        int index = 0;
        for (const json& item : fixture["items"]) {
            CAPTURE(name);
            CAPTURE(index);
            const std::vector<int32_t> codes = flat_codes(item["codes"]);
            const auto expected = item["wav"].get<std::vector<float>>();
            const double wav_rms = item["wav_rms"].get<double>();
            const std::vector<float> wav = single_pass(vocoder, codes);
            REQUIRE(int64_t(wav.size()) == int64_t(item["codes"].size()) * 1920);
            REQUIRE(wav.size() == expected.size());
            const double err = max_abs_diff(wav, expected);
            MESSAGE(name << " item " << index << ": max |err| = " << err << " = " << err / wav_rms
                         << " x wav_rms (rms " << wav_rms << ")");
            CHECK(err <= 1e-3 * wav_rms);
            CHECK(vocoder.decode(codes) == wav);  // the convenience path (internally chunked) is the same
            ++index;
        }
    }
}

TEST_CASE("vocoder: streaming in chunks of 1, 3 and 7 frames is bit-identical to one pass") {
    const qtts::Vocoder& vocoder = tiny_vocoder();
    const json fixture = json::parse(read_text(kData / "fixtures" / "tiny_english.json"));
    const std::vector<int32_t> codes = flat_codes(fixture["items"][0]["codes"]);
    const std::vector<float> full = single_pass(vocoder, codes);
    for (int64_t chunk : {1, 3, 7}) {
        CAPTURE(chunk);
        const std::vector<float> streamed = chunked(vocoder, codes, chunk);
        REQUIRE(streamed.size() == full.size());
        CHECK(max_abs_diff(streamed, full) == 0.0);
    }
}

TEST_CASE("vocoder: a stream longer than the attention window equals one pass") {
    const qtts::Vocoder& vocoder = tiny_vocoder();
    const qtts::VocoderConfig& c = vocoder.config();
    const int64_t n_frames = 150;
    REQUIRE(n_frames > 2 * c.sliding_window);
    const std::vector<int32_t> codes = random_codes(n_frames, c, 42);
    const std::vector<float> full = single_pass(vocoder, codes);
    REQUIRE(int64_t(full.size()) == n_frames * c.samples_per_frame);
    CHECK(rms(full) > 0.0);
    for (int64_t chunk : {1, 7, 80}) {
        CAPTURE(chunk);
        CHECK(max_abs_diff(chunked(vocoder, codes, chunk), full) == 0.0);
    }
    CHECK(vocoder.decode(codes) == full);

    // reset() starts a new utterance: the same frames give the same samples again.
    qtts::VocoderStream stream(vocoder);
    std::vector<float> first, second;
    stream.push(std::span<const int32_t>(codes).first(size_t(5 * c.num_quantizers)), first);
    stream.reset();
    CHECK(stream.frames_done() == 0);
    stream.push(std::span<const int32_t>(codes).first(size_t(5 * c.num_quantizers)), second);
    CHECK(first == second);
}

TEST_CASE("vocoder: a code out of range is an InputError naming frame and codebook") {
    const qtts::Vocoder& vocoder = tiny_vocoder();
    const qtts::VocoderConfig& c = vocoder.config();
    std::vector<int32_t> codes = random_codes(4, c, 7);
    qtts::VocoderStream stream(vocoder);
    std::vector<float> out;
    stream.push(std::span<const int32_t>(codes).first(size_t(c.num_quantizers)), out);  // frame 0 is fine

    codes[size_t(2 * c.num_quantizers + 5)] = int32_t(c.codebook_size);
    try {
        stream.push(std::span<const int32_t>(codes).subspan(size_t(c.num_quantizers)), out);
        FAIL("no exception");
    } catch (const qtts::InputError& e) {
        const std::string what = e.what();
        CAPTURE(what);
        CHECK(what.find("frame 2") != std::string::npos);  // absolute frame in the stream, not in this push
        CHECK(what.find("codebook 5") != std::string::npos);
        CHECK(what.find("2048") != std::string::npos);
    }
    CHECK(stream.frames_done() == 1);  // nothing consumed
    CHECK(out.size() == size_t(c.samples_per_frame));

    codes[size_t(2 * c.num_quantizers + 5)] = -1;
    CHECK_THROWS_AS(vocoder.decode(codes), qtts::InputError);
    codes.pop_back();  // not a whole frame
    CHECK_THROWS_AS(vocoder.decode(codes), qtts::InputError);
}

TEST_CASE("vocoder: a weight with the wrong shape is a ModelError naming the tensor") {
    // Rewrite the tiny checkpoint's header so one tensor claims another shape with the same byte count.
    const std::string bytes = read_text(kTinyTokenizer / "model.safetensors");
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data(), 8);
    json header = json::parse(bytes.substr(8, header_len));
    const std::string victim = "decoder.pre_conv.conv.weight";
    REQUIRE(header.contains(victim));
    header[victim]["shape"] = {32, 96, 1};
    std::string new_header = header.dump();
    new_header.append((8 - new_header.size() % 8) % 8, ' ');
    const fs::path dir = fs::temp_directory_path() / "qtts_vocoder_test_bad_shape";
    fs::create_directories(dir);
    {
        std::ofstream out(dir / "model.safetensors", std::ios::binary);
        const uint64_t len = new_header.size();
        out.write(reinterpret_cast<const char*>(&len), 8);
        out << new_header;
        out.write(bytes.data() + 8 + header_len, std::streamsize(bytes.size() - 8 - header_len));
    }
    const qtts::TensorStore store = qtts::TensorStore::open_in(dir);
    try {
        qtts::Vocoder::load(store, tiny_config());
        FAIL("no exception");
    } catch (const qtts::ModelError& e) {
        const std::string what = e.what();
        CAPTURE(what);
        CHECK(what.find(victim) != std::string::npos);
    }
    fs::remove_all(dir);
}
