// Soak test: synthesizes many utterances (mixed lengths, languages and seeds, greedy and sampled) in one
// process and reports whether host RSS and GPU memory stay flat, every error, and the latency
// distribution (first audio, total, RTF). A benchmark, not a CI test: run it on a GPU machine.
// Usage: qtts_soak [--model DIR | --random 0.6b] [--device cpu|cuda|auto] [--count N] [--max-frames N]
//                  [--seed N] [--json FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/engine.h"
#include "core/error.h"
#include "core/stats.h"
#ifdef QTTS_HAVE_CUDA
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"
#endif

namespace {

using namespace qtts;

// Resident set size of this process in MiB (Linux /proc).
double rss_mib() {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
    return -1;
}

double gpu_used_mib() {
#ifdef QTTS_HAVE_CUDA
    return double(qtts::cuda::memory_used_bytes()) / (1024.0 * 1024.0);
#else
    return -1;
#endif
}

struct Utterance {
    const char* language;
    const char* text;
};

// Short and long, several scripts, a literal special token, digits and punctuation.
constexpr Utterance kTexts[] = {
    {"english", "Hello."},
    {"english", "The quick brown fox jumps over the lazy dog, and then it runs far away into the forest."},
    {"english", "Please call me at 555-0199 before 9:30 tomorrow; it is about the <|im_end|> token."},
    {"chinese", "今天天气很好，我们去公园散步吧。"},
    {"japanese", "こんにちは、元気ですか？今日は良い天気ですね。"},
    {"korean", "안녕하세요. 만나서 반갑습니다."},
    {"german", "Guten Morgen! Wie geht es Ihnen heute?"},
    {"french", "Je voudrais un café, s'il vous plaît."},
    {"spanish", "¿Dónde está la estación de tren más cercana?"},
    {"auto", "Mixed text: 你好, world. Numbers 1, 2, 3."},
};

}  // namespace

int main(int argc, char** argv) {
    std::string model_dir, random_size = "0.6b", device_name = "auto", json_path;
    int64_t count = 1000, max_frames = 40;
    uint64_t seed = 1;
    for (int i = 1; i < argc; ++i) {
        const auto arg = [&](const char* name) { return std::strcmp(argv[i], name) == 0 && i + 1 < argc; };
        if (arg("--model")) model_dir = argv[++i];
        else if (arg("--random")) random_size = argv[++i];
        else if (arg("--device")) device_name = argv[++i];
        else if (arg("--count")) count = std::stoll(argv[++i]);
        else if (arg("--max-frames")) max_frames = std::stoll(argv[++i]);
        else if (arg("--seed")) seed = std::stoull(argv[++i]);
        else if (arg("--json")) json_path = argv[++i];
        else {
            std::fprintf(stderr, "usage: qtts_soak [--model DIR | --random 0.6b] [--device cpu|cuda|auto] "
                                 "[--count N] [--max-frames N] [--seed N] [--json FILE]\n");
            return 2;
        }
    }
    try {
#ifdef QTTS_HAVE_CUDA
        qtts::cuda::register_backend();
#endif
        const ModelOptions options{.device = parse_device(device_name)};
        const auto model = model_dir.empty() ? Model::load_random(random_size, seed, options) : Model::load(model_dir, options);
        Session session(model);
        session.warmup();
        const double rate = double(model->config().vocoder.sample_rate);
        const double rss0 = rss_mib(), gpu0 = gpu_used_mib();
        fmt::print("soak: {} utterances on {} ({}), frames 1..{} each; after warmup: RSS {:.1f} MiB, GPU {:.1f} MiB\n",
                   count, model->description(), session.backend_name(), max_frames, rss0, gpu0);

        std::vector<double> first_audio_ms, total_ms, rtf;
        std::vector<std::string> errors;
        int64_t frames = 0;
        uint64_t state = seed;
        const auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull, state >> 33; };
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < count; ++i) {
            const Utterance& u = kTexts[next() % std::size(kTexts)];
            SynthesisRequest req;
            req.text = u.text;
            req.language = u.language;
            req.seed = next();
            req.max_frames = 1 + int64_t(next() % uint64_t(max_frames));
            const bool sampled = next() % 4 != 0;
            req.talker = SamplerSettings{.do_sample = sampled, .repetition_penalty = 1.05f};
            req.predictor = SamplerSettings{.do_sample = sampled};
            req.vocoder_chunk_frames = int64_t(1) << (next() % 3);
            try {
                const SynthesisResult r = session.synthesize(req);
                frames += r.n_frames;
                first_audio_ms.push_back(r.times.first_audio_s * 1e3);
                total_ms.push_back(r.times.total_s * 1e3);
                rtf.push_back(r.audio.empty() ? 0.0 : r.times.total_s / (double(r.audio.size()) / rate));
            } catch (const Error& e) {
                errors.push_back(fmt::format("utterance {} ({}): {}", i, u.language, e.what()));
            }
            if ((i + 1) % 100 == 0)
                fmt::print("soak: {:5d} done, RSS {:.1f} MiB, GPU {:.1f} MiB, {} errors\n", i + 1, rss_mib(),
                           gpu_used_mib(), errors.size());
        }
        const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double rss1 = rss_mib(), gpu1 = gpu_used_mib();
        const auto line = [](const char* name, std::vector<double> v) {
            const Summary s = summarize(v);
            fmt::print("  {:<16} median {:8.2f}  p90 {:8.2f}  p99 {:8.2f}  max {:8.2f}\n", name, s.median, s.p90, s.p99,
                       s.max);
        };
        fmt::print("soak: {} utterances, {} frames in {:.1f} s; {} errors\n", count, frames, wall, errors.size());
        line("first audio ms", first_audio_ms);
        line("total ms", total_ms);
        line("RTF", rtf);
        fmt::print("  host RSS MiB     start {:.1f}  end {:.1f}  (change {:+.1f})\n", rss0, rss1, rss1 - rss0);
        fmt::print("  GPU memory MiB   start {:.1f}  end {:.1f}  (change {:+.1f})\n", gpu0, gpu1, gpu1 - gpu0);
        for (const auto& e : errors) fmt::print("  error: {}\n", e);
        if (!json_path.empty()) {
            nlohmann::json j = {{"count", count}, {"frames", frames}, {"wall_s", wall}, {"errors", errors},
                                {"rss_mib", {rss0, rss1}}, {"gpu_mib", {gpu0, gpu1}},
                                {"first_audio_ms", first_audio_ms}, {"total_ms", total_ms}, {"rtf", rtf},
                                {"backend", session.backend_name()}, {"model", model->description()}};
            std::ofstream(json_path) << j.dump(1) << "\n";
        }
        return errors.empty() ? 0 : 1;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return int(e.exit_code());
    }
}
