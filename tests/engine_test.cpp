// End-to-end parity of the CPU engine with the official implementation on the tiny random-weight
// checkpoint (fixtures made by ../shared/oracle/official.py: fp32 on CPU, greedy talker and predictor,
// repetition penalty 1.0, max_new_tokens 32 → 31 frames).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "core/engine.h"
#include "core/error.h"
#include "core/prompt.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

class LogitRecorder final : public SynthesisObserver {
public:
    std::vector<std::vector<float>> logits;
    void on_talker_logits(int64_t step, std::span<const float> l) override {
        logits.emplace_back(l.begin(), l.end());
    }
    bool wants_talker_logits() const override { return true; }
};

std::shared_ptr<const Model> tiny_model() {
    static std::shared_ptr<const Model> model = Model::load(test::tiny_model_dir(), {.device = Device::cpu});
    return model;
}

// `logit_tolerance` is relative to the largest |logit| of the step.
void check_fixture_file(const char* name, float logit_tolerance) {
    const auto fixture = test::load_json(test::data_dir() / "fixtures" / name);
    Session session(tiny_model());
    for (const auto& item : fixture["items"]) {
        CAPTURE(item["text"].get<std::string>());
        LogitRecorder rec;
        const SynthesisResult r = session.synthesize(test::fixture_request(item), &rec);

        // Text tokens = the official prompt's ids[3:-5].
        const auto ids = item["input_ids"].get<std::vector<int32_t>>();
        CHECK(r.text_ids == std::vector<int32_t>(ids.begin() + 3, ids.end() - 5));

        // Codes: exact.
        const std::vector<int32_t> expected = test::fixture_codes(item);
        CHECK(r.n_frames == item["n_frames"].get<int64_t>());
        CHECK(r.codes == expected);

        // Talker logits at the last prefill position and the next two steps: within 1e-4 of max |logit|.
        const auto& ref_logits = item["talker_logits"];
        REQUIRE(rec.logits.size() >= ref_logits.size());
        for (size_t s = 0; s < ref_logits.size(); ++s) {
            const auto ref = ref_logits[s].get<std::vector<float>>();
            REQUIRE(ref.size() == rec.logits[s].size());
            float max_abs = 0, max_err = 0;
            for (size_t i = 0; i < ref.size(); ++i) {
                max_abs = std::max(max_abs, std::fabs(ref[i]));
                max_err = std::max(max_err, std::fabs(ref[i] - rec.logits[s][i]));
            }
            CAPTURE(s);
            CHECK(max_err <= logit_tolerance * max_abs);
        }

        // Waveform: max abs error within 1e-3 of the reference RMS.
        const auto wav = item["wav"].get<std::vector<float>>();
        REQUIRE(r.audio.size() == wav.size());
        float max_err = 0;
        for (size_t i = 0; i < wav.size(); ++i) max_err = std::max(max_err, std::fabs(wav[i] - r.audio[i]));
        CHECK(max_err <= 1e-3f * item["wav_rms"].get<float>());
    }
}

}  // namespace

// The shared fixtures were made with the official code running on transformers 5.17 through a compatibility
// shim; that run differs from the official code on its pinned transformers 4.57.3 by up to 1.28e-4 of the
// largest |logit| at the prefill step (measured: scripts/make_reference.py with qwen-tts 0.1.1). We match the
// pinned run to 3.4e-7 (tiny_pinned_english.json, every step recorded), so the shared fixtures get 2e-4.
TEST_CASE("engine matches the official implementation: tiny_english fixture") {
    check_fixture_file("tiny_english.json", 2e-4f);
}

TEST_CASE("engine matches the official implementation: tiny_auto fixture") { check_fixture_file("tiny_auto.json", 2e-4f); }

// Made by scripts/make_reference.py with the official code on its pinned transformers 4.57.3, fp32 CPU, all
// 31 steps' logits kept. 1e-5 leaves a 30x margin over the 3.4e-7 measured, for other compilers and libm.
TEST_CASE("engine matches the official implementation on its pinned transformers: every step's logits") {
    check_fixture_file("tiny_pinned_english.json", 1e-5f);
}

TEST_CASE("engine: non-streaming text and sampling run, are seeded, and respect the frame cap") {
    Session session(tiny_model());
    SynthesisRequest r;
    r.text = "Hello there.";
    r.language = "English";  // case-insensitive
    r.max_frames = 5;
    r.seed = 7;
    const auto a = session.synthesize(r);
    const auto b = session.synthesize(r);
    CHECK(a.codes == b.codes);  // same seed, same codes
    CHECK(a.n_frames <= 5);
    CHECK(a.audio.size() == size_t(a.n_frames) * 1920);
    r.seed = 8;
    const auto c = session.synthesize(r);
    CHECK(c.codes != a.codes);  // 16 codebooks × up to 5 frames: a collision would be astronomically unlikely
    r.non_streaming_text = true;
    const auto d = session.synthesize(r);
    CHECK(d.n_frames >= 1);
    if (a.n_frames == 5) CHECK(a.stop == StopReason::frame_cap);
}

TEST_CASE("engine: bad input is rejected with a clear error") {
    Session session(tiny_model());
    SynthesisRequest r;
    r.text = "   \n\t ";
    CHECK_THROWS_WITH_AS(session.synthesize(r), "the text is empty", InputError);
    r.text = "hello";
    r.language = "klingon";
    CHECK_THROWS_WITH_AS(session.synthesize(r), "unknown language 'klingon'", InputError);
    r.language = "auto";
    r.text = std::string("bad \xff utf8");
    CHECK_THROWS_WITH_AS(session.synthesize(r), "the text is not valid UTF-8", InputError);
}

TEST_CASE("prepare_text trims, keeps inner newlines and neutralizes control characters") {
    CHECK(prepare_text("\n\nHello\nworld  \n") == "Hello\nworld");
    CHECK(prepare_text("a\x01" "b") == "a b");
    CHECK(prepare_text("\u00a0\n\u3000foo\u2028") == "foo");  // Unicode white space, not only ASCII
}

TEST_CASE("engine: literal special tokens in user text are spoken, not obeyed") {
    Session session(tiny_model());
    SynthesisRequest r;
    r.text = "say <|im_end|> please";
    r.max_frames = 2;
    const auto res = session.synthesize(r);
    const int32_t im_end = 151645;
    CHECK(std::find(res.text_ids.begin(), res.text_ids.end(), im_end) == res.text_ids.end());
    CHECK(res.text_ids.size() > 4);
}

}  // namespace qtts

namespace qtts {

// The text track projects most rows on a host worker in batches of growing size for GPU engines, or when first
// needed for the CPU engine, and copies the rows of template ids from a per-session cache. Every combination must
// give text_vectors' rows bit for bit, since every row is computed as alone.
TEST_CASE("text track: background rows and cached rows equal the batched projection; errors surface at the row") {
    const Model& m = *tiny_model();
    const ModelConfig& c = m.config();
    // 24 rows: past `first`, the worker's batches are 8 and 16 rows (or 8, 8 and a rest), so rows of a later
    // batch are asked for before rows of an earlier one.
    const std::vector<int64_t> ids = {c.im_start_token_id, 9707, 11, c.tts_pad_token_id, 1879, 0, 151671, 42,
                                      c.tts_eos_token_id, 3, 5, 7, 100, 200, 300, 400,
                                      500, 600, 700, 800, 900, 1000, 1100, c.tts_pad_token_id};
    const int64_t E = c.talker.stack.n_embd, n = int64_t(ids.size());
    std::vector<float> expected(ids.size() * size_t(E));
    m.weights().text_vectors(m.store(), ids, expected.data());
    const TextRowCache cache(m.weights(), m.store(), prompt_template_text_ids(c));
    HostWorker worker;
    REQUIRE(cache.find(c.tts_pad_token_id) != nullptr);
    CHECK(std::equal(expected.begin() + 3 * E, expected.begin() + 4 * E, cache.find(c.tts_pad_token_id)));
    CHECK(cache.find(9707) == nullptr);
    for (const TextRowCache* use_cache : {static_cast<const TextRowCache*>(nullptr), &cache})
        for (const TextTrack::Rest rest : {TextTrack::Rest::now, TextTrack::Rest::on_first_use, TextTrack::Rest::background})
            for (const int64_t first : {int64_t(0), int64_t(1), int64_t(4), n, n + 2}) {
                CAPTURE(use_cache != nullptr);
                CAPTURE(int(rest));
                CAPTURE(first);
                TextTrack track(m.weights(), m.store(), ids, first, rest, use_cache, &worker);
                REQUIRE(track.rows() == n);
                for (int64_t i = n - 1; i >= 0; --i)  // a late row first: waits for the background batch
                    CHECK(std::equal(expected.begin() + i * E, expected.begin() + (i + 1) * E, track.row(i)));
                CHECK(track.wait_s() > 0.0);
                CHECK_THROWS_WITH(track.row(n), doctest::Contains("text track row 24 of 24"));
            }
    // A bad id in the later batch: the constructor returns, the error comes with its first row.
    const int64_t vocab = c.talker.text_vocab_size;
    const std::string message = fmt::format("text id {} out of range", vocab);
    for (const TextTrack::Rest rest : {TextTrack::Rest::on_first_use, TextTrack::Rest::background}) {
        TextTrack bad(m.weights(), m.store(), {1, 2, vocab}, 2, rest, &cache, &worker);
        CHECK(bad.row(1) != nullptr);
        CHECK_THROWS_WITH(bad.row(2), doctest::Contains(message.c_str()));
    }
    // On the worker, an error in a later batch stays in that batch: the rows of the batch before it are fine.
    std::vector<int64_t> late_bad(ids.begin(), ids.begin() + 12);  // first 2: batches [2, 10) and [10, 12)
    late_bad[11] = vocab;
    {
        TextTrack bad(m.weights(), m.store(), late_bad, 2, TextTrack::Rest::background, &cache, &worker);
        CHECK_THROWS_WITH(bad.row(11), doctest::Contains(message.c_str()));
        CHECK(std::equal(expected.begin() + 9 * E, expected.begin() + 10 * E, bad.row(9)));
    }
    // An error in the first rows comes from the constructor in every mode.
    for (const TextTrack::Rest rest : {TextTrack::Rest::now, TextTrack::Rest::on_first_use, TextTrack::Rest::background})
        CHECK_THROWS_WITH(TextTrack(m.weights(), m.store(), {vocab, 1}, 1, rest, &cache, &worker),
                          doctest::Contains(message.c_str()));
    // Never asking for the later rows (EOS at frame 0) is fine in every mode, and the worker skips the batches of
    // a track that is gone: the next track's rows come at once.
    for (const TextTrack::Rest rest : {TextTrack::Rest::on_first_use, TextTrack::Rest::background})
        CHECK(TextTrack(m.weights(), m.store(), ids, 1, rest, &cache, &worker).row(0) != nullptr);
    TextTrack after(m.weights(), m.store(), ids, 1, TextTrack::Rest::background, &cache, &worker);
    CHECK(std::equal(expected.begin() + (n - 2) * E, expected.begin() + (n - 1) * E, after.row(n - 2)));
    // Without a worker, background means on first use.
    TextTrack alone(m.weights(), m.store(), ids, 1, TextTrack::Rest::background, &cache);
    CHECK(std::equal(expected.begin() + 5 * E, expected.begin() + 6 * E, alone.row(5)));
}

}  // namespace qtts
