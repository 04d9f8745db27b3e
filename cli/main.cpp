// qtts entry point: builds the CLI11 app, dispatches to one subcommand, and maps qtts errors to the
// documented exit codes with a one-line `error:` and an optional `hint:` on stderr.
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unistd.h>

#include <fmt/format.h>

#include "cli/common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#ifdef QTTS_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace qtts::cli {

std::atomic<int> g_signal{0};

namespace {
void on_signal(int sig) { g_signal.store(sig); }
}  // namespace

void install_signal_handlers() {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    std::signal(SIGPIPE, SIG_IGN);  // a closed output pipe becomes a write error, not a silent death
    std::signal(SIGXFSZ, SIG_IGN);  // so does a file-size limit (an error naming the file, no core dump)
}

bool log_enabled(const CommonOptions& common, std::string_view level) {
    const auto rank = [](std::string_view l) {
        return l == "error" ? 0 : l == "warn" ? 1 : l == "info" ? 2 : 3;
    };
    return rank(level) <= rank(common.log_level);
}

std::filesystem::path resolve_model_dir(const CommonOptions& common) {
    namespace fs = std::filesystem;
    if (!common.model.empty()) return common.model;
    if (const char* env = std::getenv("QTTS_MODEL"); env && *env) return env;
    fs::path hub;
    if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) {
        hub = c;
    } else if (const char* h = std::getenv("HF_HOME"); h && *h) {
        hub = fs::path(h) / "hub";
    } else if (const char* home = std::getenv("HOME"); home && *home) {
        hub = fs::path(home) / ".cache" / "huggingface" / "hub";
    }
    const fs::path repo = hub / "models--Qwen--Qwen3-TTS-12Hz-0.6B-Base";
    std::error_code ec;
    if (!hub.empty() && fs::is_directory(repo / "snapshots", ec)) {
        std::ifstream ref(repo / "refs" / "main");
        std::string rev;
        if (ref >> rev && fs::is_directory(repo / "snapshots" / rev)) return repo / "snapshots" / rev;
        for (const auto& entry : fs::directory_iterator(repo / "snapshots", ec))
            if (entry.is_directory()) return entry.path();
    }
    throw InputError("no model given and none found in the Hugging Face cache",
                     "pass --model DIR or set QTTS_MODEL (download: huggingface-cli download "
                     "Qwen/Qwen3-TTS-12Hz-0.6B-Base)");
}

void write_json_file(const std::string& path, const nlohmann::json& j) { write_file_atomically(path, j.dump(1) + "\n"); }

std::string read_text_input(const std::string& text, const std::string& file) {
    if (!text.empty() && !file.empty()) throw InputError("give the text either as an argument or with -f, not both");
    if (!text.empty() && text != "-") return text;
    std::ostringstream ss;
    if (!file.empty() && file != "-") {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw InputError(fmt::format("cannot read text file {}", file), "check the path given to -f");
        ss << in.rdbuf();
        return ss.str();
    }
    if (text.empty() && file.empty() && isatty(STDIN_FILENO))
        throw InputError("no text given", "pass the text as an argument, with -f FILE, or on stdin");
    ss << std::cin.rdbuf();
    return ss.str();
}

}  // namespace qtts::cli

int main(int argc, char** argv) {
    using namespace qtts;
    CLI::App app{"qtts: Qwen3-TTS text to speech (CPU reference engine; CUDA engine in progress)"};
    app.set_version_flag("--version", "qtts 0.1.0");
#ifdef QTTS_HAVE_CUDA
    qtts::cuda::register_backend();  // registers only when qtts::cuda::device_count() > 0
#endif
    app.require_subcommand(1);
    cli::CommonOptions common;
    app.add_option("--model", common.model, "Model directory (default: $QTTS_MODEL, then the HF cache)");
    app.add_option("--device", common.device, "Compute device: cpu, cuda or auto")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}))
        ->capture_default_str();
    app.add_option("--log-level", common.log_level, "error, warn, info or debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
        ->capture_default_str();
    cli::register_speak(app, common);
    cli::register_tokenize(app, common);
    cli::register_parity(app, common);
    cli::register_bench(app, common);
    cli::register_warmup_profile(app, common);
    cli::install_signal_handlers();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : int(ExitCode::usage);
    } catch (const Error& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        if (!e.hint().empty()) fmt::print(stderr, "hint: {}\n", e.hint());
        return int(e.exit_code());
    } catch (const std::bad_alloc&) {
        fmt::print(stderr, "error: out of memory\nhint: use a machine with more RAM, or shorter text\n");
        return int(ExitCode::other);
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return int(ExitCode::other);
    }
    return 0;
}
