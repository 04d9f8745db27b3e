// Maps CUDA runtime errors to qtts::GpuError with a one-line message and a hint (see cuda_check.h).
#include "cuda/cuda_check.h"

#include <fmt/format.h>

#include "core/error.h"

namespace qtts::cuda {

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
    cudaGetLastError();  // clear a non-sticky error so the process can report and exit cleanly
    if (err == cudaErrorMemoryAllocation) {
        size_t free = 0, total = 0;
        const bool known = cudaMemGetInfo(&free, &total) == cudaSuccess;
        cudaGetLastError();
        throw GpuError(known ? fmt::format("out of GPU memory ({} MiB free of {} MiB; at {}:{})", free >> 20,
                                           total >> 20, file, line)
                             : fmt::format("out of GPU memory (at {}:{})", file, line),
                       "free GPU memory (other processes?), use a GPU with more memory, or use --device cpu");
    }
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver)
        throw GpuError(fmt::format("no usable CUDA device: {} ({})", cudaGetErrorString(err), cudaGetErrorName(err)),
                       "check nvidia-smi and the driver, or use --device cpu");
    throw GpuError(fmt::format("CUDA error {} ({}) in {} at {}:{}", cudaGetErrorName(err), cudaGetErrorString(err),
                               expr, file, line),
                   "rerun with --device cpu to check the input; report the error with `nvidia-smi` output");
}

void throw_gpu_error(const char* message) {
    throw GpuError(message, "rerun with --device cpu; report the error with `nvidia-smi` output");
}

}  // namespace qtts::cuda
