#include "core/prompt.h"

#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/utf8.h"

namespace qtts {

PromptPlan build_prompt_plan(const ModelConfig& c, std::span<const int32_t> text, const PromptOptions& o) {
    QTTS_CHECK(!text.empty(), "the prompt needs at least one text token");
    const auto& t = c.talker;
    // Codec prefix Q (spec §5.1), without its final bos entry, which the tail places.
    std::vector<int64_t> q;
    if (o.language_codec_id)
        q = {t.codec_think_id, t.codec_think_bos_id, *o.language_codec_id, t.codec_think_eos_id};
    else
        q = {t.codec_nothink_id, t.codec_think_bos_id, t.codec_think_eos_id};
    if (o.has_speaker) q.push_back(kSpeakerVector);
    q.push_back(t.codec_pad_id);

    PromptPlan plan;
    for (int64_t role : {c.im_start_token_id, c.assistant_token_id, kNewlineTokenId})  // "<|im_start|>assistant\n"
        plan.prefill.push_back({role, kNoCodec});
    for (size_t i = 0; i < q.size(); ++i)  // pad_t for all but the last prefix position, which gets bos_t
        plan.prefill.push_back({i + 1 < q.size() ? c.tts_pad_token_id : c.tts_bos_token_id, q[i]});
    if (!o.non_streaming_text) {
        plan.prefill.push_back({text[0], t.codec_bos_id});
        plan.trailing_text.assign(text.begin() + 1, text.end());
        plan.trailing_text.push_back(c.tts_eos_token_id);
    } else {
        for (int32_t id : text) plan.prefill.push_back({id, t.codec_pad_id});
        plan.prefill.push_back({c.tts_eos_token_id, t.codec_pad_id});
        plan.prefill.push_back({c.tts_pad_token_id, t.codec_bos_id});
        plan.trailing_text = {c.tts_pad_token_id};
    }
    return plan;
}

std::vector<int64_t> prompt_template_text_ids(const ModelConfig& c) {
    return {c.im_start_token_id, c.assistant_token_id, kNewlineTokenId, c.tts_pad_token_id, c.tts_bos_token_id,
            c.tts_eos_token_id};
}

std::optional<int64_t> language_codec_id(const ModelConfig& c, std::string_view language) {
    std::string lower(language);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (lower == "auto") return std::nullopt;
    auto it = c.talker.language_ids.find(lower);
    // Dialects are reachable only through CustomVoice speakers (the official wrapper hides them too).
    if (it == c.talker.language_ids.end() || lower.find("dialect") != std::string::npos) {
        std::vector<std::string> names{"auto"};
        for (const auto& [name, id] : c.talker.language_ids)
            if (name.find("dialect") == std::string::npos) names.push_back(name);
        throw InputError(fmt::format("unknown language '{}'", language),
                         fmt::format("use one of: {}", fmt::join(names, ", ")));
    }
    return it->second;
}

int64_t default_frame_cap(std::string_view text) {
    int64_t words = 0, dense_chars = 0;
    bool in_word = false;
    for (char32_t cp : utf8_code_points(text)) {
        if (is_dense_script(cp)) {  // each character is a syllable-sized unit; it also ends a spaced word
            ++dense_chars;
            in_word = false;
        } else if (is_word_char(cp) || (in_word && (cp == U'\'' || cp == U'-' || cp == 0x2019))) {
            if (!in_word) ++words;
            in_word = true;
        } else {  // spaces and punctuation separate words and are not spoken
            in_word = false;
        }
    }
    const double seconds = double(words) / 2.5 + double(dense_chars) / 5.0;
    return std::max<int64_t>(kMinFrameCap, int64_t(std::ceil(seconds * 12.5 * 2.0)));
}

}  // namespace qtts
