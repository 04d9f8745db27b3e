#include "core/dtype.h"

#include "core/error.h"

namespace qtts {

namespace {
struct DTypeRow {
    DType type;
    std::string_view name;
    size_t size;
};
constexpr DTypeRow kDTypes[] = {
    {DType::f32, "F32", 4},  {DType::f16, "F16", 2}, {DType::bf16, "BF16", 2}, {DType::f64, "F64", 8},
    {DType::i64, "I64", 8},  {DType::i32, "I32", 4}, {DType::i16, "I16", 2},   {DType::i8, "I8", 1},
    {DType::u8, "U8", 1},    {DType::boolean, "BOOL", 1},
};
}  // namespace

std::string_view dtype_name(DType t) {
    for (const auto& row : kDTypes)
        if (row.type == t) return row.name;
    return "?";
}

size_t dtype_size(DType t) {
    for (const auto& row : kDTypes)
        if (row.type == t) return row.size;
    return 0;
}

bool parse_dtype(std::string_view name, DType& out) {
    for (const auto& row : kDTypes)
        if (row.name == name) {
            out = row.type;
            return true;
        }
    return false;
}

float f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalize
            exp = 127 - 15 + 1;
            while ((mant & 0x400) == 0) {
                mant <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
    switch (t) {
        case DType::f32:
            std::memcpy(dst, src, n * 4);
            return;
        case DType::bf16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
            return;
        }
        case DType::f16: {
            const auto* s = static_cast<const uint16_t*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
            return;
        }
        case DType::f64: {
            const auto* s = static_cast<const double*>(src);
            for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
            return;
        }
        default:
            throw Error(fmt::format("cannot convert dtype {} to F32", dtype_name(t)));
    }
}

}  // namespace qtts
