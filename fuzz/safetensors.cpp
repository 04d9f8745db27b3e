// Fuzzes the safetensors header parser (SafetensorsFile::parse, the code SafetensorsFile::open runs on the
// mapped file). Every tensor it accepts must lie inside the input: its bytes are read (ASan checks) and
// float tensors are converted.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/safetensors.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    qtts::fuzz::expect_clean([&] {
        const auto tensors = qtts::SafetensorsFile::parse(data, size, "fuzz.safetensors");
        unsigned sum = 0;
        for (const auto& t : tensors) {
            const uint64_t bytes = t.end - t.begin;
            if (bytes > 0) {
                const auto* p = static_cast<const uint8_t*>(t.data);
                sum += p[0] + p[bytes - 1];
            }
            const bool is_float = t.dtype == qtts::DType::f32 || t.dtype == qtts::DType::f16 ||
                                  t.dtype == qtts::DType::bf16 || t.dtype == qtts::DType::f64;
            if (is_float && bytes <= (1u << 20)) {
                std::vector<float> out(bytes / qtts::dtype_size(t.dtype));
                qtts::convert_to_f32(t.dtype, t.data, out.data(), out.size());
            }
        }
        if (sum == 0xFFFFFFFFu) std::abort();  // keeps the reads
    });
    return 0;
}
