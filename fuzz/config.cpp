// Fuzzes config.json, generation_config.json and speech_tokenizer/config.json parsing with validation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/model_config.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    qtts::fuzz::expect_clean([&] {
        const qtts::ModelConfig c = qtts::parse_model_config(text, "config.json");
        (void)c.summary();
    });
    qtts::fuzz::expect_clean([&] { (void)qtts::parse_generation_config(text, "generation_config.json"); });
    qtts::fuzz::expect_clean([&] { (void)qtts::parse_vocoder_config(text, "speech_tokenizer/config.json"); });
    return 0;
}
