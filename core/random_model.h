// Random weights of a real Qwen3-TTS architecture, built in memory, for benchmarks and warmup profiles
// when no checkpoint is at hand. Timings on them are valid; the audio is noise. The tensors go through
// the same loaders as a real checkpoint (a synthetic TensorStore fabricates each one on demand).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/safetensors.h"

namespace qtts {

// config.json / speech_tokenizer/config.json text of a known size: "0.6b" or "1.7b" (Qwen3-TTS-12Hz-{0.6B,1.7B}-Base).
std::string random_model_config_json(std::string_view size);
const std::vector<std::string>& random_model_sizes();  // the sizes above, for option checks
std::string random_vocoder_config_json(std::string_view size);

// Rank-1 tensors (norm weights, biases, usage counts, log-scale SnakeBeta parameters) get U(0.5, 1);
// matrices get N(0, 1/fan_in), as bf16 values for the model (like a checkpoint: the GPU engine's bf16 upload
// is then exact, so the two engines run the same weights) and as plain fp32 for the speech tokenizer (stored
// fp32 in a checkpoint). The text embedding table [text_vocab, text_hidden] is materialized in bf16 because it
// is read by row (pass text_vocab = 0 for stores without one, e.g. the vocoder's).
enum class RandomValues { bf16, f32 };
TensorStore make_random_store(uint64_t seed, int64_t text_vocab, int64_t text_hidden, RandomValues values);

// Writes a minimal byte-level BPE (256 byte tokens, no merges) into `dir`: enough to tokenize any text.
void write_byte_level_tokenizer(const std::filesystem::path& dir);

}  // namespace qtts
