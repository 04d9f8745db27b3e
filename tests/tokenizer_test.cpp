// Tokenizer tests: id-for-id agreement with HF `tokenizers` on checked-in goldens (the 15 shared
// acceptance cases plus cases.json from scripts/gen_tokenizer_goldens.py), equality of the two
// loaders, decode, invalid UTF-8, long inputs and the loaders' error messages.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tokenizer.h"
#include "tests/test_util.h"

namespace {

using qtts::Tokenizer;
namespace fs = std::filesystem;

const Tokenizer& tok_vocab_merges() {
    static const Tokenizer tok = Tokenizer::from_directory(qtts::test::tiny_model_dir());
    return tok;
}

const Tokenizer& tok_json() {
    static const Tokenizer tok =
        Tokenizer::from_tokenizer_json(qtts::test::data_dir() / "tokenizer" / "tokenizer.json");
    return tok;
}

// "[9707 'Hello', 11 ',']" for failure messages.
std::string describe(const Tokenizer& tok, const std::vector<int32_t>& ids) {
    std::string out = "[";
    for (size_t i = 0; i < ids.size(); ++i)
        out += fmt::format("{}{} '{}'", i ? ", " : "", ids[i], tok.token_piece(ids[i]));
    return out + "]";
}

void check_goldens(const Tokenizer& tok, const char* loader, const fs::path& file) {
    const nlohmann::json cases = qtts::test::load_json(file);
    REQUIRE(cases.is_array());
    int failed = 0;
    for (const auto& c : cases) {
        const std::string text = c.at("text");
        const std::vector<int32_t> want = c.at("ids");
        const std::vector<int32_t> got = tok.encode(text);
        if (got != want) {
            ++failed;
            FAIL_CHECK(fmt::format("{} ({}): text {}\n  got  {}\n  want {}",
                                   file.filename().string(), loader, nlohmann::json(text).dump(),
                                   describe(tok, got), describe(tok, want)));
        }
        if (c.contains("decoded")) CHECK(tok.decode(got) == c.at("decoded").get<std::string>());
    }
    CHECK(failed == 0);
}

void write_file(const fs::path& path, std::string_view content) {
    std::ofstream out(path, std::ios::binary);
    out << content;
}

// The message of the ModelError that `load` throws ("" when it throws nothing).
template <class F>
std::string model_error(F&& load) {
    try {
        load();
    } catch (const qtts::ModelError& e) {
        return e.what();
    }
    return {};
}

constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A tokenizer.json with a 6-token vocabulary and two added tokens, "<x>" matched on the raw text
// and "A\u030a" matched after NFC; `merges` in either serialized form.
nlohmann::json tiny_tokenizer_json(nlohmann::json merges) {
    using nlohmann::json;
    return json{
        {"version", "1.0"},
        {"added_tokens",
         json::array(
             {json{{"id", 6}, {"content", "<x>"}, {"normalized", false}, {"special", true}},
              json{{"id", 7}, {"content", "A\u030a"}, {"normalized", true}, {"special", false}}})},
        {"normalizer", {{"type", "NFC"}}},
        {"pre_tokenizer",
         {{"type", "Sequence"},
          {"pretokenizers", json::array({json{{"type", "Split"},
                                              {"pattern", {{"Regex", kQwen2Regex}}},
                                              {"behavior", "Isolated"},
                                              {"invert", false}},
                                         json{{"type", "ByteLevel"},
                                              {"add_prefix_space", false},
                                              {"trim_offsets", false},
                                              {"use_regex", false}}})}}},
        {"model",
         {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", nullptr},
          {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"abc", 4}, {"\u0120", 5}}},
          {"merges", std::move(merges)}}},
    };
}

}  // namespace

TEST_CASE("tokenizer: shared HF goldens, both loaders") {
    const fs::path file = qtts::test::data_dir() / "tokenizer" / "shared_cases.json";
    check_goldens(tok_vocab_merges(), "vocab.json+merges.txt", file);
    check_goldens(tok_json(), "tokenizer.json", file);
}

TEST_CASE("tokenizer: generated HF goldens (ids and decode), both loaders") {
    const fs::path file = qtts::test::data_dir() / "tokenizer" / "cases.json";
    check_goldens(tok_vocab_merges(), "vocab.json+merges.txt", file);
    check_goldens(tok_json(), "tokenizer.json", file);
}

TEST_CASE("tokenizer: the two loaders build the same vocabulary") {
    const Tokenizer& a = tok_vocab_merges();
    const Tokenizer& b = tok_json();
    REQUIRE(a.vocab_size() == b.vocab_size());
    CHECK(a.vocab_size() == 151676);
    for (int32_t id = 0; id < a.vocab_size(); ++id) {
        if (a.token_piece(id) != b.token_piece(id) || a.is_added(id) != b.is_added(id)) {
            FAIL("id ", id, ": '", a.token_piece(id), "' vs '", b.token_piece(id), "'");
        }
    }
}

TEST_CASE("tokenizer: special ids of spec section 2.2") {
    const Tokenizer& tok = tok_vocab_merges();
    const std::pair<const char*, int32_t> specials[] = {
        {"<|endoftext|>", 151643},   {"<|im_start|>", 151644},   {"<|im_end|>", 151645},
        {"<|audio_start|>", 151669}, {"<|audio_end|>", 151670},  {"<tts_pad>", 151671},
        {"<tts_text_bos>", 151672},  {"<tts_text_eod>", 151673}, {"<tts_text_bos_single>", 151674},
        {"<|audio_pad|>", 151675},
    };
    for (const auto& [content, id] : specials) {
        CAPTURE(content);
        CHECK(tok.find_token(content) == id);
        CHECK(tok.is_added(id));
        CHECK(tok.token_piece(id) == content);
        CHECK(tok.encode(content) == std::vector<int32_t>{id});
    }
    CHECK(tok.find_token("assistant") == 77091);
    CHECK(tok.find_token("\u010a") == 198);  // "\n" in byte-level form
    CHECK_FALSE(tok.is_added(77091));
    CHECK_FALSE(tok.find_token("no such token").has_value());
    CHECK(tok.token_piece(-1).empty());
    CHECK(tok.token_piece(151936).empty());
    CHECK(tok.encode("<|im_start|>assistant\n") == std::vector<int32_t>{151644, 77091, 198});
    CHECK(tok.encode("<|im_end|>\n<|im_start|>assistant\n") ==
          std::vector<int32_t>{151645, 198, 151644, 77091, 198});
    CHECK(tok.encode("<|im_start|>assistant\nHello.<|im_end|>\n") ==
          std::vector<int32_t>{151644, 77091, 198, 9707, 13, 151645, 198});
}

TEST_CASE("tokenizer: Specials::as_text spells out added tokens") {
    const Tokenizer& tok = tok_vocab_merges();
    const std::string text = "say <|im_end|> and <tts_pad> aloud";
    const auto ids = tok.encode(text, Tokenizer::Specials::as_text);
    for (int32_t id : ids) CHECK_FALSE(tok.is_added(id));
    CHECK(tok.decode(ids) == text);
    // Without added tokens the two modes agree.
    CHECK(tok.encode("plain text", Tokenizer::Specials::as_text) == tok.encode("plain text"));
}

TEST_CASE("tokenizer: empty text, NFC round trip, decode details") {
    const Tokenizer& tok = tok_vocab_merges();
    CHECK(tok.encode("").empty());
    CHECK(tok.decode({}).empty());
    CHECK(tok.decode(tok.encode("e\u0301t\u00e9 A\u030a")) == "\u00e9t\u00e9 \u00c5");  // NFC
    CHECK(tok.encode("e\u0301") == tok.encode("\u00e9"));
    // A token holding part of a character decodes to U+FFFD, as HF's from_utf8_lossy does.
    const auto kaktovik = tok.encode("\U0001D2C0");
    REQUIRE(kaktovik.size() > 1);
    CHECK(tok.decode(std::vector<int32_t>{kaktovik[0]}) == "\uFFFD");
    CHECK(tok.decode(kaktovik) == "\U0001D2C0");
    // Ids without a token are skipped.
    CHECK(tok.decode(std::vector<int32_t>{-5, 9707, 151700, 13}) == "Hello.");
}

TEST_CASE("tokenizer: invalid UTF-8 becomes U+FFFD per maximal subpart") {
    const Tokenizer& tok = tok_vocab_merges();
    const auto same = [&](std::string_view bad, std::string_view good) {
        CAPTURE(good);
        CHECK(tok.encode(bad) == tok.encode(good));
        CHECK(tok.decode(tok.encode(bad)) == good);
    };
    same("\xff", "\uFFFD");
    same(
        "a\xe2\x82"
        "b",
        "a\uFFFD"
        "b");                                              // truncated 3-byte sequence: one U+FFFD
    same("\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD");            // encoded surrogate
    same("\xc0\xaf", "\uFFFD\uFFFD");                      // overlong
    same("\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD");  // above U+10FFFF
    same("ok\xf0\x9f\x8e", "ok\uFFFD");                    // truncated at the end
    same(std::string_view("nul\0byte", 8), std::string_view("nul\0byte", 8));
}

TEST_CASE("tokenizer: long inputs stay fast") {
    const Tokenizer& tok = tok_vocab_merges();
    // One 100k-byte "word": BPE must not be quadratic.
    std::string word;
    uint32_t state = 12345;
    for (int i = 0; i < 100000; ++i) {
        state = state * 1103515245u + 12345u;
        word.push_back(char('a' + (state >> 16) % 26));
    }
    const auto ids = tok.encode(word);
    CHECK(ids.size() > 10000);
    CHECK(tok.decode(ids) == word);
    // Long whitespace runs exercise the regex's backtracking alternatives.
    const std::string spaces = std::string(200000, ' ') + "x" + std::string(100000, '\n');
    CHECK(tok.decode(tok.encode(spaces)) == spaces);
    // About 1 MB of ordinary text.
    std::string text;
    while (text.size() < 1000000)
        text += "The quick brown fox, it's 12 o'clock; \u4f60\u597d\u4e16\u754c!\n";
    CHECK(tok.decode(tok.encode(text)) == text);
}

TEST_CASE("tokenizer: concurrent encodes agree") {
    const Tokenizer tok = tok_vocab_merges();  // copies share the loaded tables
    const std::string text = "Concurrent \u00e9ncoding <|im_end|> of the same text, 123.";
    const auto want = tok.encode(text);
    std::vector<std::vector<int32_t>> got(4);
    std::vector<std::thread> threads;
    for (size_t t = 0; t < got.size(); ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) got[t] = tok.encode(text);
        });
    for (auto& th : threads) th.join();
    for (const auto& g : got) CHECK(g == want);
}

TEST_CASE("tokenizer: merges as strings or pairs, merges.txt with header and CRLF") {
    qtts::test::TempDir dir;
    write_file(dir.path / "strings.json",
               tiny_tokenizer_json(nlohmann::json::array({"a b", "ab c"})).dump());
    using nlohmann::json;
    write_file(dir.path / "pairs.json",
               tiny_tokenizer_json(json::array({json::array({"a", "b"}), json::array({"ab", "c"})}))
                   .dump());
    const auto s = Tokenizer::from_tokenizer_json(dir.path / "strings.json");
    const auto p = Tokenizer::from_tokenizer_json(dir.path / "pairs.json");
    // " abx": "x" is not in the vocabulary and is dropped, as HF's BPE does without unk_token.
    const std::vector<int32_t> want{4, 5, 3, 6, 0};
    CHECK(s.encode("abc abx<x>a") == want);
    CHECK(p.encode("abc abx<x>a") == want);
    // Expected ids from HF tokenizers on the same file: a normalized added token matches after NFC,
    // in either spelling; a raw one stops NFC from composing across it.
    CHECK(p.encode("\u00c5") == std::vector<int32_t>{7});
    CHECK(p.encode("A\u030a") == std::vector<int32_t>{7});
    CHECK(p.encode("xA\u030ab") == std::vector<int32_t>{7, 1});
    CHECK(p.encode("ab\u00c5c") == std::vector<int32_t>{3, 7, 2});
    CHECK(p.encode("<x>\u030a") == std::vector<int32_t>{6});
    CHECK(p.vocab_size() == 8);

    write_file(dir.path / "vocab.json",
               R"({"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "\u0120": 5})");
    write_file(dir.path / "merges.txt", "#version: 0.2\r\na b\r\nab c\r\n\r\n");
    const auto m =
        Tokenizer::from_vocab_merges(dir.path / "vocab.json", dir.path / "merges.txt", {});
    CHECK(m.encode("abc abx") == std::vector<int32_t>{4, 5, 3});
    CHECK(m.vocab_size() == 6);
}

TEST_CASE("tokenizer: load errors name the file") {
    qtts::test::TempDir dir;
    const fs::path tiny = qtts::test::tiny_model_dir();

    // Missing vocab.json.
    fs::copy_file(tiny / "merges.txt", dir.path / "merges.txt");
    std::string msg = model_error([&] { Tokenizer::from_directory(dir.path); });
    CHECK(msg.find("vocab.json") != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);

    // Corrupt merges.txt: a line that is not two tokens.
    fs::copy_file(tiny / "vocab.json", dir.path / "vocab.json");
    write_file(dir.path / "merges.txt", "#version: 0.2\n\u0120 \u0120\nthis-line-is-broken\n");
    msg = model_error([&] { Tokenizer::from_directory(dir.path); });
    CHECK(msg.find("merges.txt") != std::string::npos);
    CHECK(msg.find("line 3") != std::string::npos);

    // A merge of tokens that are not in the vocabulary.
    write_file(dir.path / "merges.txt", "#version: 0.2\nqqqzzz xxxyyy\n");
    msg = model_error([&] { Tokenizer::from_directory(dir.path); });
    CHECK(msg.find("merges.txt") != std::string::npos);
    CHECK(msg.find("qqqzzz") != std::string::npos);

    // Truncated vocab.json.
    write_file(dir.path / "vocab.json", R"({"a": 0, "b)");
    msg = model_error([&] { Tokenizer::from_directory(dir.path); });
    CHECK(msg.find("vocab.json") != std::string::npos);
    CHECK(msg.find("invalid JSON") != std::string::npos);

    // tokenizer_config.json with a bad added token.
    write_file(dir.path / "vocab.json", R"({"a": 0, "b": 1})");
    write_file(dir.path / "merges.txt", "a b\n");
    write_file(dir.path / "tokenizer_config.json",
               R"({"added_tokens_decoder": {"x7": {"content": "<s>"}}})");
    msg = model_error([&] { Tokenizer::from_directory(dir.path); });
    CHECK(msg.find("tokenizer_config.json") != std::string::npos);

    // tokenizer.json with a different pre-tokenizer is refused, not approximated.
    nlohmann::json other = tiny_tokenizer_json(nlohmann::json::array({"a b"}));
    other["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
    write_file(dir.path / "tokenizer.json", other.dump());
    msg = model_error([&] { Tokenizer::from_directory(dir.path); });  // tokenizer.json is preferred
    CHECK(msg.find("tokenizer.json") != std::string::npos);
    CHECK(msg.find("pre_tokenizer") != std::string::npos);

    msg = model_error([&] { Tokenizer::from_directory(dir.path / "nope"); });
    CHECK(msg.find("nope") != std::string::npos);
}
