// Minimal UTF-8 helpers for text bookkeeping (frame caps, input checks). Invalid bytes decode to U+FFFD.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtts {

std::vector<char32_t> utf8_code_points(std::string_view text);
bool is_valid_utf8(std::string_view text);
std::string utf8_encode(std::span<const char32_t> code_points);
// Unicode White_Space property.
bool is_unicode_space(char32_t cp);
// Han, Hiragana, Katakana, Hangul syllables: scripts written without spaces between words.
bool is_dense_script(char32_t cp);
// Letters, marks and digits (Unicode categories L*, M*, N*).
bool is_word_char(char32_t cp);

}  // namespace qtts
