// Fuzzes the reference-audio reader (read_audio from memory through libsndfile's virtual I/O; the file
// reader shares the decoding code).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/wav.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    qtts::fuzz::expect_clean([&] {
        const qtts::AudioData a = qtts::read_audio(std::span<const uint8_t>(data, size), "fuzz.wav");
        if (a.channels < 1 || a.sample_rate < 1 || a.samples.size() % size_t(a.channels) != 0) std::abort();
    });
    return 0;
}
