// Thin C++ API over the CUDA runtime for device discovery; compiled only when a toolkit is found.
#pragma once

#include <cstddef>
#include <string>

namespace qtts::cuda {

// Number of usable CUDA devices (0 when there is no driver or no GPU; never throws).
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" for device `index`.
std::string device_summary(int index);
// Bytes of the current device's memory in use by all processes (total - free); 0 without a device.
size_t memory_used_bytes();

}  // namespace qtts::cuda
