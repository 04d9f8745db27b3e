// Text of any length: split into pieces (core/text_split.h), each piece synthesized with the same
// settings, the same voice (speaker embedding) and one continuing RNG stream, joined by a short pause,
// and delivered in order through the observer while it is produced (nothing is held back for the end).
//
//   qtts::DocumentRequest request{.piece = {.text = long_text, .language = "english"}};
//   qtts::DocumentResult result = qtts::synthesize_document(session, request, &observer);
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/engine.h"
#include "core/text_split.h"

namespace qtts {

struct DocumentRequest {
    SynthesisRequest piece;  // settings for every piece; piece.text is the whole document
    bool split = true;       // false: one piece, however long
    SplitOptions split_options;
    double pause_s = 0.25;   // silence between pieces
    // Without a speaker embedding, a Base model's voice would drift from piece to piece; with keep_voice
    // the x-vector of the first piece's audio (when it is at least kMinReferenceSeconds long) voices the rest.
    bool keep_voice = true;
};

struct PieceSummary {
    std::string text;
    int64_t n_frames = 0, frame_cap = 0;
    StopReason stop = StopReason::eos;
    StageTimes times;
};

struct DocumentResult {
    std::vector<PieceSummary> pieces;  // the pieces synthesized (all of them unless cancelled)
    size_t n_pieces = 0;               // how many the text was split into
    std::vector<int32_t> codes;        // every piece's frames, in order
    int64_t n_frames = 0, n_samples = 0;
    double first_audio_s = -1, total_s = 0;
    bool cancelled = false;
    bool voice_from_first_piece = false;  // keep_voice applied
};

// A SynthesisObserver that also hears where pieces begin and end.
class DocumentObserver : public SynthesisObserver {
public:
    virtual void on_piece_start(size_t index, size_t count, std::string_view text) { (void)index, (void)count, (void)text; }
    virtual void on_piece_end(size_t index, const PieceSummary& piece) { (void)index, (void)piece; }
};

// Throws what Session::synthesize throws, before any audio for the piece at fault (the text is
// validated as a whole first, so bad text fails before the first piece).
DocumentResult synthesize_document(Session& session, const DocumentRequest& request, DocumentObserver* observer);

}  // namespace qtts
