// The talker's input plan (spec §5): which text-track id and codec-track entry are summed at each prefill
// position, and which text ids trail into the decode steps. Pure bookkeeping, no weights, so it can be
// tested exactly; `text_ids` are the user's text tokens t_0 … t_{n-1} (no template around them).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/model_config.h"

namespace qtts {

// Codec-track entries that are not rows of codec_embedding.
constexpr int64_t kNoCodec = -1;
constexpr int64_t kSpeakerVector = -2;  // the x-vector / speaker embedding, inserted raw

struct PrefillPosition {
    int64_t text_id;   // id fed through text_embedding + text_projection
    int64_t codec_id;  // codec_embedding row, kNoCodec or kSpeakerVector
    bool operator==(const PrefillPosition&) const = default;
};

struct PromptPlan {
    std::vector<PrefillPosition> prefill;
    // Decode step g adds P(trailing[g]); past the end it adds P(tts_pad).
    std::vector<int64_t> trailing_text;
};

struct PromptOptions {
    std::optional<int64_t> language_codec_id;  // nullopt = "auto"
    bool has_speaker = false;
    bool non_streaming_text = false;
};

constexpr int64_t kNewlineTokenId = 198;  // "\n" in the Qwen2 vocabulary, after "<|im_start|>assistant"

// Requires at least one text token.
PromptPlan build_prompt_plan(const ModelConfig& config, std::span<const int32_t> text_ids, const PromptOptions& options);

// The text-track ids build_prompt_plan puts into every prompt whatever the text (role tokens, tts_pad / bos /
// eos): their projections can be computed once per session.
std::vector<int64_t> prompt_template_text_ids(const ModelConfig& config);

// Codec id for a language name (case-insensitive); nullopt for "auto"; throws InputError listing the
// supported names for anything else.
std::optional<int64_t> language_codec_id(const ModelConfig& config, std::string_view language);

// Frame budget when the user gives none: speech at ≈2.5 words/s (spaced scripts) or ≈5 characters/s
// (Han, kana, Hangul), 12.5 frames/s, ×2 margin, at least kMinFrameCap frames.
constexpr int64_t kMinFrameCap = 60;
int64_t default_frame_cap(std::string_view text);

}  // namespace qtts
