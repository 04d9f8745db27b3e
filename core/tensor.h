// A dense fp32 tensor owned by value: the unit the CPU reference engine computes with.
// Row-major, shape in PyTorch storage order (a Linear weight is [out, in]).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace qtts {

using Shape = std::vector<int64_t>;

inline int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

inline std::string shape_str(const Shape& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

struct Tensor {
    Shape shape;
    std::vector<float> data;

    Tensor() = default;
    explicit Tensor(Shape s) : shape(std::move(s)), data(size_t(shape_numel(shape)), 0.0f) {}

    int64_t numel() const { return int64_t(data.size()); }
    int64_t dim(size_t i) const { return shape.at(i); }
    size_t rank() const { return shape.size(); }
    float* ptr() { return data.data(); }
    const float* ptr() const { return data.data(); }
    // Row `r` of a rank-2 tensor.
    const float* row(int64_t r) const { return data.data() + r * shape.back(); }
    float* row(int64_t r) { return data.data() + r * shape.back(); }
    bool empty() const { return data.empty(); }
};

}  // namespace qtts
