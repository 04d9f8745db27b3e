// Shared helpers for the tests: paths to checked-in data and fixture loading.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/engine.h"

namespace qtts::test {

inline std::filesystem::path data_dir() { return QTTS_TEST_DATA; }
inline std::filesystem::path tiny_model_dir() { return data_dir() / "tiny"; }

inline nlohmann::json load_json(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    return nlohmann::json::parse(in);
}

inline std::string read_file(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

// The official fixtures' settings: greedy talker and predictor, no repetition penalty; HF max_new_tokens = 32
// gives 31 frames.
inline SynthesisRequest fixture_request(const nlohmann::json& item, int64_t max_frames = 31) {
    SynthesisRequest r;
    r.text = item["text"].get<std::string>();
    r.language = item["language"].get<std::string>();
    r.talker = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
    r.predictor = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
    r.max_frames = max_frames;
    return r;
}

// A fixture item's codes [[16 ints], ...] flattened frame-major, as SynthesisResult::codes holds them.
inline std::vector<int32_t> fixture_codes(const nlohmann::json& item) {
    std::vector<int32_t> codes;
    for (const auto& frame : item["codes"])
        for (const auto& c : frame) codes.push_back(c.get<int32_t>());
    return codes;
}

// A fresh scratch directory under the build's temp area, removed when the object dies.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("qtts-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    static int& counter() {
        static int n = 0;
        return n;
    }
};

}  // namespace qtts::test
