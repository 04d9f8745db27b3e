// `qtts warmup-profile`: the first-call cost of every code path against its steady state, once in a fresh
// process without warmup and once in a fresh process after Session::warmup(), so process-level first-use
// costs (page faults of the mapped weights, thread pools) show up honestly. Each phase is this binary
// re-executed with a hidden --phase option; the parent prints the table and --json FILE.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/random_model.h"
#include "core/stats.h"

namespace qtts::cli {

namespace {

struct ProfileOptions {
    std::string json_out, phase, phase_out, random_size = "0.6b";
    bool random_weights = false;
    int64_t reps = 10, frames = 4;
    double tolerance = 0.10;
};

double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct PathConfig {
    const char* name;
    bool sampled;
    int64_t chunk;
};
constexpr PathConfig kConfigs[] = {{"greedy", false, 1}, {"sampled", true, 1}, {"greedy", false, 2}, {"greedy", false, 4}};

// One phase, in this process: {path: {first_ms, samples_ms[]}}.
nlohmann::json run_phase(const CommonOptions& common, const ProfileOptions& o) {
    nlohmann::json out;
    const Device device = parse_device(common.device);
    auto t0 = std::chrono::steady_clock::now();
    std::shared_ptr<const Model> model =
        o.random_weights ? Model::load_random(o.random_size, 0, {.device = device}) : Model::load(resolve_model_dir(common), {.device = device});
    out["model load + weight upload"]["first_ms"] = since(t0);
    out["model"] = model->description();
    t0 = std::chrono::steady_clock::now();
    Session session(model);
    out["session (backend) creation"]["first_ms"] = since(t0);
    out["backend"] = session.backend_name();
    if (o.phase == "warm") {
        t0 = std::chrono::steady_clock::now();
        session.warmup();
        out["warmup_ms"] = since(t0);
    }
    const std::string text = "This sentence measures how long each path takes.";
    t0 = std::chrono::steady_clock::now();
    (void)model->tokenizer().encode(text);
    out["tokenizer"]["first_ms"] = since(t0);
    for (int64_t r = 0; r < o.reps; ++r) {
        t0 = std::chrono::steady_clock::now();
        (void)model->tokenizer().encode(text);
        out["tokenizer"]["samples_ms"].push_back(since(t0));
    }
    for (const PathConfig& pc : kConfigs) {
        SynthesisRequest req;
        req.text = text;
        req.ignore_eos = true;
        req.max_frames = o.frames;
        req.vocoder_chunk_frames = pc.chunk;
        req.talker = SamplerSettings{.do_sample = pc.sampled, .repetition_penalty = 1.05f};
        req.predictor = SamplerSettings{.do_sample = pc.sampled};
        for (int64_t r = 0; r <= o.reps; ++r) {
            if (g_signal.load()) throw Interrupted("interrupted");
            const SynthesisResult res = session.synthesize(req);
            const StageTimes& t = res.times;
            const double frames = double(res.n_frames);
            std::vector<std::pair<std::string, double>> rows;
            if (pc.chunk == 1) {
                rows.push_back({fmt::format("prefill ({})", pc.name), t.prefill_s * 1e3});
                rows.push_back({fmt::format("talker step ({})", pc.name), t.talker_s * 1e3 / double(std::max<int64_t>(1, t.talker_steps))});
                rows.push_back({fmt::format("code predictor frame ({})", pc.name), t.predictor_s * 1e3 / frames});
            }
            if (!pc.sampled) rows.push_back({fmt::format("vocoder, {}-frame chunks (per frame)", pc.chunk), t.vocoder_s * 1e3 / frames});
            for (const auto& [name, ms] : rows) {
                if (r == 0) out[name]["first_ms"] = ms;
                else out[name]["samples_ms"].push_back(ms);
            }
        }
    }
    return out;
}

nlohmann::json run_child(const CommonOptions& common, const ProfileOptions& o, const std::string& phase) {
    const auto tmp = std::filesystem::temp_directory_path() / fmt::format("qtts-profile-{}-{}.json", ::getpid(), phase);
    std::vector<std::string> args = {"/proc/self/exe", "--device", common.device, "--log-level", "error"};
    if (!common.model.empty()) args.insert(args.end(), {"--model", common.model});
    args.insert(args.end(), {"warmup-profile", "--phase", phase, "--phase-out", tmp.string(), "--reps",
                             std::to_string(o.reps), "--frames", std::to_string(o.frames)});
    if (o.random_weights) args.insert(args.end(), {"--random-weights", "--random-size", o.random_size});
    const pid_t pid = fork();
    if (pid == 0) {
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv("/proc/self/exe", argv.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::filesystem::remove(tmp);
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (code == int(ExitCode::interrupted) || g_signal.load()) throw Interrupted("interrupted");
        throw Error(fmt::format("the {} profiling phase failed (exit code {})", phase, code));
    }
    std::ifstream in(tmp);
    nlohmann::json j = nlohmann::json::parse(in);
    std::filesystem::remove(tmp);
    return j;
}

void run_profile(const CommonOptions& common, const ProfileOptions& o) {
    if (o.reps < 2) throw InputError("--reps must be at least 2");
    if (!o.phase.empty()) {  // child: measure one phase and write it
        const nlohmann::json j = run_phase(common, o);
        std::ofstream out(o.phase_out);
        if (!(out << j.dump())) throw OutputError(fmt::format("cannot write {}", o.phase_out));
        return;
    }
    const nlohmann::json cold = run_child(common, o, "cold"), warm = run_child(common, o, "warm");
    fmt::print("qtts warmup-profile: {} on {}, {} frames per run, steady = median of {} runs\n",
               cold["model"].get<std::string>(), cold["backend"].get<std::string>(), o.frames, o.reps);
    fmt::print("qtts warmup: {:.1f} ms\n\n", warm["warmup_ms"].get<double>());
    fmt::print("| path | cold first (ms) | steady (ms) | cold/steady | first after warmup (ms) | warm/steady | ≤ {:.0f}% |\n",
               100 * (1 + o.tolerance));
    fmt::print("|---|---:|---:|---:|---:|---:|---|\n");
    nlohmann::json report = {{"model", cold["model"]}, {"backend", cold["backend"]}, {"warmup_ms", warm["warmup_ms"]},
                             {"frames", o.frames}, {"reps", o.reps}, {"tolerance", o.tolerance}, {"paths", nlohmann::json::array()}};
    int failures = 0;
    for (auto& [name, c] : cold.items()) {
        if (!c.is_object() || !c.contains("first_ms")) continue;
        const auto& w = warm[name];
        const bool has_steady = w.contains("samples_ms");
        const double steady = has_steady ? summarize(w["samples_ms"].get<std::vector<double>>()).median : 0.0;
        const double cold_first = c["first_ms"].get<double>(), warm_first = w["first_ms"].get<double>();
        // Load and backend creation happen once per process: they have no steady state to compare with.
        const bool judged = has_steady && steady > 0;
        const bool ok = !judged || warm_first <= steady * (1 + o.tolerance);
        failures += !ok;
        fmt::print("| {} | {:.3f} | {} | {} | {:.3f} | {} | {} |\n", name, cold_first,
                   judged ? fmt::format("{:.3f}", steady) : "once", judged ? fmt::format("{:.2f}", cold_first / steady) : "",
                   warm_first, judged ? fmt::format("{:.2f}", warm_first / steady) : "", judged ? (ok ? "yes" : "NO") : "n/a");
        report["paths"].push_back({{"path", name}, {"cold_first_ms", cold_first}, {"warm_first_ms", warm_first},
                                   {"steady_ms", judged ? nlohmann::json(steady) : nlohmann::json(nullptr)},
                                   {"cold_samples_ms", c.value("samples_ms", nlohmann::json::array())},
                                   {"warm_samples_ms", w.value("samples_ms", nlohmann::json::array())}, {"ok", ok}});
    }
    fmt::print("\n{} path(s) slower than {:.0f}% of steady state on first use after warmup\n", failures, 100 * (1 + o.tolerance));
    report["failures"] = failures;
    if (!o.json_out.empty()) write_json_file(o.json_out, report);
}

}  // namespace

void register_warmup_profile(CLI::App& app, const CommonOptions& common) {
    auto o = std::make_shared<ProfileOptions>();
    CLI::App* sub = app.add_subcommand("warmup-profile", "Cold versus warm cost of every code path");
    sub->add_option("--reps", o->reps, "Runs per path for the steady state")->capture_default_str();
    sub->add_option("--frames", o->frames, "Frames per run")->capture_default_str();
    sub->add_option("--tolerance", o->tolerance, "Allowed first-use slowdown after warmup")->capture_default_str();
    sub->add_flag("--random-weights", o->random_weights, "Random weights of a real architecture (--random-size)");
    sub->add_option("--random-size", o->random_size, "Architecture of the random weights")
        ->check(CLI::IsMember(random_model_sizes()))->capture_default_str();
    sub->add_option("--json", o->json_out, "Write the report as JSON");
    sub->add_option("--phase", o->phase, "internal")->check(CLI::IsMember({"cold", "warm"}))->group("");
    sub->add_option("--phase-out", o->phase_out, "internal")->group("");
    sub->callback([&common, o] { run_profile(common, *o); });
}

}  // namespace qtts::cli
