// Scalar storage types found in checkpoints and their conversion to fp32 (the CPU reference computes
// in fp32 whatever the stored type). bf16 -> fp32 is exact (upper 16 bits of the fp32 pattern).
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace qtts {

enum class DType { f32, f16, bf16, i64, i32, i16, i8, u8, boolean, f64 };

std::string_view dtype_name(DType t);
size_t dtype_size(DType t);
// Returns false when `name` (a safetensors dtype string such as "BF16") is unknown.
bool parse_dtype(std::string_view name, DType& out);

inline float bf16_to_f32(uint16_t v) {
    uint32_t bits = uint32_t(v) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

// Round-to-nearest-even, as torch does when casting to bfloat16.
inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // NaN stays NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return uint16_t(bits >> 16);
}

float f16_to_f32(uint16_t h);

// Converts `n` elements of type `t` at `src` to fp32 (floating types only).
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace qtts
