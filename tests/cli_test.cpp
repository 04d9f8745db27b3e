// The real `qtts` binary: fixture parity through `speak`, `tokenize` output, and the exit-code contract
// (README "Exit codes") for bad input, bad models and unwritable outputs.
#include <doctest/doctest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

#include <fmt/format.h>

#include "core/audio_writer.h"
#include "core/wav.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

struct RunResult {
    int exit_code;
    std::string out, err;
};

std::string quote(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

RunResult run(const std::string& args, const std::string& stdin_text = "") {
    test::TempDir tmp;
    const auto out = tmp.path / "stdout", err = tmp.path / "stderr", in = tmp.path / "stdin";
    std::ofstream(in) << stdin_text;
    const std::string cmd = fmt::format("{} {} <{} >{} 2>{}", QTTS_BINARY, args, quote(in.string()),
                                        quote(out.string()), quote(err.string()));
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, test::read_file(out), test::read_file(err)};
}

std::string model_arg() { return "--model " + quote(test::tiny_model_dir().string()); }

}  // namespace

TEST_CASE("qtts speak reproduces the official fixture codes and waveform") {
    const auto fixture = test::load_json(test::data_dir() / "fixtures" / "tiny_english.json");
    const auto& item = fixture["items"][0];
    test::TempDir tmp;
    const auto wav = tmp.path / "out.wav", codes = tmp.path / "codes.json";
    const auto r = run(fmt::format("{} --device cpu speak {} --language english --greedy --repetition-penalty 1 "
                                   "--max-frames 31 --sample-format f32 -o {} --codes-out {}",
                                   model_arg(), quote(item["text"].get<std::string>()), quote(wav.string()),
                                   quote(codes.string())));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(test::load_json(codes) == item["codes"]);
    const AudioData audio = read_audio(wav);
    CHECK(audio.sample_rate == 24000);
    CHECK(audio.channels == 1);
    const auto ref = item["wav"].get<std::vector<float>>();
    REQUIRE(audio.samples.size() == ref.size());
    float max_err = 0;
    for (size_t i = 0; i < ref.size(); ++i) max_err = std::max(max_err, std::fabs(ref[i] - audio.samples[i]));
    CHECK(max_err <= 1e-3f * item["wav_rms"].get<float>());
    // One-line summary on stderr: frames, audio seconds, wall seconds, RTF and why it stopped.
    CHECK(r.err.find("31 frames, 2.48 s audio") != std::string::npos);
    CHECK(r.err.find("stop: frame-cap") != std::string::npos);
}

TEST_CASE("qtts speak reads stdin and writes 16-bit PCM by default") {
    test::TempDir tmp;
    const auto wav = tmp.path / "x.wav";
    const auto r = run(fmt::format("{} speak --max-frames 3 --seed 1 -o {}", model_arg(), quote(wav.string())),
                       "Hello from stdin.\n");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const AudioData audio = read_audio(wav);
    CHECK(audio.samples.size() <= 3 * 1920);
    CHECK(audio.samples.size() % 1920 == 0);
    CHECK(std::filesystem::file_size(wav) == 44 + audio.samples.size() * 2);
}

TEST_CASE("qtts tokenize prints the fixture's token ids") {
    const auto r = run(model_arg() + " tokenize " + quote("Hello, how are you today?"));
    REQUIRE(r.exit_code == 0);
    CHECK(r.out == "[9707, 11, 1246, 525, 498, 3351, 30]\n");
    const auto w = run(model_arg() + " tokenize --wrap " + quote("Hello, how are you today?"));
    CHECK(w.out == "[151644, 77091, 198, 9707, 11, 1246, 525, 498, 3351, 30, 151645, 198, 151644, 77091, 198]\n");
}

TEST_CASE("bad input gives one error line, a hint and a distinct exit code") {
    test::TempDir tmp;
    const auto wav = tmp.path / "x.wav";
    const std::string out = " -o " + quote(wav.string());

    auto r = run(model_arg() + " speak '   '" + out);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("error: the text is empty\nhint: ") == 0);

    r = run(model_arg() + " speak hi --language klingon" + out);
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("error: unknown language 'klingon'") == 0);

    r = run("--model /nonexistent/dir speak hi" + out);
    CHECK(r.exit_code == 4);
    CHECK(r.err.find("error: /nonexistent/dir: not a directory") == 0);

    r = run(model_arg() + " speak hi --max-frames 2 -o /nonexistent/dir/x.wav");
    CHECK(r.exit_code == 5);
    CHECK(r.err.find("error: cannot write /nonexistent/dir/x.wav") == 0);

    r = run(model_arg() + " speak hi --bogus-flag");
    CHECK(r.exit_code == 2);

    r = run(model_arg() + " --device cuda speak hi" + out);
    CHECK(r.exit_code == 6);
    CHECK(r.err.find("error: no CUDA engine available") == 0);
    CHECK_FALSE(std::filesystem::exists(wav));  // no output from any failed run
}

TEST_CASE("a corrupt checkpoint is a bad-model error naming the file") {
    test::TempDir tmp;
    std::filesystem::copy(test::tiny_model_dir(), tmp.path / "m", std::filesystem::copy_options::recursive);
    std::filesystem::resize_file(tmp.path / "m" / "model.safetensors", 1000);
    const auto r = run("--model " + quote((tmp.path / "m").string()) + " speak hi -o " +
                       quote((tmp.path / "x.wav").string()));
    CHECK(r.exit_code == 4);
    CHECK(r.err.find("model.safetensors: header length") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(tmp.path / "x.wav"));
}

}  // namespace qtts

namespace qtts {

TEST_CASE("qtts parity passes on the official fixtures") {
    const auto r = run(model_arg() + " parity --reference " + quote((test::data_dir() / "fixtures" / "tiny_auto.json").string()));
    INFO(r.out, r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("free-running greedy    31/31 frames exact") != std::string::npos);
    CHECK(r.out.find("teacher-forced c0 top-1 31/31") != std::string::npos);
    CHECK(r.out.find("\nPASS\n") != std::string::npos);
}

TEST_CASE("qtts parity fails on a perturbed reference and names the step") {
    auto fixture = test::load_json(test::data_dir() / "fixtures" / "tiny_pinned_english.json");
    auto& codes = fixture["items"][0]["codes"];
    codes[4][3] = (codes[4][3].get<int>() + 1) % 2048;  // one predictor code of frame 4
    test::TempDir tmp;
    const auto ref = tmp.path / "ref.json";
    std::ofstream(ref) << fixture.dump();
    const auto r = run(model_arg() + " parity --reference " + quote(ref.string()) + " --json " +
                       quote((tmp.path / "report.json").string()));
    INFO(r.out, r.err);
    CHECK(r.exit_code == 7);
    CHECK(r.out.find("first divergence at frame 4 codebook 3") != std::string::npos);
    CHECK(r.err.find("error: parity failed: item 'Hello, how are you today?': free-running codes diverge at frame 4 "
                     "codebook 3") == 0);
    const auto report = test::load_json(tmp.path / "report.json");
    CHECK(report["pass"] == false);
    CHECK(report["items"][0]["divergence"]["frame"] == 4);
    CHECK(report["items"][0]["exact_frames"] == 4);
}

TEST_CASE("qtts parity rejects malformed references with the field name") {
    test::TempDir tmp;
    const auto ref = tmp.path / "ref.json";
    std::ofstream(ref) << R"({"items": [{"text": "hi", "input_ids": [1], "codes": [[1, 2]]}]})";
    auto r = run(model_arg() + " parity --reference " + quote(ref.string()));
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("item 0: codes[0] has 2 values; this model has 16 codebooks") != std::string::npos);
    std::ofstream(ref) << R"({"items": [{"text": "hi", "input_ids": [1]}]})";
    r = run(model_arg() + " parity --reference " + quote(ref.string()));
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("item 0: missing field 'codes'") != std::string::npos);
}

}  // namespace qtts

namespace qtts {

TEST_CASE("qtts bench produces a well-formed table and JSON on the CPU") {
    test::TempDir tmp;
    const auto json = tmp.path / "bench.json";
    const auto r = run(model_arg() + " --device cpu bench --frames 3 --reps 2 --warmup 0 --json " + quote(json.string()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("| time to first audio | ms |") != std::string::npos);
    CHECK(r.out.find("| code predictor frame |") != std::string::npos);
    CHECK(r.out.find("RANDOM WEIGHTS") == std::string::npos);
    const auto j = test::load_json(json);
    CHECK(j["random_weights"] == false);
    CHECK(j["frames"] == 3);
    CHECK(j["device"] == "cpu");
    for (const char* metric : {"time to first audio", "real-time factor", "talker step", "code predictor / frame",
                               "vocoder / frame", "prefill", "tokenize", "text projection", "host overhead / frame"}) {
        CAPTURE(metric);
        REQUIRE(j["metrics"].contains(metric));
        CHECK(j["metrics"][metric]["samples"].size() == 2);
        CHECK(j["metrics"][metric]["median"].get<double>() >= 0.0);
    }
    // The first-audio split: its parts add up to the time to first audio, and none is negative.
    double parts_ms = 0;
    for (const char* part : {"tokenize", "text projection", "prefill", "talker steps", "code predictor", "vocoder", "host"}) {
        const std::string key = std::string("first audio: ") + part;
        CAPTURE(key);
        REQUIRE(j["metrics"].contains(key));
        const double v = j["metrics"][key]["samples"][0].get<double>();
        CHECK(v >= 0.0);
        parts_ms += v;
    }
    CHECK(parts_ms == doctest::Approx(j["metrics"]["time to first audio"]["samples"][0].get<double>()).epsilon(1e-9));
    CHECK(r.out.find("| time to first audio, by stage |") != std::string::npos);
    // 3 frames of 80 ms each: the real-time factor is total time over 0.24 s of audio.
    const double total_ms = j["metrics"]["total"]["samples"][0].get<double>();
    CHECK(j["metrics"]["real-time factor"]["samples"][0].get<double>() == doctest::Approx(total_ms / 240.0).epsilon(1e-6));
    CHECK(j["talker_step_bytes"].get<double>() > 0);
}

TEST_CASE("qtts warmup-profile reports cold and warm first use for every path") {
    test::TempDir tmp;
    const auto json = tmp.path / "profile.json";
    const auto r = run(model_arg() + " --device cpu warmup-profile --reps 2 --frames 2 --json " + quote(json.string()));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    const auto j = test::load_json(json);
    std::set<std::string> paths;
    for (const auto& p : j["paths"]) {
        paths.insert(p["path"].get<std::string>());
        CHECK(p["cold_first_ms"].get<double>() >= 0.0);
        CHECK(p["warm_first_ms"].get<double>() >= 0.0);
    }
    for (const char* p : {"model load + weight upload", "tokenizer", "talker step (greedy)", "talker step (sampled)",
                          "code predictor frame (greedy)", "code predictor frame (sampled)",
                          "vocoder, 1-frame chunks (per frame)", "vocoder, 4-frame chunks (per frame)"})
        CHECK(paths.count(p) == 1);
    CHECK(j["warmup_ms"].get<double>() > 0.0);
}

}  // namespace qtts

namespace qtts {

namespace {
// A bash command line (pipes, ulimit, signals); "QTTS" in it is replaced by the binary and the model.
RunResult run_shell(const std::string& script) {
    test::TempDir tmp;
    std::string cmd = script;
    const std::string qtts = fmt::format("{} {}", QTTS_BINARY, model_arg());
    for (size_t at; (at = cmd.find("QTTS")) != std::string::npos;) cmd.replace(at, 4, qtts);
    const auto err = tmp.path / "stderr";
    const int status = std::system(fmt::format("bash -c {} 2>{}", quote(cmd), quote(err.string())).c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, "", test::read_file(err)};
}

bool has_partial_files(const std::filesystem::path& dir) {
    for (const auto& entry : std::filesystem::directory_iterator(dir))
        if (entry.path().filename().string().find(".part-") != std::string::npos) return true;
    return false;
}

const char* kStreamText = "'Streaming should sound exactly like the file output.'";
}  // namespace

TEST_CASE("audio streamed to stdout equals the file output bit for bit, for any chunking") {
    test::TempDir tmp;
    const auto wav = tmp.path / "f.wav";
    const std::string common = fmt::format("{} speak {} --no-split --seed 5 --max-frames 12", model_arg(), kStreamText);
    const auto raw = run(common + " --sample-format f32 --raw --stream-chunk-frames 1 -o -");
    INFO(raw.err);
    REQUIRE(raw.exit_code == 0);
    REQUIRE(run(common + " --sample-format f32 --stream-chunk-frames 5 -o " + quote(wav.string())).exit_code == 0);
    const AudioData file = read_audio(wav);
    REQUIRE(file.samples.size() == 12 * 1920);
    REQUIRE(raw.out.size() == file.samples.size() * sizeof(float));
    CHECK(std::memcmp(raw.out.data(), file.samples.data(), raw.out.size()) == 0);

    // 16-bit WAV on stdout: the streaming header, then exactly the file's sample bytes.
    const auto streamed = run(common + " --stream-chunk-frames 2 -o -");
    REQUIRE(streamed.exit_code == 0);
    REQUIRE(run(common + " --stream-chunk-frames 12 -o " + quote(wav.string())).exit_code == 0);
    const std::string file_bytes = test::read_file(wav);
    const std::vector<uint8_t> header = streaming_wav_header(24000, SampleFormat::pcm16);
    REQUIRE(streamed.out.size() == file_bytes.size());
    CHECK(std::memcmp(streamed.out.data(), header.data(), header.size()) == 0);
    CHECK(streamed.out.substr(44) == file_bytes.substr(44));
    CHECK(streamed.err.find("(cpu, stdout)") != std::string::npos);  // logs go to stderr only
}

TEST_CASE("a closed output pipe ends the run cleanly") {
    const auto r = run_shell(std::string("QTTS speak ") + kStreamText +
                             " --no-split --max-frames 200 -o - | head -c 1000 >/dev/null; exit ${PIPESTATUS[0]}");
    CHECK(r.exit_code == 0);
    CHECK(r.err.find("qtts: the output pipe closed after") != std::string::npos);
}

TEST_CASE("SIGINT and SIGTERM mid-synthesis exit 130 and leave no file") {
    for (const char* sig : {"INT", "TERM"}) {
        test::TempDir tmp;
        const auto wav = tmp.path / "x.wav";
        const auto r = run_shell(fmt::format("QTTS speak {} --no-split --greedy --max-frames 5000 -o {} & pid=$!; "
                                             "sleep 1; kill -{} $pid; wait $pid",
                                             kStreamText, quote(wav.string()), sig));
        INFO(sig, r.err);
        CHECK(r.exit_code == 130);
        CHECK(r.err.find("error: interrupted; nothing was written") != std::string::npos);
        CHECK_FALSE(std::filesystem::exists(wav));
        CHECK_FALSE(has_partial_files(tmp.path));
    }
    const auto r = run_shell(fmt::format("QTTS speak {} --no-split --greedy --max-frames 5000 -o - >/dev/null & "
                                         "pid=$!; sleep 1; kill -INT $pid; wait $pid", kStreamText));
    CHECK(r.exit_code == 130);
    CHECK(r.err.find("error: interrupted after ") != std::string::npos);
}

TEST_CASE("a full disk is an output error with no partial file") {
    auto r = run_shell(std::string("QTTS speak ") + kStreamText + " --max-frames 4 -o - >/dev/full");
    CHECK(r.exit_code == 5);
    CHECK(r.err.find("error: cannot write audio to the output stream: No space left on device") != std::string::npos);

    // A file-size limit of 8 KiB stands in for a disk that fills up in the middle of the file.
    test::TempDir tmp;
    const auto wav = tmp.path / "x.wav";
    r = run_shell(fmt::format("ulimit -f 8; QTTS speak {} --max-frames 10 -o {}", kStreamText, quote(wav.string())));
    CHECK(r.exit_code == 5);
    CHECK(r.err.find("error: cannot write " + wav.string()) != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(wav));
    CHECK_FALSE(has_partial_files(tmp.path));
}

TEST_CASE("long text is spoken piece by piece with a warning naming a piece cut by the frame cap") {
    test::TempDir tmp;
    const auto wav = tmp.path / "x.wav";
    const std::string text =
        "'The first sentence is long enough to stand on its own as a piece of the document, surely. "
        "And the second one follows it, also long enough to be a piece on its own, without doubt.'";
    const auto r = run(fmt::format("{} speak {} --max-frames 3 --pause-ms 100 -o {}", model_arg(), text,
                                   quote(wav.string())));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(read_audio(wav).samples.size() == 2 * 3 * 1920 + 2400);
    CHECK(r.err.find("warning: piece 1 stopped at the frame cap (3 frames) before the model ended it: "
                     "\"The first sentence is long enough to stand on its own as a p\u2026\"") != std::string::npos);
    CHECK(r.err.find("warning: piece 2 stopped at the frame cap") != std::string::npos);
    CHECK(r.err.find("2 pieces") != std::string::npos);
    const auto quiet = run(fmt::format("{} speak {} --max-frames 3 -q -o {}", model_arg(), text, quote(wav.string())));
    CHECK(quiet.err.find("qtts:") == std::string::npos);
}

}  // namespace qtts

namespace qtts {

TEST_CASE("qtts speak takes the voice from a reference recording or a saved speaker embedding") {
    const auto fixture = test::load_json(test::data_dir() / "fixtures" / "speaker_fixture.json");
    const auto& item = fixture["items"][0];
    const auto ref = test::data_dir() / "fixtures" / fixture["recording"].get<std::string>();
    test::TempDir tmp;
    const auto voice = tmp.path / "voice.json", codes = tmp.path / "codes.json";
    const auto speak = [&](const std::string& voice_args, const std::string& wav) {
        return run(fmt::format("{} --device cpu speak {} --language {} --greedy --repetition-penalty 1 --max-frames 31 "
                               "--no-split -o {} --codes-out {} {}",
                               model_arg(), quote(item["text"].get<std::string>()), item["language"].get<std::string>(),
                               quote((tmp.path / wav).string()), quote(codes.string()), voice_args));
    };
    // The official x-vector-only codes, from the recording and then from the x-vector saved on the way.
    auto r = speak("--speaker-ref " + quote(ref.string()) + " --speaker-embedding-out " + quote(voice.string()), "a.wav");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(test::load_json(codes) == item["codes"]);
    const auto saved = test::load_json(voice)["values"].get<std::vector<float>>();
    const auto official = fixture["embedding"].get<std::vector<float>>();
    REQUIRE(saved.size() == official.size());
    for (size_t i = 0; i < saved.size(); ++i) CHECK(std::fabs(saved[i] - official[i]) <= 1e-4f);
    std::filesystem::remove(codes);
    r = speak("--speaker-embedding " + quote(voice.string()), "b.wav");
    REQUIRE(r.exit_code == 0);
    CHECK(test::load_json(codes) == item["codes"]);

    // Bad references and embeddings: exit code 3, one error line naming the file, a hint, no output.
    std::ofstream(tmp.path / "notes.txt") << "not audio";
    r = speak("--speaker-ref " + quote((tmp.path / "notes.txt").string()), "c.wav");
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("error: cannot read audio " + (tmp.path / "notes.txt").string()) != std::string::npos);
    CHECK(r.err.find("\nhint: ") != std::string::npos);
    r = speak("--speaker-embedding " + quote((tmp.path / "notes.txt").string()), "c.wav");
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("is not usable: not valid JSON\nhint: ") != std::string::npos);
    r = speak("--speaker-ref " + quote(ref.string()) + " --speaker-embedding " + quote(voice.string()), "c.wav");
    CHECK(r.exit_code == 3);
    CHECK_FALSE(std::filesystem::exists(tmp.path / "c.wav"));
}

}  // namespace qtts

namespace qtts {

TEST_CASE("on a terminal: a progress line on stderr, none with --quiet, and no audio written to the terminal") {
    // `script` (util-linux) runs qtts on a pseudo-terminal, so stdout and stderr are both terminals.
    test::TempDir tmp;
    const auto wav = tmp.path / "x.wav";
    const std::string speak = fmt::format(
        "QTTS speak 'The first sentence is long enough to stand on its own as a piece of the document, surely. "
        "And the second one follows it, also long enough to be a piece on its own, without doubt.' --max-frames 3 -o {}",
        quote(wav.string()));
    const auto tty = [&](const std::string& cmd) {
        return run_shell(fmt::format("script -qec {} /dev/null > {}", quote(cmd), quote((tmp.path / "tty").string())));
    };
    REQUIRE(tty(speak).exit_code == 0);
    const std::string shown = test::read_file(tmp.path / "tty");
    CHECK(shown.find("] piece 1/2, 0.0 s of audio") != std::string::npos);
    CHECK(shown.find("] piece 2/2, 0.") != std::string::npos);
    REQUIRE(tty(speak + " --quiet").exit_code == 0);
    CHECK(test::read_file(tmp.path / "tty").find("piece 1/2") == std::string::npos);

    REQUIRE(tty("QTTS speak hi -o -").exit_code == 3);
    CHECK(test::read_file(tmp.path / "tty").find("error: refusing to write audio to a terminal") != std::string::npos);
}

}  // namespace qtts
