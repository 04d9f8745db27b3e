// Sentence splitting for long text: where pieces begin and end, in Latin and CJK scripts.
#include <doctest/doctest.h>

#include "core/engine.h"
#include "core/error.h"
#include "core/text_split.h"
#include "core/utf8.h"

namespace qtts {

namespace {
using Pieces = std::vector<std::string>;
// No merging, so each test sees the raw sentence boundaries.
Pieces sentences(std::string_view text, size_t max_chars = 300) { return split_sentences(text, {max_chars, 0}); }

std::string without_spaces(std::string_view s) {
    std::string out;
    for (char c : s)
        if (c != ' ' && c != '\n') out += c;
    return out;
}
}  // namespace

TEST_CASE("sentences end at . ! ? followed by space, with closing quotes kept") {
    CHECK(sentences("Hello there. How are you? I'm fine!") == Pieces{"Hello there.", "How are you?", "I'm fine!"});
    CHECK(sentences("He said \"stop.\" Then he left.") == Pieces{"He said \"stop.\"", "Then he left."});
    CHECK(sentences("Wait... what?! No way.") == Pieces{"Wait...", "what?!", "No way."});
}

TEST_CASE("decimals, abbreviations and initials do not end a sentence") {
    CHECK(sentences("Pi is 3.14 today. Yes.") == Pieces{"Pi is 3.14 today.", "Yes."});
    CHECK(sentences("Dr. Smith met Mr. Jones, e.g. at noon. Then J. R. R. Tolkien came.") ==
          Pieces{"Dr. Smith met Mr. Jones, e.g. at noon.", "Then J. R. R. Tolkien came."});
    CHECK(sentences("Visit example.com now. Ok.") == Pieces{"Visit example.com now.", "Ok."});
}

TEST_CASE("CJK full stops end a sentence without a following space") {
    CHECK(sentences("你好。今天天气很好！你呢？") == Pieces{"你好。", "今天天气很好！", "你呢？"});
    CHECK(sentences("「行こう。」と彼は言った。") == Pieces{"「行こう。」", "と彼は言った。"});
}

TEST_CASE("a blank line ends a paragraph; a single line break does not") {
    CHECK(sentences("Title\n\nFirst line\nwraps here") == Pieces{"Title", "First line\nwraps here"});
}

TEST_CASE("an overlong sentence is cut at clause marks, then spaces, then anywhere") {
    const Pieces clauses = sentences("one two three four, five six seven eight, nine ten", 24);
    CHECK(clauses == Pieces{"one two three four,", "five six seven eight,", "nine ten"});
    const Pieces words = sentences("aaaa bbbb cccc dddd eeee ffff", 10);
    CHECK(words == Pieces{"aaaa bbbb", "cccc dddd", "eeee ffff"});
    const Pieces dense = sentences("一二三四五六七八九十一二", 5);
    CHECK(dense == Pieces{"一二三四五", "六七八九十", "一二"});
}

TEST_CASE("short sentences are merged up to the size limit, keeping the original spacing") {
    CHECK(split_sentences("Hi. Yes. Fine.", {300, 80}) == Pieces{"Hi. Yes. Fine."});
    CHECK(split_sentences("Hi. Yes. Fine.", {9, 80}) == Pieces{"Hi. Yes.", "Fine."});
    const std::string long_a(90, 'a'), long_b(90, 'b');
    CHECK(split_sentences(long_a + ". " + long_b + ".", {300, 80}) == Pieces{long_a + ".", long_b + "."});
}

TEST_CASE("splitting loses no text and respects the limit on a long document") {
    std::string doc;
    for (int i = 0; i < 200; ++i)
        doc += i % 7 == 0 ? "这是一个很长的中文句子，没有空格也要切开。" : i % 5 == 0 ? "\n\n" : "Sentence number " + std::to_string(i) + " is here, and it goes on for a while. ";
    const Pieces pieces = split_sentences(doc, {120, 40});
    std::string joined;
    for (const auto& p : pieces) {
        CHECK(!p.empty());
        CHECK(utf8_code_points(p).size() <= 120);
        joined += p;
    }
    CHECK(without_spaces(joined) == without_spaces(doc));
}

TEST_CASE("a megabyte of text is accepted and split into bounded pieces; far more is refused") {
    std::string doc;
    for (int i = 0; doc.size() < 1000000; ++i) doc += "Sentence number " + std::to_string(i) + " goes on for a while. ";
    const std::string text = prepare_text(doc);
    const Pieces pieces = split_sentences(text, {});
    CHECK(pieces.size() > 3000);
    for (const auto& p : pieces) CHECK(utf8_code_points(p).size() <= 300);
    CHECK_THROWS_WITH_AS(prepare_text(std::string(kMaxTextBytes + 1, 'a')), "the text is 4.0 MiB; qtts speaks at most 4 MiB per run",
                         InputError);
}

}  // namespace qtts
