// Thin C++ API over the CUDA runtime for device discovery; compiled only when a toolkit is found.
#pragma once

#include <string>

namespace qtts::cuda {

// Number of usable CUDA devices (0 when there is no driver or no GPU; never throws).
int device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" for device `index`.
std::string device_summary(int index);

}  // namespace qtts::cuda
