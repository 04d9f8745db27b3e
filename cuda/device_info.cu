#include "cuda/device_info.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace qtts::cuda {

int device_count() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no device" error
        return 0;
    }
    return n;
}

std::string device_summary(int index) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return "unknown device";
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %d SMs, %.1f GiB)", p.name, p.major, p.minor, p.multiProcessorCount,
                  double(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
    return buf;
}

size_t memory_used_bytes() {
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return total - free;
}

}  // namespace qtts::cuda
