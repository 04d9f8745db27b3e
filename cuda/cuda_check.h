// Error checking for CUDA runtime calls: QTTS_CUDA_CHECK(expr) throws qtts::GpuError (exit code 6) with the
// expression, the CUDA error name and file:line; out-of-memory becomes "out of GPU memory ...". Usable from
// .cu files: this header pulls in no core/ header (the throwing function lives in cuda_check.cpp).
#pragma once

#include <cuda_runtime.h>

namespace qtts::cuda {

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
// Throws GpuError with `message` (and a generic hint); for failures that are not a cudaError_t.
[[noreturn]] void throw_gpu_error(const char* message);

}  // namespace qtts::cuda

#define QTTS_CUDA_CHECK(expr)                                                           \
    do {                                                                                \
        const cudaError_t qtts_err_ = (expr);                                           \
        if (qtts_err_ != cudaSuccess)                                                   \
            ::qtts::cuda::throw_cuda_error(qtts_err_, #expr, __FILE__, __LINE__);       \
    } while (0)
