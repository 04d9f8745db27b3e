// Qwen2 byte-level BPE (see tokenizer.h). Mirrors HF `tokenizers` step by step: AddedVocabulary's
// two-pass split (raw text for normalized:false tokens, NFC text for normalized:true ones), the NFC
// normalizer, the Isolated regex Split, ByteLevel without prefix space, and BPE's
// lowest-rank-then-leftmost merge order. PCRE2 and utf8proc stay private to this file.
#include "core/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <queue>
#include <sstream>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qtts {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The split regex of every Qwen2/Qwen3 tokenizer (pre_tokenizer.Split.pattern.Regex).
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The same regex as PCRE2 must see it to classify every code point as HF's Oniguruma does
// (Unicode 16 in tokenizers 0.22 and 0.23; checked over all code points, see
// scripts/gen_tokenizer_goldens.py --sweep and --classes):
// - Oniguruma's \s is Unicode White_Space; PCRE2's also takes U+180E (MONGOLIAN VOWEL SEPARATOR, a
//   space before Unicode 6.3), so \s is spelled out.
// - PCRE2 10.42 has Unicode 14 tables: letters and numbers assigned in Unicode 15 and 16 (CJK
//   extensions H/I, Kawi, Kaktovik numerals, ...) are added by hand. On a newer PCRE2 they are
//   already in \p{L} / \p{N} and the additions change nothing.
#define QTTS_WS \
    R"(\t-\r\x20\x85\xA0\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})"
#define QTTS_L                                                                        \
    R"(\p{L})"                                                                        \
    R"(\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3})"       \
    R"(\x{10D4A}-\x{10D65}\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{1123F}-\x{11240})" \
    R"(\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}\x{113B7}\x{113D1})"   \
    R"(\x{113D3}\x{11BC0}-\x{11BE0}\x{11F02}\x{11F04}-\x{11F10}\x{11F12}-\x{11F33})"  \
    R"(\x{1342F}\x{13441}-\x{13446}\x{13460}-\x{143FA}\x{16100}-\x{1611D})"           \
    R"(\x{16D40}-\x{16D6C}\x{18CFF}\x{1B132}\x{1B155}\x{1DF25}-\x{1DF2A})"            \
    R"(\x{1E030}-\x{1E06D}\x{1E4D0}-\x{1E4EB}\x{1E5D0}-\x{1E5ED}\x{1E5F0}\x{2B739})"  \
    R"(\x{2EBF0}-\x{2EE5D}\x{31350}-\x{323AF})"
#define QTTS_N                                                                        \
    R"(\p{N})"                                                                        \
    R"(\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{11F50}-\x{11F59})" \
    R"(\x{16130}-\x{16139}\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1D2C0}-\x{1D2D3})" \
    R"(\x{1E4F0}-\x{1E4F9}\x{1E5F1}-\x{1E5FA})"
constexpr std::string_view kQwen2PatternPcre2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n)" QTTS_L QTTS_N R"(]?[)" QTTS_L R"(]+|[)" QTTS_N
    R"(]| ?[^)" QTTS_WS QTTS_L QTTS_N R"(]+[\r\n]*|[)" QTTS_WS R"(]*[\r\n]+|[)" QTTS_WS
    R"(]+(?![^)" QTTS_WS R"(])|[)" QTTS_WS R"(]+)";
#undef QTTS_WS
#undef QTTS_L
#undef QTTS_N

constexpr int64_t kMaxTokenId = 1 << 24;  // ids index flat tables; larger ones are refused

// Words longer than this are not cached: they are rare, and caching them would let one huge input
// hold a copy of itself.
constexpr size_t kMaxCachedWordBytes = 256;

// ---------------------------------------------------------------------------------------------
// UTF-8 helpers

void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

// Length of the valid UTF-8 sequence starting at s[i], or -k when only its first k bytes form the
// start of a valid sequence (k >= 1: the "maximal subpart" that becomes one U+FFFD).
int utf8_sequence(std::string_view s, size_t i) {
    const auto b0 = uint8_t(s[i]);
    if (b0 < 0x80) return 1;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        if (b0 == 0xE0) lo = 0xA0;  // overlong
        if (b0 == 0xED) hi = 0x9F;  // surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        if (b0 == 0xF0) lo = 0x90;  // overlong
        if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
        return -1;
    }
    for (int k = 1; k <= need; ++k) {
        if (i + k >= s.size()) return -k;
        const auto b = uint8_t(s[i + k]);
        const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) return -k;
    }
    return need + 1;
}

// Python's bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal invalid subpart.
// Returns false (and leaves `out` untouched) when `s` is already valid, the common case.
bool repair_utf8(std::string_view s, std::string& out) {
    size_t i = 0;
    while (i < s.size()) {
        const int n = utf8_sequence(s, i);
        if (n < 0) break;
        i += size_t(n);
    }
    if (i == s.size()) return false;
    out.assign(s.substr(0, i));
    while (i < s.size()) {
        const int n = utf8_sequence(s, i);
        if (n > 0) {
            out.append(s.substr(i, size_t(n)));
            i += size_t(n);
        } else {
            append_utf8(out, 0xFFFD);
            i += size_t(-n);
        }
    }
    return true;
}

// Decodes one code point of valid UTF-8 at s[i], advancing i.
uint32_t next_codepoint(std::string_view s, size_t& i) {
    const auto b0 = uint8_t(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    const int n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
    uint32_t cp = b0 & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
    i += size_t(n);
    return cp;
}

bool is_ascii(std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return uint8_t(c) < 0x80; });
}

// Code points whose normalization HF's NFC (unicode-normalization-alignments, Unicode 9 tables)
// does not know but a newer utf8proc does: combining marks assigned after Unicode 9 (HF sees them as
// starters and never reorders marks around them) and new canonical compositions (both the composite
// and its first part, e.g. U+11938 = U+11935 U+11930). Derived from Unicode 18 data and checked
// against HF over every code point (gen_tokenizer_goldens.py --nfc-inert), so any utf8proc up to
// Unicode 18 gives HF's result.
constexpr std::pair<uint32_t, uint32_t> kNfcInert[] = {
    {0x05C8, 0x05C9}, {0x07FD, 0x07FD}, {0x0897, 0x089F}, {0x08CA, 0x08D3}, {0x09FE, 0x09FE},
    {0x0C3C, 0x0C3C}, {0x0D3B, 0x0D3C}, {0x0EBA, 0x0EBA}, {0x1715, 0x1715}, {0x1ABF, 0x1AF0},
    {0x1DF6, 0x1DFA}, {0xA82C, 0xA82C}, {0x105C9, 0x105C9}, {0x105D2, 0x105D2}, {0x105DA, 0x105DA},
    {0x105E4, 0x105E4}, {0x10D24, 0x10D27}, {0x10D69, 0x10D6D}, {0x10EAB, 0x10EAC},
    {0x10ECB, 0x10ECF}, {0x10EF0, 0x10EFB}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50},
    {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x11382, 0x11385},
    {0x1138B, 0x1138B}, {0x1138E, 0x1138E}, {0x11390, 0x11391}, {0x113C2, 0x113C2},
    {0x113C5, 0x113C5}, {0x113C7, 0x113C8}, {0x113CE, 0x113D0}, {0x1145E, 0x1145E},
    {0x11839, 0x1183A}, {0x11935, 0x11935}, {0x11938, 0x11938}, {0x1193D, 0x1193E},
    {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34}, {0x11A47, 0x11A47},
    {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45}, {0x11D97, 0x11D97},
    {0x11F41, 0x11F42}, {0x1611E, 0x1611E}, {0x16121, 0x16129}, {0x1612F, 0x1612F},
    {0x16D63, 0x16D63}, {0x16D67, 0x16D6A}, {0x16FF0, 0x16FF1}, {0x1D127, 0x1D128},
    {0x1D250, 0x1D252}, {0x1D25B, 0x1D25C}, {0x1D25F, 0x1D25F}, {0x1D280, 0x1D281},
    {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF},
    {0x1E4EC, 0x1E4EF}, {0x1E5EE, 0x1E5EF}, {0x1E6E3, 0x1E6E3}, {0x1E6E6, 0x1E6E6},
    {0x1E6EE, 0x1E6EF}, {0x1E6F5, 0x1E6F5},
};

bool nfc_inert(uint32_t cp) {
    if (cp < kNfcInert[0].first) return false;
    auto it = std::upper_bound(std::begin(kNfcInert), std::end(kNfcInert), cp,
                               [](uint32_t c, const auto& r) { return c < r.first; });
    return it != std::begin(kNfcInert) && cp <= std::prev(it)->second;
}

void utf8proc_nfc(std::string_view s, std::string& out) {
    if (s.empty()) return;
    utf8proc_uint8_t* buf = nullptr;
    const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                            utf8proc_ssize_t(s.size()), &buf,
                                            utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
    if (n < 0) {
        // Cannot happen for repaired input; reported rather than silently skipping normalization.
        throw InputError(fmt::format("text normalization failed: {}", utf8proc_errmsg(n)));
    }
    out.append(reinterpret_cast<const char*>(buf), size_t(n));
    std::free(buf);
}

// NFC of valid UTF-8, as HF computes it. An inert code point is a starter that composes with
// nothing, so normalizing the spans between them separately equals normalizing with HF's tables.
std::string nfc(std::string_view s) {
    if (is_ascii(s)) return std::string(s);  // ASCII is always NFC
    std::string out;
    out.reserve(s.size());
    size_t start = 0;
    for (size_t i = 0; i < s.size();) {
        const size_t at = i;
        if (!nfc_inert(next_codepoint(s, i))) continue;
        utf8proc_nfc(s.substr(start, at - start), out);
        out.append(s.substr(at, i - at));
        start = i;
    }
    utf8proc_nfc(s.substr(start), out);
    return out;
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte <-> unicode table: printable Latin-1 bytes stand for themselves, the other 68 bytes
// are moved to U+0100.. in byte order, so every byte is a visible, non-space character.

struct ByteMap {
    std::array<uint32_t, 256> to_cp{};
    std::array<int16_t, 324>
        from_cp{};  // code point -> byte, -1 if none; all code points are < 324

    ByteMap() {
        from_cp.fill(-1);
        uint32_t extra = 256;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool printable =
                (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            to_cp[b] = printable ? b : extra++;
            from_cp[to_cp[b]] = int16_t(b);
        }
    }
};

const ByteMap& byte_map() {
    static const ByteMap map;
    return map;
}

std::string bytes_to_piece(std::string_view bytes) {
    std::string out;
    out.reserve(bytes.size() * 2);
    for (char c : bytes) append_utf8(out, byte_map().to_cp[uint8_t(c)]);
    return out;
}

// ---------------------------------------------------------------------------------------------

struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool normalized = false;  // matched on the NFC text rather than on the raw text
    std::string match;        // what is searched for: content, NFC'd when `normalized` (as HF does)
};

struct MergeInfo {
    int32_t rank;
    int32_t id;  // id of the merged token
};

uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t(uint32_t(left)) << 32) | uint32_t(right);
}

struct Pcre2CodeDeleter {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};

std::string read_file(const fs::path& path, std::string_view what) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
        throw ModelError(fmt::format("tokenizer file not found: {}", path.string()),
                         fmt::format("the model directory must contain {}", what));
    }
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    if (!in.good() && !in.eof()) throw ModelError(fmt::format("cannot read {}", path.string()));
    return std::move(ss).str();
}

// obj[key] as a string, or `fallback` when obj is not an object, lacks the key or holds null.
std::string str_field(const json& obj, const char* key, std::string fallback = {}) {
    if (!obj.is_object()) return fallback;
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    return it->is_string() ? it->get<std::string>() : it->dump();
}

bool bool_field(const json& obj, const char* key, bool fallback) {
    if (!obj.is_object()) return fallback;
    auto it = obj.find(key);
    return it != obj.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

json parse_json(const fs::path& path, std::string_view what) {
    const std::string text = read_file(path, what);
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw ModelError(fmt::format("{}: invalid JSON: {}", path.string(), e.what()),
                         "the file is truncated or corrupt; download it again");
    }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
    std::vector<std::string> pieces;  // id -> vocab piece or added content; "" for unused ids
    std::vector<uint8_t> is_added;    // id -> 1 for added tokens
    StringMap vocab;                  // byte-level piece -> id (regular tokens)
    StringMap added_by_content;
    std::vector<AddedToken> added;
    // first byte -> indices into `added`, longest content first (leftmost-longest matching)
    std::array<std::vector<uint32_t>, 256> added_by_first_byte;
    bool has_normalized_added = false;
    std::unordered_map<uint64_t, MergeInfo> merges;
    std::array<int32_t, 256> byte_id{};  // id of each single-byte token, -1 if absent
    bool normalize_nfc = true;
    bool ignore_merges = false;
    std::unique_ptr<pcre2_code, Pcre2CodeDeleter> regex;

    using Cache =
        std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>;

    void encode_text(std::string_view text, Specials specials, std::vector<int32_t>& ids,
                     Cache& cache) const;
    void encode_normalized(std::string_view text, Specials specials, std::vector<int32_t>& ids,
                           Cache& cache) const;
    void split_words(std::string_view text, std::vector<int32_t>& ids, Cache& cache) const;
    void bpe_word(std::string_view word, std::vector<int32_t>& ids, Cache& cache) const;
    void bpe(std::string_view word, std::vector<int32_t>& ids) const;

    // Calls on_text(span) / on_token(id) in order, splitting `text` at added tokens of the given
    // normalized-ness (leftmost match, longest at that position, like HF's aho-corasick).
    template <class OnText, class OnToken>
    void split_added(std::string_view text, bool normalized, OnText&& on_text,
                     OnToken&& on_token) const {
        size_t start = 0, i = 0;
        while (i < text.size()) {
            const AddedToken* hit = nullptr;
            for (uint32_t k : added_by_first_byte[uint8_t(text[i])]) {
                const AddedToken& t = added[k];
                if (t.normalized == normalized && text.substr(i).starts_with(t.match)) {
                    hit = &t;
                    break;
                }
            }
            if (!hit) {
                ++i;
                continue;
            }
            if (i > start) on_text(text.substr(start, i - start));
            on_token(hit->id);
            i += hit->match.size();
            start = i;
        }
        if (start < text.size()) on_text(text.substr(start));
    }

    void add_vocab_entry(const fs::path& file, const std::string& piece, const json& value);
    void add_added_token(const fs::path& file, int64_t id, const json& token);
    void add_merge(const fs::path& file, size_t line, std::string_view left, std::string_view right,
                   int32_t rank);
    void finish(const fs::path& source);

    static Tokenizer from_doc(const json& doc, const fs::path& file);  // tokenizer.json contents
};

void Tokenizer::Impl::encode_text(std::string_view text, Specials specials,
                                  std::vector<int32_t>& ids, Cache& cache) const {
    if (specials == Specials::as_text || added.empty()) {
        encode_normalized(normalize_nfc ? nfc(text) : std::string(text), specials, ids, cache);
        return;
    }
    // Pass 1 (HF AddedVocabulary): tokens with normalized=false match the raw text, and each
    // remaining span is normalized on its own, so NFC never composes across a special token.
    split_added(
        text, false,
        [&](std::string_view span) {
            encode_normalized(normalize_nfc ? nfc(span) : std::string(span), specials, ids, cache);
        },
        [&](int32_t id) { ids.push_back(id); });
}

void Tokenizer::Impl::encode_normalized(std::string_view text, Specials specials,
                                        std::vector<int32_t>& ids, Cache& cache) const {
    if (specials == Specials::as_text || !has_normalized_added) {
        split_words(text, ids, cache);
        return;
    }
    // Pass 2: tokens with normalized=true match the normalized text.
    split_added(
        text, true, [&](std::string_view span) { split_words(span, ids, cache); },
        [&](int32_t id) { ids.push_back(id); });
}

void Tokenizer::Impl::split_words(std::string_view text, std::vector<int32_t>& ids,
                                  Cache& cache) const {
    if (text.empty()) return;
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(regex.get(), nullptr), &pcre2_match_data_free);
    if (!md) throw std::bad_alloc();
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos < text.size()) {
        // Input is valid UTF-8 by construction (repaired, then NFC), so the UTF check is skipped.
        const int rc = pcre2_match(regex.get(), subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                                   md.get(), nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            throw InputError(fmt::format("text could not be split into words ({} at byte {})",
                                         reinterpret_cast<const char*>(msg), pos),
                             "shorten the text or split it into sentences");
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
        const size_t m0 = ov[0], m1 = ov[1];
        // Split "Isolated": unmatched gaps are words too. The Qwen2 pattern matches every
        // character, so gaps only exist in principle.
        if (m0 > pos) bpe_word(text.substr(pos, m0 - pos), ids, cache);
        if (m1 == m0) {  // cannot happen with this pattern; guards against an endless loop
            pos = m0 + 1;
            while (pos < text.size() && (uint8_t(text[pos]) & 0xC0) == 0x80) ++pos;
            bpe_word(text.substr(m0, pos - m0), ids, cache);
            continue;
        }
        bpe_word(text.substr(m0, m1 - m0), ids, cache);
        pos = m1;
    }
    if (pos < text.size()) bpe_word(text.substr(pos), ids, cache);
}

void Tokenizer::Impl::bpe_word(std::string_view word, std::vector<int32_t>& ids,
                               Cache& cache) const {
    if (word.size() > kMaxCachedWordBytes) {
        bpe(word, ids);
        return;
    }
    if (auto it = cache.find(word); it != cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
    }
    const size_t before = ids.size();
    bpe(word, ids);
    cache.emplace(std::string(word),
                  std::vector<int32_t>(ids.begin() + ptrdiff_t(before), ids.end()));
}

// BPE with a heap of candidate pairs: O(n log n) in the word length, so a 100k-byte "word" is fine.
// Order is HF's: lowest merge rank first, ties to the leftmost pair.
void Tokenizer::Impl::bpe(std::string_view word, std::vector<int32_t>& ids) const {
    if (ignore_merges) {
        if (auto it = vocab.find(bytes_to_piece(word)); it != vocab.end()) {
            ids.push_back(it->second);
            return;
        }
    }
    struct Symbol {
        int32_t id;
        int32_t prev, next;  // -1 at the ends
    };
    std::vector<Symbol> sym;
    sym.reserve(word.size());
    for (char c : word) {
        const int32_t id = byte_id[uint8_t(c)];
        if (id < 0) continue;  // HF BPE without unk_token drops characters missing from the vocab
        const auto n = int32_t(sym.size());
        sym.push_back({id, n - 1, -1});
        if (n > 0) sym[size_t(n - 1)].next = n;
    }
    if (sym.size() <= 1) {
        if (!sym.empty()) ids.push_back(sym[0].id);
        return;
    }

    struct Candidate {
        int32_t rank, pos, left, right, merged;
        bool operator>(const Candidate& o) const {
            return rank != o.rank ? rank > o.rank : pos > o.pos;
        }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    auto push_pair = [&](int32_t pos) {
        const int32_t next = sym[size_t(pos)].next;
        if (next < 0) return;
        const int32_t l = sym[size_t(pos)].id, r = sym[size_t(next)].id;
        if (auto it = merges.find(pair_key(l, r)); it != merges.end())
            heap.push({it->second.rank, pos, l, r, it->second.id});
    };
    for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) push_pair(i);

    while (!heap.empty()) {
        const Candidate c = heap.top();
        heap.pop();
        Symbol& s = sym[size_t(c.pos)];
        // A stale entry: the left symbol was absorbed (id -1) or either side has since grown.
        // Merged tokens are strictly longer, so equal ids mean the pair is unchanged.
        if (s.id != c.left || s.next < 0 || sym[size_t(s.next)].id != c.right) continue;
        Symbol& right = sym[size_t(s.next)];
        s.id = c.merged;
        right.id = -1;
        s.next = right.next;
        if (s.next >= 0) sym[size_t(s.next)].prev = c.pos;
        if (s.prev >= 0) push_pair(s.prev);
        push_pair(c.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[size_t(i)].next) ids.push_back(sym[size_t(i)].id);
}

// Builds the derived tables once vocab, added tokens and merges are in place.
void Tokenizer::Impl::finish(const fs::path& source) {
    for (uint32_t b = 0; b < 256; ++b) {
        std::string piece;
        append_utf8(piece, byte_map().to_cp[b]);
        auto it = vocab.find(piece);
        byte_id[b] = it == vocab.end() ? -1 : it->second;
    }
    for (AddedToken& t : added) {
        if (t.content.empty())
            throw ModelError(
                fmt::format("{}: added token {} has empty content", source.string(), t.id));
        t.match =
            t.normalized && normalize_nfc ? nfc(t.content) : t.content;  // JSON text is valid UTF-8
    }
    std::stable_sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) {
        return a.match.size() > b.match.size();
    });
    for (uint32_t k = 0; k < added.size(); ++k) {
        added_by_first_byte[uint8_t(added[k].match[0])].push_back(k);
        has_normalized_added = has_normalized_added || added[k].normalized;
    }

    int err = 0;
    PCRE2_SIZE err_offset = 0;
    regex.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kQwen2PatternPcre2.data()),
                              kQwen2PatternPcre2.size(), PCRE2_UTF | PCRE2_UCP, &err, &err_offset,
                              nullptr));
    QTTS_CHECK(regex != nullptr, "PCRE2 rejected the Qwen2 split pattern (error {} at {})", err,
               err_offset);
    // JIT is an optional PCRE2 feature; the interpreter gives the same matches, only slower.
    pcre2_jit_compile(regex.get(), PCRE2_JIT_COMPLETE);
}

void Tokenizer::Impl::add_vocab_entry(const fs::path& file, const std::string& piece,
                                      const json& value) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() >= kMaxTokenId)
        throw ModelError(
            fmt::format("{}: token '{}' has an invalid id {}", file.string(), piece, value.dump()));
    const auto id = value.get<int32_t>();
    if (size_t(id) >= pieces.size()) pieces.resize(size_t(id) + 1);
    if (piece.empty())
        throw ModelError(fmt::format("{}: the vocabulary has an empty token", file.string()));
    if (!pieces[size_t(id)].empty())
        throw ModelError(fmt::format("{}: id {} is used by both '{}' and '{}'", file.string(), id,
                                     pieces[size_t(id)], piece));
    pieces[size_t(id)] = piece;
    vocab.emplace(piece, id);
}

void Tokenizer::Impl::add_added_token(const fs::path& file, int64_t id, const json& t) {
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
        throw ModelError(
            fmt::format("{}: added token {} has no string 'content'", file.string(), id));
    if (id < 0 || id >= kMaxTokenId)
        throw ModelError(fmt::format("{}: added token has an invalid id {}", file.string(), id));
    const std::string content = t["content"].get<std::string>();
    for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
        if (bool_field(t, flag, false))
            throw ModelError(
                fmt::format("{}: added token '{}' sets '{}', which qtts does not implement",
                            file.string(), content, flag));
    }
    // Unstated `normalized` defaults to !special, as in transformers' AddedToken.
    AddedToken token{
        content, int32_t(id), bool_field(t, "normalized", !bool_field(t, "special", false)), {}};
    if (auto it = added_by_content.find(content); it != added_by_content.end()) {
        throw ModelError(fmt::format("{}: added token '{}' is listed twice (ids {} and {})",
                                     file.string(), content, it->second, id));
    }
    if (size_t(id) >= pieces.size()) pieces.resize(size_t(id) + 1);
    if (size_t(id) >= is_added.size()) is_added.resize(size_t(id) + 1);
    is_added[size_t(id)] = 1;
    // An added token may reuse a regular token's id (HF allows this); the added content wins.
    pieces[size_t(id)] = content;
    added_by_content.emplace(content, int32_t(id));
    added.push_back(std::move(token));
}

// `rank` is the merge's index in the merge list; a repeated merge keeps the later rank, as HF's
// HashMap construction does.
void Tokenizer::Impl::add_merge(const fs::path& file, size_t line, std::string_view left,
                                std::string_view right, int32_t rank) {
    auto l = vocab.find(left), r = vocab.find(right);
    std::string joined = std::string(left) + std::string(right);
    auto m = vocab.find(joined);
    if (l == vocab.end() || r == vocab.end() || m == vocab.end()) {
        const std::string_view missing = l == vocab.end()   ? left
                                         : r == vocab.end() ? right
                                                            : std::string_view(joined);
        throw ModelError(
            fmt::format("{}: merge {} '{} {}' uses token '{}', which is not in the vocabulary",
                        file.string(), line, left, right, missing),
            "vocab.json and merges.txt must come from the same tokenizer");
    }
    merges.insert_or_assign(pair_key(l->second, r->second), MergeInfo{rank, m->second});
}

namespace {

// "a b" -> {a, b}; false unless exactly two non-empty parts.
bool split_merge(std::string_view line, std::string_view& left, std::string_view& right) {
    const size_t sp = line.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
    if (line.find(' ', sp + 1) != std::string_view::npos) return false;
    left = line.substr(0, sp);
    right = line.substr(sp + 1);
    return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Tokenizer Tokenizer::from_directory(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        throw ModelError(fmt::format("model directory not found: {}", dir.string()),
                         "pass the directory containing vocab.json and merges.txt");
    }
    if (fs::is_regular_file(dir / "tokenizer.json", ec))
        return from_tokenizer_json(dir / "tokenizer.json");
    const fs::path config = dir / "tokenizer_config.json";
    return from_vocab_merges(dir / "vocab.json", dir / "merges.txt",
                             fs::is_regular_file(config, ec) ? config : fs::path());
}

Tokenizer Tokenizer::from_vocab_merges(const fs::path& vocab_json, const fs::path& merges_txt,
                                       const fs::path& tokenizer_config_json) {
    auto impl = std::make_shared<Impl>();

    const json vocab = parse_json(vocab_json, "vocab.json");
    if (!vocab.is_object())
        throw ModelError(
            fmt::format("{}: expected a JSON object of token -> id", vocab_json.string()));
    impl->vocab.reserve(vocab.size());
    for (const auto& [piece, id] : vocab.items()) impl->add_vocab_entry(vocab_json, piece, id);

    if (!tokenizer_config_json.empty()) {
        const json config = parse_json(tokenizer_config_json, "tokenizer_config.json");
        if (!config.is_object())
            throw ModelError(
                fmt::format("{}: expected a JSON object", tokenizer_config_json.string()));
        if (auto cls = config.find("tokenizer_class"); cls != config.end() && cls->is_string()) {
            const auto name = cls->get<std::string>();
            if (name != "Qwen2Tokenizer" && name != "Qwen2TokenizerFast")
                throw ModelError(fmt::format(
                    "{}: tokenizer_class '{}' is not supported (expected Qwen2Tokenizer)",
                    tokenizer_config_json.string(), name));
        }
        if (auto dec = config.find("added_tokens_decoder"); dec != config.end()) {
            if (!dec->is_object())
                throw ModelError(fmt::format("{}: 'added_tokens_decoder' must be an object",
                                             tokenizer_config_json.string()));
            for (const auto& [key, token] : dec->items()) {
                int64_t id = -1;
                try {
                    size_t used = 0;
                    id = std::stoll(key, &used);
                    if (used != key.size()) id = -1;
                } catch (const std::exception&) {
                }
                if (id < 0)
                    throw ModelError(fmt::format("{}: added_tokens_decoder key '{}' is not an id",
                                                 tokenizer_config_json.string(), key));
                impl->add_added_token(tokenizer_config_json, id, token);
            }
        }
    }

    const std::string merges = read_file(merges_txt, "merges.txt");
    std::string_view rest = merges;
    int32_t rank = 0;
    for (size_t line_no = 1; !rest.empty(); ++line_no) {
        const size_t nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        // As transformers' Qwen2Tokenizer: the "#version" header and empty lines are skipped.
        if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
        std::string_view left, right;
        if (!split_merge(line, left, right)) {
            throw ModelError(
                fmt::format("{}: line {} is not a merge of two tokens separated by one space",
                            merges_txt.string(), line_no),
                "the file is corrupt; download it again");
        }
        impl->add_merge(merges_txt, line_no, left, right, rank++);
    }
    impl->finish(vocab_json);
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_tokenizer_json(const fs::path& file) {
    const json doc = parse_json(file, "tokenizer.json");
    const std::string name = file.string();
    try {
        return Impl::from_doc(doc, file);
    } catch (const json::exception& e) {
        // A field of the wrong JSON type somewhere the checks below did not look.
        throw ModelError(fmt::format("{}: unexpected structure: {}", name, e.what()));
    }
}

Tokenizer Tokenizer::Impl::from_doc(const json& doc, const fs::path& file) {
    const std::string name = file.string();
    auto unsupported = [&](std::string_view what) {
        return ModelError(fmt::format(
            "{}: {} (qtts implements only the Qwen2 byte-level BPE pipeline)", name, what));
    };
    if (!doc.is_object() || !doc.contains("model") || !doc["model"].is_object())
        throw ModelError(fmt::format("{}: no 'model' object", name));
    const json& model = doc["model"];
    if (str_field(model, "type", "BPE") != "BPE") throw unsupported("model type is not BPE");
    if (!str_field(model, "continuing_subword_prefix").empty())
        throw unsupported("continuing_subword_prefix is set");
    if (!str_field(model, "end_of_word_suffix").empty())
        throw unsupported("end_of_word_suffix is set");
    if (bool_field(model, "byte_fallback", false)) throw unsupported("byte_fallback is set");
    if (model.contains("dropout") && !model["dropout"].is_null())
        throw unsupported("BPE dropout is set");

    auto impl = std::make_shared<Impl>();
    impl->ignore_merges = bool_field(model, "ignore_merges", false);

    const json norm = doc.value("normalizer", json());
    if (norm.is_null()) {
        impl->normalize_nfc = false;
    } else if (str_field(norm, "type") != "NFC") {
        throw unsupported(fmt::format("normalizer {} is not NFC", norm.dump()));
    }
    const json pre = doc.value("pre_tokenizer", json());
    const json none;
    const bool seq = str_field(pre, "type") == "Sequence" && pre.contains("pretokenizers") &&
                     pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 2;
    const json& split = seq ? pre["pretokenizers"][0] : none;
    const json& bytelevel = seq ? pre["pretokenizers"][1] : none;
    const bool split_ok = str_field(split, "type") == "Split" &&
                          str_field(split, "behavior") == "Isolated" &&
                          !bool_field(split, "invert", false) && split.contains("pattern") &&
                          str_field(split["pattern"], "Regex") == kQwen2Pattern;
    const bool bytelevel_ok = str_field(bytelevel, "type") == "ByteLevel" &&
                              !bool_field(bytelevel, "add_prefix_space", false) &&
                              !bool_field(bytelevel, "use_regex", true);
    if (!split_ok || !bytelevel_ok)
        throw unsupported("pre_tokenizer is not the Qwen2 Split + ByteLevel");

    if (!model.contains("vocab") || !model["vocab"].is_object())
        throw ModelError(fmt::format("{}: 'model.vocab' must be an object of token -> id", name));
    impl->vocab.reserve(model["vocab"].size());
    for (const auto& [piece, id] : model["vocab"].items()) impl->add_vocab_entry(file, piece, id);

    if (auto added = doc.find("added_tokens"); added != doc.end() && !added->is_null()) {
        if (!added->is_array())
            throw ModelError(fmt::format("{}: 'added_tokens' must be a list", name));
        for (const json& t : *added) {
            if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer())
                throw ModelError(fmt::format("{}: an added token has no integer 'id'", name));
            impl->add_added_token(file, t["id"].get<int64_t>(), t);
        }
    }

    if (!model.contains("merges") || !model["merges"].is_array())
        throw ModelError(fmt::format("{}: 'model.merges' must be a list", name));
    int32_t rank = 0;
    for (const json& m : model["merges"]) {
        const size_t index = size_t(rank) + 1;
        std::string_view left, right;
        if (m.is_string()) {
            if (!split_merge(m.get_ref<const std::string&>(), left, right))
                throw ModelError(
                    fmt::format("{}: merge {} '{}' is not two tokens separated by one space", name,
                                index, m.get_ref<const std::string&>()));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
            left = m[0].get_ref<const std::string&>();
            right = m[1].get_ref<const std::string&>();
        } else {
            throw ModelError(
                fmt::format("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", name, index));
        }
        impl->add_merge(file, index, left, right, rank++);
    }
    impl->finish(file);
    return Tokenizer(std::move(impl));
}

// ---------------------------------------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, Specials specials) const {
    std::string repaired;
    if (repair_utf8(text, repaired)) text = repaired;
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    Impl::Cache cache;  // per call, so concurrent encodes share nothing mutable
    impl_->encode_text(text, specials, ids, cache);
    return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    const ByteMap& bm = byte_map();
    std::string bytes;
    for (int32_t id : ids) {
        const std::string_view piece = token_piece(id);
        // HF's ByteLevel decoder: a token whose characters all come from the byte table becomes
        // those bytes; any other token (e.g. non-ASCII added content) is copied as UTF-8.
        const size_t start = bytes.size();
        bool all_mapped = true;
        for (size_t i = 0; i < piece.size();) {
            const uint32_t cp = next_codepoint(piece, i);
            if (cp >= bm.from_cp.size() || bm.from_cp[cp] < 0) {
                all_mapped = false;
                break;
            }
            bytes.push_back(char(bm.from_cp[cp]));
        }
        if (!all_mapped) {
            bytes.resize(start);
            bytes.append(piece);
        }
    }
    std::string repaired;
    return repair_utf8(bytes, repaired) ? repaired : bytes;
}

std::string_view Tokenizer::token_piece(int32_t id) const {
    if (id < 0 || size_t(id) >= impl_->pieces.size()) return {};
    return impl_->pieces[size_t(id)];
}

std::optional<int32_t> Tokenizer::find_token(std::string_view piece) const {
    if (auto it = impl_->added_by_content.find(piece); it != impl_->added_by_content.end())
        return it->second;
    if (auto it = impl_->vocab.find(piece); it != impl_->vocab.end()) return it->second;
    return std::nullopt;
}

int32_t Tokenizer::vocab_size() const {
    return int32_t(impl_->pieces.size());
}

bool Tokenizer::is_added(int32_t id) const {
    return id >= 0 && size_t(id) < impl_->is_added.size() && impl_->is_added[size_t(id)];
}

}  // namespace qtts
