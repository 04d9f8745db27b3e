// Comparison of the engine against a reference run of the official implementation (the fixture format
// of tests/data/fixtures: {items: [{text, language, input_ids, codes, talker_logits, wav, wav_rms}]}).
// Reports tokenization equality, free-running greedy exact-match prefixes, teacher-forced codebook-0
// top-1 agreement with logit cosine / max-abs, teacher-forced predictor agreement per codebook, and the
// vocoder's waveform SNR on the reference codes.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/engine.h"

namespace qtts {

struct ReferenceItem {
    std::string text, language;
    std::vector<int32_t> input_ids;                 // the full wrapped prompt
    std::vector<int32_t> codes;                     // [n_frames × G]
    int64_t n_frames = 0;
    std::vector<std::vector<float>> talker_logits;  // raw codec_head logits at steps 0, 1, ... (rows may be prefixes)
    std::vector<float> wav;                         // may be a prefix of the full waveform
    bool non_streaming_text = false;
};

struct ReferenceFile {
    std::string source;
    std::vector<ReferenceItem> items;
};

// Throws InputError naming the file, item and field for anything missing or malformed, and for a
// reference that does not fit `config` (codebook count, vocabulary sizes, logit width).
ReferenceFile load_reference(const std::filesystem::path& path, const ModelConfig& config);
// The same from the file's text (tests, fuzzers); `source` names it in error messages.
ReferenceFile parse_reference(std::string_view json_text, const std::string& source, const ModelConfig& config);

struct ParityThresholds {
    bool require_tokens = true;
    double min_exact_fraction = 1.0;  // free-running greedy: matching frames / reference frames
    double min_top1 = 1.0;            // teacher-forced codebook-0 arg-max agreement
    double min_predictor = 1.0;       // teacher-forced codebooks 1..G-1 agreement (all codebooks pooled)
    double min_cosine = 0.9999;       // talker logits vs reference, worst recorded step
    double min_snr_db = 40.0;         // our vocoder on the reference codes vs the reference waveform
};

struct Divergence {
    int64_t frame = -1, codebook = -1;
    int32_t ours = -1, reference = -1;
    std::optional<double> reference_top2_gap;  // when the reference logits of that step are known
    std::optional<double> our_top2_gap;        // codebook 0 only
};

struct ItemParity {
    std::string text;
    bool tokens_equal = false;
    std::vector<int32_t> our_input_ids;
    int64_t frames = 0, exact_frames = 0;              // free-running
    std::vector<int64_t> exact_prefix_per_codebook;    // free-running, frames until the first mismatch
    std::optional<Divergence> divergence;
    int64_t forced_steps = 0, top1_agree = 0;          // teacher-forced codebook 0
    std::vector<int64_t> predictor_agree;              // per codebook 1..G-1 (index 0 unused)
    double worst_cosine = 1.0, worst_max_abs_rel = 0.0;  // over recorded reference logits
    int64_t logit_steps_compared = 0;
    double snr_db = 0.0;
    int64_t wav_samples_compared = 0;
};

struct ParityReport {
    std::vector<ItemParity> items;
    std::vector<std::string> failures;  // empty = every threshold holds
};

ParityReport run_parity(Session& session, const ReferenceFile& reference, const ParityThresholds& thresholds);

// Shared numeric helpers (also used by tests).
double cosine_similarity(std::span<const float> a, std::span<const float> b);
double snr_db(std::span<const float> reference, std::span<const float> test);
// Gap between the largest and second largest value.
double top2_gap(std::span<const float> values);

}  // namespace qtts
