// `qtts bench`: time to first PCM, real-time factor and per-stage costs over repeated runs of a fixed frame
// count (EOS ignored so runs are comparable). Markdown table on stdout; --json FILE keeps every raw sample.
// Without a model it runs random weights of the real 0.6B architecture and says so loudly.
#include <memory>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/costs.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/random_model.h"
#include "core/stats.h"

#ifndef QTTS_GIT_REVISION
#define QTTS_GIT_REVISION "unknown"
#endif

namespace qtts::cli {

namespace {

struct BenchOptions {
    std::string text = "The quick brown fox jumps over the lazy dog, and then it runs far away.";
    std::string json_out, random_size = "0.6b";
    bool random_weights = false, greedy = false, ramp = false, host_loop = false;
    int64_t frames = 20, reps = 5, warmup = 1, chunk_frames = 1;
    uint64_t seed = 0;
    double peak_gbps = 0;
};

struct Metric {
    const char* name;
    const char* unit;
    std::vector<double> samples;
};

// Known HBM peaks (GB/s) by device name, for the % of the bandwidth floor; --peak-gbps overrides.
double known_peak_gbps(const std::string& device) {
    if (device.find("H200") != std::string::npos) return 4800;
    if (device.find("H100") != std::string::npos) return device.find("PCIe") != std::string::npos ? 2000 : 3350;
    if (device.find("5090") != std::string::npos) return 1792;
    return 0;
}

std::shared_ptr<const Model> load_bench_model(const CommonOptions& common, const BenchOptions& o) {
    const Device device = parse_device(common.device);
    if (!o.random_weights) {
        try {
            return Model::load(resolve_model_dir(common), {.device = device});
        } catch (const InputError&) {
            if (!common.model.empty()) throw;  // an explicit --model that fails is an error, not a fallback
        }
    }
    fmt::print(stderr, "qtts bench: RANDOM WEIGHTS of the real {} architecture: timings are valid, audio is noise\n",
               o.random_size);
    return Model::load_random(o.random_size, o.seed, {.device = device});
}

void run_bench(const CommonOptions& common, const BenchOptions& o) {
    if (o.frames < 1 || o.reps < 1 || o.warmup < 0) throw InputError("--frames and --reps must be >= 1, --warmup >= 0");
    auto model = load_bench_model(common, o);
    Session session(model);
    const ModelConfig& c = model->config();
    SynthesisRequest req;
    req.text = o.text;
    req.language = "auto";
    req.max_frames = o.frames;
    req.ignore_eos = true;
    req.seed = o.seed;
    req.vocoder_chunk_frames = o.chunk_frames;
    req.vocoder_ramp = o.ramp;
    req.host_frame_loop = o.host_loop;
    if (o.greedy) {
        req.talker = SamplerSettings{.do_sample = false, .repetition_penalty = 1.05f};
        req.predictor = SamplerSettings{.do_sample = false};
    }
    for (int64_t i = 0; i < o.warmup; ++i) session.synthesize(req);

    std::vector<Metric> m = {{"time to first audio", "ms", {}},    {"real-time factor", "", {}},
                             {"frames per second", "1/s", {}},     {"tokenize", "ms", {}},
                             {"text projection", "ms", {}},        {"prefill", "ms", {}},
                             {"talker step", "ms", {}},            {"code predictor / frame", "ms", {}},
                             {"vocoder / frame", "ms", {}},        {"host overhead / frame", "ms", {}},
                             {"total", "ms", {}}};
    // Time to first audio, split by stage (the stage times as they stood at the first delivery).
    std::vector<Metric> first = {{"first audio: tokenize", "ms", {}},       {"first audio: text projection", "ms", {}},
                                 {"first audio: prefill", "ms", {}},        {"first audio: talker steps", "ms", {}},
                                 {"first audio: code predictor", "ms", {}}, {"first audio: vocoder", "ms", {}},
                                 {"first audio: host", "ms", {}}};
    int64_t prompt_len = 0;
    bool device_loop = false;
    for (int64_t r = 0; r < o.reps; ++r) {
        if (g_signal.load()) throw Interrupted("interrupted");
        const SynthesisResult res = session.synthesize(req);
        device_loop = res.device_frame_loop;
        const StageTimes& t = res.times;
        const double audio_s = double(res.audio.size()) / double(c.vocoder.sample_rate);
        const double frames = double(res.n_frames);
        const double stages = t.tokenize_s + t.text_s + t.prefill_s + t.talker_s + t.predictor_s + t.vocoder_s;
        prompt_len = int64_t(res.text_ids.size());
        const double sample[] = {t.first_audio_s * 1e3,  t.total_s / audio_s,
                                 frames / t.total_s,     t.tokenize_s * 1e3,
                                 t.text_s * 1e3,         t.prefill_s * 1e3,
                                 t.talker_steps ? t.talker_s * 1e3 / double(t.talker_steps) : 0.0,
                                 t.predictor_s * 1e3 / frames,
                                 t.vocoder_s * 1e3 / frames,
                                 (t.total_s - stages) * 1e3 / frames,
                                 t.total_s * 1e3};
        QTTS_CHECK(m.size() == std::size(sample), "bench: {} metrics, {} samples", m.size(), std::size(sample));
        for (size_t i = 0; i < m.size(); ++i) m[i].samples.push_back(sample[i]);
        const StageTimes& f = res.first_audio_times;
        const double parts[] = {f.tokenize_s, f.text_s, f.prefill_s, f.talker_s, f.predictor_s, f.vocoder_s};
        double host = f.total_s;
        for (size_t i = 0; i < std::size(parts); ++i) {
            first[i].samples.push_back(parts[i] * 1e3);
            host -= parts[i];
        }
        first.back().samples.push_back(host * 1e3);
    }

    // Bandwidth: bytes each stage must stream per step vs the time it took.
    const bool gpu = model->device() == Device::cuda;
    const int64_t weight_bytes = gpu ? 2 : 4;  // bf16 on the GPU; the CPU reference streams fp32
    const int64_t context = prompt_len + 10 + o.frames / 2;
    const double talker_gb = double(talker_step_bytes(c, weight_bytes, context)) / 1e9;
    const double predictor_gb = double(predictor_frame_bytes(c, weight_bytes)) / 1e9;
    const std::string device = session.backend_name();
    const double peak = o.peak_gbps > 0 ? o.peak_gbps : known_peak_gbps(device);
    const Summary talker = summarize(m[6].samples), predictor = summarize(m[7].samples);

    fmt::print("qtts bench: {} | {} | {} frames × {} reps (+{} warmup) | {} ({} frame loop) | rev {}\n",
               model->description(), c.summary(), o.frames, o.reps, o.warmup, device, device_loop ? "device" : "host",
               QTTS_GIT_REVISION);
    if (device_loop) fmt::print("talker step and code predictor: device time (CUDA events); the host waits once per vocoder chunk\n");
    if (model->is_random()) fmt::print("RANDOM WEIGHTS: timings are valid, the audio is noise\n");
    // `skip`: characters of each name left out (the "first audio: " prefix the JSON keys carry).
    const auto table = [](const char* title, const std::vector<Metric>& ms, size_t skip) {
        fmt::print("\n| {} | unit | min | median | p90 | mean | stddev |\n|---|---|---:|---:|---:|---:|---:|\n", title);
        for (const Metric& x : ms) {
            const Summary s = summarize(x.samples);
            fmt::print("| {} | {} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} |\n", std::string_view(x.name).substr(skip),
                       x.unit, s.min, s.median, s.p90, s.mean, s.stddev);
        }
    };
    table("metric", m, 0);
    table("time to first audio, by stage", first, std::string_view("first audio: ").size());
    const auto bw_line = [&](const char* name, double gb, double ms) {
        const double gbps = gb / (ms / 1e3);
        fmt::print("| {} | {:.3f} GB/step | {:.1f} GB/s", name, gb, gbps);
        if (peak > 0) fmt::print(" | {:.1f}% of {:.0f} GB/s peak (floor {:.3f} ms)", 100.0 * gbps / peak, peak, gb / peak * 1e3);
        fmt::print(" |\n");
    };
    fmt::print("\n| stage | bytes moved | achieved bandwidth |\n|---|---|---|\n");
    bw_line("talker step", talker_gb, talker.median);
    bw_line("code predictor frame", predictor_gb, predictor.median);

    if (!o.json_out.empty()) {
        nlohmann::json j = {{"model", model->description()}, {"random_weights", model->is_random()},
                            {"config", c.summary()}, {"device", device}, {"git_revision", QTTS_GIT_REVISION},
                            {"frames", o.frames}, {"reps", o.reps}, {"warmup", o.warmup}, {"greedy", o.greedy},
                            {"seed", o.seed}, {"text", o.text}, {"prompt_tokens", prompt_len},
                            {"vocoder_chunk_frames", o.chunk_frames}, {"vocoder_ramp", o.ramp}, {"threads", std::thread::hardware_concurrency()},
                            {"talker_step_bytes", talker_gb * 1e9}, {"predictor_frame_bytes", predictor_gb * 1e9},
                            {"peak_gbps", peak}, {"device_frame_loop", device_loop}};
        std::vector<Metric> all = m;
        all.insert(all.end(), first.begin(), first.end());
        for (const Metric& x : all) {
            const Summary s = summarize(x.samples);
            j["metrics"][x.name] = {{"unit", x.unit}, {"samples", x.samples}, {"min", s.min}, {"median", s.median},
                                    {"p90", s.p90}, {"mean", s.mean}, {"stddev", s.stddev}};
        }
        write_json_file(o.json_out, j);
    }
}

}  // namespace

void register_bench(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<BenchOptions>();
    CLI::App* sub = app.add_subcommand("bench", "Time to first audio, real-time factor and per-stage costs");
    sub->add_option("--text", o->text, "Text to synthesize")->capture_default_str();
    sub->add_option("--frames", o->frames, "Frames per run (EOS is ignored so every run has this many)")->capture_default_str();
    sub->add_option("--reps", o->reps, "Measured runs")->capture_default_str();
    sub->add_option("--warmup", o->warmup, "Unmeasured runs first")->capture_default_str();
    sub->add_option("--vocoder-chunk", o->chunk_frames, "Frames per vocoder call")->capture_default_str();
    sub->add_flag("--vocoder-ramp", o->ramp, "Vocoder calls of 1, 2, 4, ... frames up to --vocoder-chunk (as qtts speak)");
    sub->add_flag("--host-loop", o->host_loop,
                  "Draw codebook 0 and form each talker input on the host, one round trip per stage and frame "
                  "(comparison with the GPU engine's device frame loop)");
    sub->add_flag("--greedy", o->greedy, "Arg-max decoding (default: the checkpoint's sampling settings)");
    sub->add_option("--seed", o->seed, "Sampling seed (and random-weight seed)")->capture_default_str();
    sub->add_flag("--random-weights", o->random_weights,
                  "Random weights of the real architecture, built in memory (the default when no model is found)");
    sub->add_option("--random-size", o->random_size, "Architecture of the random weights")
        ->check(CLI::IsMember(random_model_sizes()))->capture_default_str();
    sub->add_option("--peak-gbps", o->peak_gbps, "Device memory bandwidth for % of floor (default: known GPUs)");
    sub->add_option("--json", o->json_out, "Write every raw sample, device, revision, shape and settings as JSON");
    sub->callback([&common, o] { run_bench(common, *o); });
}

}  // namespace qtts::cli
