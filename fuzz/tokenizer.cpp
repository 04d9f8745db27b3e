// Fuzzes user text on its way to token ids: prepare_text (UTF-8 check, control characters, trimming) and
// the byte-level BPE tokenizer of tests/data/tiny in both special-token modes, on arbitrary bytes
// (invalid UTF-8 included). Ids must be in the vocabulary and decode to valid UTF-8.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/engine.h"
#include "core/tokenizer.h"
#include "core/utf8.h"
#include "fuzz/fuzz_util.h"

namespace {

const qtts::Tokenizer& tokenizer() {
    static const qtts::Tokenizer tok = qtts::Tokenizer::from_directory(std::string(QTTS_TEST_DATA) + "/tiny");
    return tok;
}

void check_ids(const qtts::Tokenizer& tok, const std::vector<int32_t>& ids) {
    for (int32_t id : ids)
        if (id < 0 || id >= tok.vocab_size()) std::abort();
    if (!qtts::is_valid_utf8(tok.decode(ids))) std::abort();
}

}  // namespace

// Loads the tokenizer (151k merges) before fuzzing starts, so its load time never counts as a timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
    (void)tokenizer();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const qtts::Tokenizer& tok = tokenizer();
    const std::string raw(reinterpret_cast<const char*>(data), size);
    qtts::fuzz::expect_clean([&] {
        const std::string text = qtts::prepare_text(raw);
        check_ids(tok, tok.encode(text, qtts::Tokenizer::Specials::as_text));
    });
    qtts::fuzz::expect_clean([&] { check_ids(tok, tok.encode(raw, qtts::Tokenizer::Specials::parse)); });
    return 0;
}
