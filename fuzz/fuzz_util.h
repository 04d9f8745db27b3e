// Shared by the fuzz targets: the contract every parser keeps on any input. It either succeeds or throws
// qtts::Error with a one-line message; anything else (another exception type, a crash, a sanitizer report,
// a multi-line message) is a finding. Other exceptions escape LLVMFuzzerTestOneInput and libFuzzer reports
// them as a crash ("deadly signal").
#pragma once

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace qtts::fuzz {

template <typename F>
void expect_clean(F&& body) {
    try {
        body();
    } catch (const Error& e) {
        if (std::strchr(e.what(), '\n') || std::strchr(e.hint().c_str(), '\n')) {
            std::fprintf(stderr, "multi-line error message: %s\n", e.what());
            std::abort();
        }
    }
}

}  // namespace qtts::fuzz
