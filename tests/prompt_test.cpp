// Prompt plan (spec §5.1/5.2/11) and the default frame cap.
#include <doctest/doctest.h>

#include "core/error.h"
#include "core/model_config.h"
#include "core/prompt.h"
#include "tests/test_util.h"

namespace qtts {

namespace {
const ModelConfig& tiny_config() {
    static ModelConfig c = load_model_config(test::tiny_model_dir());
    return c;
}
constexpr int64_t kPad = 151671, kBos = 151672, kEos = 151673;
}  // namespace

TEST_CASE("streaming prompt with a language and a speaker matches spec §11") {
    const std::vector<int32_t> text{100, 101, 102};
    const PromptPlan p = build_prompt_plan(tiny_config(), text, {.language_codec_id = 2050, .has_speaker = true});
    const std::vector<PrefillPosition> expected{
        {151644, kNoCodec}, {77091, kNoCodec}, {198, kNoCodec}, {kPad, 2154},          {kPad, 2156},
        {kPad, 2050},       {kPad, 2157},      {kPad, kSpeakerVector}, {kBos, 2148}, {100, 2149},
    };
    CHECK(p.prefill == expected);
    CHECK(p.trailing_text == std::vector<int64_t>{101, 102, kEos});
}

TEST_CASE("auto language uses nothink and drops the language position") {
    const std::vector<int32_t> text{5};
    const PromptPlan p = build_prompt_plan(tiny_config(), text, {});
    const std::vector<PrefillPosition> expected{
        {151644, kNoCodec}, {77091, kNoCodec}, {198, kNoCodec}, {kPad, 2155},
        {kPad, 2156},       {kBos, 2157},      {kPad, 2148},    {5, 2149},
    };
    // Prefix of m-1 = 4 entries: pad_t with nothink, think_bos, think_eos; bos_t with codec pad.
    CHECK(p.prefill.size() == 8);
    CHECK(p.prefill[3] == PrefillPosition{kPad, 2155});
    CHECK(p.prefill[5] == PrefillPosition{kPad, 2157});
    CHECK(p.prefill[6] == PrefillPosition{kBos, 2148});
    CHECK(p.prefill[7] == PrefillPosition{5, 2149});
    CHECK(p.trailing_text == std::vector<int64_t>{kEos});
    (void)expected;
}

TEST_CASE("non-streaming prompt holds the whole text, then eos and bos") {
    const std::vector<int32_t> text{7, 8};
    const PromptPlan p = build_prompt_plan(tiny_config(), text, {.language_codec_id = 2055, .non_streaming_text = true});
    const size_t n = p.prefill.size();
    REQUIRE(n == 3 + 5 + 2 + 2);  // role, prefix (think, think_bos, lang, think_eos, pad), text, eos, bos
    CHECK(p.prefill[7] == PrefillPosition{kBos, 2148});
    CHECK(p.prefill[8] == PrefillPosition{7, 2148});
    CHECK(p.prefill[9] == PrefillPosition{8, 2148});
    CHECK(p.prefill[10] == PrefillPosition{kEos, 2148});
    CHECK(p.prefill[11] == PrefillPosition{kPad, 2149});
    CHECK(p.trailing_text == std::vector<int64_t>{kPad});
}

TEST_CASE("language names are case-insensitive; unknown ones list the choices") {
    CHECK(language_codec_id(tiny_config(), "English") == 2050);
    CHECK(language_codec_id(tiny_config(), "CHINESE") == 2055);
    CHECK_FALSE(language_codec_id(tiny_config(), "Auto").has_value());
    try {
        (void)language_codec_id(tiny_config(), "elvish");
        FAIL("no throw");
    } catch (const InputError& e) {
        CHECK(std::string(e.what()) == "unknown language 'elvish'");
        CHECK(e.hint().find("english") != std::string::npos);
    }
}

TEST_CASE("frame cap: words for spaced scripts, characters for CJK, with a floor") {
    // 40 English words → 40 / 2.5 s × 12.5 × 2 = 400 frames.
    std::string forty;
    for (int i = 0; i < 40; ++i) forty += "word ";
    CHECK(default_frame_cap(forty) == 400);
    // 50 Chinese characters, no spaces → 50 / 5 s × 25 = 250 frames (not "one word").
    std::string zh;
    for (int i = 0; i < 50; ++i) zh += "好";
    CHECK(default_frame_cap(zh) == 250);
    // Japanese kana and kanji count as characters too; the Japanese full stop does not.
    std::string ja;
    for (int i = 0; i < 20; ++i) ja += "こんにちは。";  // 5 kana per sentence → 100 chars
    CHECK(default_frame_cap(ja) == 500);
    // Short and empty text get the floor.
    CHECK(default_frame_cap("Hi") == kMinFrameCap);
    CHECK(default_frame_cap("") == kMinFrameCap);
    // Mixed: 10 words + 10 Han characters → 4 s + 2 s → 150 frames.
    CHECK(default_frame_cap("one two three four five six seven eight nine ten 一二三四五六七八九十") == 150);
}

}  // namespace qtts
