// Long text through synthesize_document: pieces, pauses, one continuing RNG stream, streaming delivery.
#include <doctest/doctest.h>

#include <algorithm>

#include "core/document.h"
#include "core/error.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

std::shared_ptr<const Model> tiny_model() {
    static std::shared_ptr<const Model> model = Model::load(test::tiny_model_dir(), {.device = Device::cpu});
    return model;
}

class Collector final : public DocumentObserver {
public:
    std::vector<float> audio;
    std::vector<std::string> starts;
    size_t stop_after_pieces = 1000;
    void on_audio(std::span<const float> s) override { audio.insert(audio.end(), s.begin(), s.end()); }
    void on_piece_start(size_t, size_t, std::string_view text) override { starts.emplace_back(text); }
    bool should_stop() override { return starts.size() >= stop_after_pieces; }
};

constexpr const char* kTwoPieces =
    "The first sentence is long enough to stand on its own as a piece of the document, surely. "
    "And the second one follows it, also long enough to be a piece on its own, without doubt.";

}  // namespace

TEST_CASE("a document is its pieces' audio joined by silence, streamed in order") {
    Session session(tiny_model());
    DocumentRequest doc;
    doc.piece.text = kTwoPieces;
    doc.piece.language = "english";
    doc.piece.max_frames = 6;
    doc.piece.seed = 11;
    doc.pause_s = 0.1;
    doc.keep_voice = false;
    Collector collector;
    const DocumentResult r = synthesize_document(session, doc, &collector);
    REQUIRE(r.pieces.size() == 2);
    CHECK(collector.starts == std::vector<std::string>{r.pieces[0].text, r.pieces[1].text});
    CHECK(r.pieces[0].text.rfind("The first", 0) == 0);
    CHECK(r.pieces[1].text.rfind("And the second", 0) == 0);

    // Each piece equals a standalone synthesis; the second continues the RNG stream after the first.
    SynthesisRequest one = doc.piece;
    one.text = r.pieces[0].text;
    const SynthesisResult a = session.synthesize(one);
    one.text = r.pieces[1].text;
    one.rng_frame_offset = uint64_t(a.n_frames) + 1;
    const SynthesisResult b = session.synthesize(one);
    std::vector<int32_t> codes = a.codes;
    codes.insert(codes.end(), b.codes.begin(), b.codes.end());
    CHECK(r.codes == codes);

    const size_t pause = 2400;  // 0.1 s at 24 kHz
    REQUIRE(collector.audio.size() == a.audio.size() + pause + b.audio.size());
    CHECK(int64_t(collector.audio.size()) == r.n_samples);
    CHECK(std::equal(a.audio.begin(), a.audio.end(), collector.audio.begin()));
    CHECK(std::all_of(collector.audio.begin() + a.audio.size(), collector.audio.begin() + a.audio.size() + pause,
                      [](float x) { return x == 0.0f; }));
    CHECK(std::equal(b.audio.begin(), b.audio.end(), collector.audio.end() - b.audio.size()));

    // Without the offset the second piece would repeat the first piece's draws: the offset matters.
    one.rng_frame_offset = 0;
    CHECK(session.synthesize(one).codes != b.codes);
}

TEST_CASE("a document stops between pieces when asked, and bad text fails before any audio") {
    Session session(tiny_model());
    DocumentRequest doc;
    doc.piece.text = kTwoPieces;
    doc.piece.max_frames = 3;
    Collector collector;
    collector.stop_after_pieces = 1;
    const DocumentResult r = synthesize_document(session, doc, &collector);
    CHECK(r.cancelled);
    CHECK(r.pieces.size() == 1);
    CHECK(r.n_pieces == 2);

    doc.piece.text = "Fine first sentence here. \xff broken";
    Collector none;
    CHECK_THROWS_AS(synthesize_document(session, doc, &none), InputError);
    CHECK(none.audio.empty());
    doc.split = false;
    doc.piece.text = kTwoPieces;
    CHECK(synthesize_document(session, doc, nullptr).pieces.size() == 1);
}

TEST_CASE("without a speaker embedding, the first piece's voice carries over to the rest") {
    Session session(tiny_model());
    DocumentRequest doc;
    doc.piece.text = kTwoPieces;
    doc.piece.max_frames = 15;  // 1.2 s of audio: enough for an x-vector
    doc.piece.seed = 3;
    const DocumentResult r = synthesize_document(session, doc, nullptr);
    REQUIRE(r.pieces.size() == 2);
    CHECK(r.voice_from_first_piece);

    SynthesisRequest one = doc.piece;
    one.text = r.pieces[0].text;
    const SynthesisResult a = session.synthesize(one);
    one.text = r.pieces[1].text;
    one.rng_frame_offset = uint64_t(a.n_frames) + 1;
    one.speaker_embedding = tiny_model()->speaker_encoder()->embed(a.audio);
    const SynthesisResult b = session.synthesize(one);
    CHECK(std::equal(b.codes.begin(), b.codes.end(), r.codes.begin() + int64_t(a.codes.size()), r.codes.end()));
    one.speaker_embedding.reset();
    CHECK(session.synthesize(one).codes != b.codes);  // the voice really changed the second piece

    doc.piece.max_frames = 5;  // 0.4 s: too short to take a voice from
    CHECK_FALSE(synthesize_document(session, doc, nullptr).voice_from_first_piece);
}

}  // namespace qtts

namespace qtts {

TEST_CASE("the vocoder ramp delivers 1, 2, 4, ... frames per call and the same audio as frame by frame") {
    class Chunks final : public SynthesisObserver {
    public:
        std::vector<size_t> sizes;
        void on_audio(std::span<const float> s) override { sizes.push_back(s.size() / 1920); }
    };
    Session session(tiny_model());
    SynthesisRequest req;
    req.text = "Ramp up the vocoder calls.";
    req.seed = 4;
    req.max_frames = 20;
    req.vocoder_chunk_frames = 1;
    const SynthesisResult one = session.synthesize(req);
    req.vocoder_chunk_frames = 4;
    req.vocoder_ramp = true;
    Chunks chunks;
    const SynthesisResult ramp = session.synthesize(req, &chunks);
    CHECK(ramp.audio == one.audio);  // bit for bit: the vocoder is exactly streaming
    CHECK(chunks.sizes == std::vector<size_t>{1, 2, 4, 4, 4, 4, 1});
    req.vocoder_chunk_frames = 0;
    CHECK_THROWS_WITH_AS(session.synthesize(req), "vocoder chunk of 0 frames; it must be at least 1", InputError);
}

}  // namespace qtts
