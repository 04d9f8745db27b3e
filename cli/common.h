// What every subcommand shares: the global options, model-directory resolution, text input, and the
// SIGINT/SIGTERM flag that running work polls (so Ctrl-C ends a run cleanly with exit code 130).
#pragma once

#include <atomic>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace qtts::cli {

struct CommonOptions {
    std::string model;            // --model DIR; empty: $QTTS_MODEL, then the HF cache
    std::string device = "auto";  // --device cpu|cuda|auto
    std::string log_level = "info";
};

// --model, else $QTTS_MODEL, else the HF hub cache snapshot of Qwen/Qwen3-TTS-12Hz-0.6B-Base.
std::filesystem::path resolve_model_dir(const CommonOptions& common);

// The text argument, else the contents of `file` ("-" = stdin), else stdin when it is not a terminal.
std::string read_text_input(const std::string& text, const std::string& file);

// Writes `j`, indented, through write_file_atomically (core/atomic_file.h).
void write_json_file(const std::string& path, const nlohmann::json& j);

// Set by SIGINT/SIGTERM once install_signal_handlers() ran.
extern std::atomic<int> g_signal;
void install_signal_handlers();

bool log_enabled(const CommonOptions& common, std::string_view level);

void register_speak(CLI::App& app, const CommonOptions& common);
void register_tokenize(CLI::App& app, const CommonOptions& common);
void register_parity(CLI::App& app, const CommonOptions& common);
void register_bench(CLI::App& app, const CommonOptions& common);
void register_warmup_profile(CLI::App& app, const CommonOptions& common);

}  // namespace qtts::cli
