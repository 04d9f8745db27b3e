#include "core/text_split.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <span>

#include "core/utf8.h"

namespace qtts {

namespace {

// Marks that end a sentence only when white space (or the end) follows: "3.14" and "a.b" stay whole.
bool is_spaced_sentence_end(char32_t c) {
    switch (c) {
        case U'.': case U'!': case U'?': case U'\u2026' /* … */: case U'\u037E' /* Greek ; */:
        case U'\u0964' /* । */: case U'\u0965' /* ॥ */: case U'\u061F' /* ؟ */: case U'\u06D4' /* ۔ */:
        case U'\u1362' /* ። */:
            return true;
        default: return false;
    }
}

// Full-width marks of scripts written without spaces: they end a sentence wherever they stand.
bool is_dense_sentence_end(char32_t c) {
    switch (c) {
        case U'\u3002' /* 。 */: case U'\uFF01' /* ！ */: case U'\uFF1F' /* ？ */: case U'\uFF61' /* ｡ */:
        case U'\uFF0E' /* ． */:
            return true;
        default: return false;
    }
}

// Closing quotes and brackets stay with the sentence they close.
bool is_closer(char32_t c) {
    switch (c) {
        case U'"': case U'\'': case U')': case U']': case U'}': case U'\u00BB': case U'\u201D': case U'\u2019':
        case U'\u300D': case U'\u300F': case U'\uFF09': case U'\u3011': case U'\u3015': case U'\u300B':
        case U'\u3009': case U'\uFF02':
            return true;
        default: return false;
    }
}

// Where an overlong sentence is best cut: after a clause mark.
bool is_clause_mark(char32_t c) {
    switch (c) {
        case U',': case U';': case U':': case U'\u2013': case U'\u2014': case U'\uFF0C': case U'\u3001':
        case U'\uFF1B': case U'\uFF1A': case U'\u060C':
            return true;
        default: return false;
    }
}

// "Dr. Smith", "e.g. this", "J. R. R. Tolkien": a period after these is not a sentence end.
bool is_abbreviation(std::span<const char32_t> cps, size_t period) {
    size_t b = period;
    while (b > 0 && (cps[b - 1] == U'.' || (cps[b - 1] < 0x80 && std::isalpha(int(cps[b - 1]))))) --b;
    std::string word;
    for (size_t i = b; i < period; ++i) word += char(std::tolower(int(cps[i])));
    if (word.size() == 1 && cps[b] >= U'A' && cps[b] <= U'Z') return true;  // an initial
    static constexpr std::array<std::string_view, 21> kAbbreviations = {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "mt", "fig",
        "approx", "dept", "inc", "ltd", "co", "cf", "al"};
    return std::find(kAbbreviations.begin(), kAbbreviations.end(), word) != kAbbreviations.end();
}

struct Range {
    size_t begin, end;  // code-point indices, [begin, end)
    size_t size() const { return end - begin; }
};

Range trimmed(std::span<const char32_t> cps, Range r) {
    while (r.begin < r.end && is_unicode_space(cps[r.begin])) ++r.begin;
    while (r.end > r.begin && is_unicode_space(cps[r.end - 1])) --r.end;
    return r;
}

// Sentence ranges, trimmed, non-empty, in order.
std::vector<Range> sentences(std::span<const char32_t> cps) {
    std::vector<Range> out;
    size_t start = 0;
    const auto emit = [&](size_t end) {
        const Range r = trimmed(cps, {start, end});
        if (r.size() > 0) out.push_back(r);
        start = end;
    };
    const size_t n = cps.size();
    for (size_t i = 0; i < n; ++i) {
        const char32_t c = cps[i];
        if (c == U'\n') {  // a blank line ends a paragraph; a single line break is just white space
            size_t j = i + 1;
            while (j < n && (cps[j] == U' ' || cps[j] == U'\t' || cps[j] == U'\r')) ++j;
            if (j < n && cps[j] == U'\n') emit(j);
            continue;
        }
        const bool dense = is_dense_sentence_end(c);
        if (!dense && !is_spaced_sentence_end(c)) continue;
        size_t j = i + 1;
        while (j < n && (is_spaced_sentence_end(cps[j]) || is_dense_sentence_end(cps[j]) || is_closer(cps[j]))) ++j;
        if (!dense && j < n && !is_unicode_space(cps[j])) continue;
        if (!dense && c == U'.' && j == i + 1 && is_abbreviation(cps, i)) continue;
        emit(j);
        i = j - 1;
    }
    emit(n);
    return out;
}

// Cuts `r` into ranges of at most `max_chars`: after the last clause mark in the window's second half,
// else at its last space, else exactly at the limit (text without spaces).
void cut_overlong(std::span<const char32_t> cps, Range r, size_t max_chars, std::vector<Range>& out) {
    while (r.size() > max_chars) {
        const size_t limit = r.begin + max_chars, floor = r.begin + max_chars / 2;
        size_t cut = 0;
        for (size_t i = limit; i > floor && !cut; --i)
            if (is_clause_mark(cps[i - 1])) cut = i;
        for (size_t i = limit; i > floor && !cut; --i)
            if (is_unicode_space(cps[i])) cut = i;
        if (!cut) cut = limit;
        const Range head = trimmed(cps, {r.begin, cut});
        if (head.size() > 0) out.push_back(head);
        r = trimmed(cps, {cut, r.end});
    }
    if (r.size() > 0) out.push_back(r);
}

}  // namespace

std::vector<std::string> split_sentences(std::string_view text, const SplitOptions& options) {
    const std::vector<char32_t> cps = utf8_code_points(text);
    const size_t max_chars = std::max<size_t>(options.max_chars, 2);
    std::vector<Range> pieces;
    for (const Range& s : sentences(cps)) cut_overlong(cps, s, max_chars, pieces);

    // Merge short pieces forward; the merged range keeps the original spacing between them.
    std::vector<Range> merged;
    for (const Range& p : pieces) {
        if (!merged.empty() && merged.back().size() < options.merge_below && p.end - merged.back().begin <= max_chars)
            merged.back().end = p.end;
        else
            merged.push_back(p);
    }
    std::vector<std::string> out;
    out.reserve(merged.size());
    for (const Range& r : merged) out.push_back(utf8_encode(std::span(cps).subspan(r.begin, r.size())));
    return out;
}

}  // namespace qtts
