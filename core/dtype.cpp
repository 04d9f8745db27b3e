#include "core/dtype.h"

#include <omp.h>

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

// Tensor data in a safetensors file need not be aligned to its element size (the format does not require
// it), so elements are read with memcpy, which compiles to plain loads.
template <typename T, typename F>
void convert_each(const void* src, float* dst, size_t n, F to_f32) {
    const auto* bytes = static_cast<const unsigned char*>(src);
    for (size_t i = 0; i < n; ++i) {
        T v;
        std::memcpy(&v, bytes + i * sizeof(T), sizeof(T));
        dst[i] = to_f32(v);
    }
}

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
    if (n == 0) return;  // empty tensors may have null pointers, which memcpy must not see
    // Model load converts ~0.9 G bf16 values (0.6B): large tensors are split over the cores. Elementwise, so
    // the values do not depend on the split.
    constexpr size_t kParallelFrom = size_t(1) << 20;
    const bool convertible = t == DType::f32 || t == DType::bf16 || t == DType::f16 || t == DType::f64;
    if (convertible && n >= kParallelFrom && omp_get_max_threads() > 1 && !omp_in_parallel()) {  // no throw inside
        const size_t width = dtype_size(t);
#pragma omp parallel
        {
            const size_t parts = size_t(omp_get_num_threads()), k = size_t(omp_get_thread_num());
            const size_t begin = n * k / parts, end = n * (k + 1) / parts;
            convert_to_f32(t, static_cast<const unsigned char*>(src) + begin * width, dst + begin, end - begin);
        }
        return;
    }
    switch (t) {
        case DType::f32:
            std::memcpy(dst, src, n * 4);
            return;
        case DType::bf16:
            convert_each<uint16_t>(src, dst, n, bf16_to_f32);
            return;
        case DType::f16:
            convert_each<uint16_t>(src, dst, n, f16_to_f32);
            return;
        case DType::f64:
            convert_each<double>(src, dst, n, [](double v) { return float(v); });
            return;
        default:
            throw Error(fmt::format("cannot convert dtype {} to F32", dtype_name(t)));
    }
}

}  // namespace qtts
