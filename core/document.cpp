#include "core/document.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/audio_input.h"

namespace qtts {

namespace {
// The x-vector of generated audio, or nothing for a model without speaker encoder or too little audio.
std::optional<std::vector<float>> voice_of(const Model& model, const std::vector<float>& audio) {
    const SpeakerEncoder* encoder = model.speaker_encoder();
    const int rate = int(model.config().vocoder.sample_rate);
    if (!encoder || double(audio.size()) < kMinReferenceSeconds * rate) return std::nullopt;
    return encoder->embed(resample_audio(audio, rate, int(encoder->sample_rate())));
}
}  // namespace

DocumentResult synthesize_document(Session& session, const DocumentRequest& request, DocumentObserver* observer) {
    const auto t_start = std::chrono::steady_clock::now();
    const auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
    const std::string text = prepare_text(request.piece.text);
    const std::vector<std::string> pieces =
        request.split ? split_sentences(text, request.split_options) : std::vector<std::string>{text};
    const int sample_rate = int(session.model().config().vocoder.sample_rate);
    const std::vector<float> pause(size_t(std::max(0.0, request.pause_s) * sample_rate), 0.0f);

    DocumentResult doc;
    doc.n_pieces = pieces.size();
    SynthesisRequest req = request.piece;
    for (size_t i = 0; i < pieces.size(); ++i) {
        if (observer && observer->should_stop()) {
            doc.cancelled = true;
            break;
        }
        if (i > 0 && !pause.empty()) {
            if (observer) observer->on_audio(pause);
            doc.n_samples += int64_t(pause.size());
        }
        if (observer) observer->on_piece_start(i, pieces.size(), pieces[i]);
        req.text = pieces[i];
        SynthesisResult r = session.synthesize(req, observer);
        if (doc.first_audio_s < 0 && r.times.first_audio_s >= 0) doc.first_audio_s = elapsed() - r.times.total_s + r.times.first_audio_s;
        // The next piece continues the RNG stream after this piece's last draw (its EOS or cap frame).
        req.rng_frame_offset += uint64_t(r.n_frames) + 1;
        doc.codes.insert(doc.codes.end(), r.codes.begin(), r.codes.end());
        doc.n_frames += r.n_frames;
        doc.n_samples += int64_t(r.audio.size());
        if (i == 0 && pieces.size() > 1 && request.keep_voice && !req.speaker_embedding) {
            req.speaker_embedding = voice_of(session.model(), r.audio);
            doc.voice_from_first_piece = req.speaker_embedding.has_value();
        }
        doc.pieces.push_back({pieces[i], r.n_frames, r.frame_cap, r.stop, r.times});
        if (observer) observer->on_piece_end(i, doc.pieces.back());
        if (r.stop == StopReason::cancelled) {
            doc.cancelled = true;
            break;
        }
    }
    doc.total_s = elapsed();
    return doc;
}

}  // namespace qtts
