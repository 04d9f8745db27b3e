// Splits long text into pieces the model speaks well one at a time: sentence boundaries first (Latin,
// CJK and other full stops, question and exclamation marks, paragraph breaks), short sentences merged
// with their neighbours, overlong sentences cut at clause punctuation, then at spaces, then anywhere.
//
//   for (const std::string& piece : qtts::split_sentences(text, {})) ...
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace qtts {

struct SplitOptions {
    size_t max_chars = 300;   // a piece never has more code points than this
    size_t merge_below = 80;  // sentences shorter than this are joined with the next one (within max_chars)
};

// `text` must be valid UTF-8 (see prepare_text). Pieces are trimmed, never empty, and in order; joining
// them with single spaces gives back the text up to white space at the cut points.
std::vector<std::string> split_sentences(std::string_view text, const SplitOptions& options);

}  // namespace qtts
