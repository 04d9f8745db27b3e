// Text tokenizer: Qwen2 byte-level BPE, id-for-id equal to HuggingFace `tokenizers` (encode with
// add_special_tokens=False). Pipeline: UTF-8 repair -> added tokens split off -> NFC -> Qwen2 split
// regex -> GPT-2 byte->unicode map -> BPE by merge rank. Owns loading/validating vocab.json +
// merges.txt (+ tokenizer_config.json) or tokenizer.json. Immutable after load; copies share state
// and every method is safe to call from several threads at once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtts {

// Usage:
//   auto tok = qtts::Tokenizer::from_directory(model_dir);
//   std::vector<int32_t> ids = tok.encode("<|im_start|>assistant\nHello.<|im_end|>\n");
//   // ids == {151644, 77091, 198, 9707, 13, 151645, 198}
//   std::string back = tok.decode(ids);
//   auto pad = tok.find_token("<tts_pad>");  // 151671
class Tokenizer {
public:
    // Whether added tokens written literally in the text (e.g. "<|im_end|>") become their ids (HF
    // behaviour), or are tokenized as ordinary characters (for untrusted user text). as_text covers
    // every added token, also the non-special <think>/<tool_call> family that HF's
    // split_special_tokens=True would still match.
    enum class Specials { parse, as_text };

    // tokenizer.json when the directory has one, else vocab.json + merges.txt (+
    // tokenizer_config.json when present). Throws ModelError naming the missing or bad file.
    static Tokenizer from_directory(const std::filesystem::path& dir);
    // HF fast-tokenizer file. Only the Qwen2 pipeline (NFC, Qwen2 split regex, ByteLevel, BPE) is
    // accepted; anything else is a ModelError rather than a silently different tokenization.
    static Tokenizer from_tokenizer_json(const std::filesystem::path& file);
    // Slow-tokenizer files. `tokenizer_config_json` may be an empty path (no added tokens).
    static Tokenizer from_vocab_merges(const std::filesystem::path& vocab_json,
                                       const std::filesystem::path& merges_txt,
                                       const std::filesystem::path& tokenizer_config_json);

    // HF `encode(text, add_special_tokens=False).ids`; no BOS/EOS. Invalid UTF-8 (which HF never
    // sees, since Python strings are Unicode) is first replaced by U+FFFD, one per maximal invalid
    // subpart as Python's errors="replace" does. Empty text gives no ids.
    std::vector<int32_t> encode(std::string_view text, Specials specials = Specials::parse) const;

    // Inverse of encode up to normalization: decode(encode(s)) == NFC(s). Ids without a token are
    // skipped (as HF does); byte sequences that are not UTF-8 (e.g. half a character) become
    // U+FFFD.
    std::string decode(std::span<const int32_t> ids) const;

    // The token's string as stored in the vocabulary (byte-level form, e.g. "Ġworld"), or the added
    // token's content; empty when no token has this id.
    std::string_view token_piece(int32_t id) const;
    // Inverse of token_piece: added tokens by content, regular tokens by byte-level form.
    std::optional<int32_t> find_token(std::string_view piece) const;
    // One past the largest token id (regular and added), e.g. 151676 for Qwen3-TTS. This is not the
    // embedding table size (151936), which is padded.
    int32_t vocab_size() const;
    // True for ids of added tokens (the <|...|> / <tts_...> family).
    bool is_added(int32_t id) const;

private:
    struct Impl;
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

}  // namespace qtts
