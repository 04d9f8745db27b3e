// Error types shared by every module. Host code reports failures by throwing one of these; the CLI maps
// each type to a distinct exit code and prints `error: <message>` plus `hint: <hint>` when one is known.
// Invariant: messages are one line and name the thing at fault (file, tensor, field, argument).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace qtts {

// Exit codes are part of the CLI contract (README "Exit codes"); never renumber.
enum class ExitCode : int {
    ok = 0,
    other = 1,        // a bug or an unexpected failure
    usage = 2,        // bad command-line usage (CLI11 also returns 2... via its own path)
    bad_input = 3,    // unusable text, language, reference file or option value
    bad_model = 4,    // missing, corrupt or inconsistent model files
    bad_output = 5,   // output cannot be written
    gpu = 6,          // no usable GPU, out of GPU memory, kernel fault
    check_failed = 7, // `qtts parity` ran but a threshold did not hold
    interrupted = 130 // SIGINT / SIGTERM
};

// Control characters (a newline in a config value or file name, an escape sequence) written as \n, \xNN:
// whatever a message quotes, it stays one line on the terminal.
inline std::string one_line(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else if (c == '\t') out += "\\t";
        else if (u < 0x20 || u == 0x7f) out += fmt::format("\\x{:02x}", u);
        else out += c;
    }
    return out;
}

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message, std::string hint = {})
        : std::runtime_error(one_line(message)), hint_(one_line(hint)) {}
    const std::string& hint() const { return hint_; }
    virtual ExitCode exit_code() const { return ExitCode::other; }

private:
    std::string hint_;
};

#define QTTS_DEFINE_ERROR(Name, code)                                                  \
    class Name : public Error {                                                        \
    public:                                                                            \
        using Error::Error;                                                            \
        ExitCode exit_code() const override { return code; }                           \
    }

QTTS_DEFINE_ERROR(InputError, ExitCode::bad_input);
QTTS_DEFINE_ERROR(ModelError, ExitCode::bad_model);
QTTS_DEFINE_ERROR(OutputError, ExitCode::bad_output);
QTTS_DEFINE_ERROR(GpuError, ExitCode::gpu);
QTTS_DEFINE_ERROR(Interrupted, ExitCode::interrupted);
QTTS_DEFINE_ERROR(CheckFailed, ExitCode::check_failed);

#undef QTTS_DEFINE_ERROR

}  // namespace qtts

// Internal invariant check: throws qtts::Error (exit 1) with file:line; for bugs, not for user input.
#define QTTS_CHECK(cond, ...)                                                                    \
    do {                                                                                         \
        if (!(cond))                                                                             \
            throw ::qtts::Error(fmt::format("{}:{}: check '{}' failed: {}", __FILE__, __LINE__, \
                                            #cond, fmt::format(__VA_ARGS__)));                   \
    } while (0)
