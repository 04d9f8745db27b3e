// Fuzzes the parity reference reader (the JSON fixture format of `qtts parity --reference`) against the
// tiny checkpoint's config.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/model_config.h"
#include "core/parity.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const qtts::ModelConfig config = qtts::load_model_config(std::string(QTTS_TEST_DATA) + "/tiny");
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    qtts::fuzz::expect_clean([&] {
        const qtts::ReferenceFile ref = qtts::parse_reference(text, "ref.json", config);
        for (const auto& item : ref.items)
            if (item.n_frames < 1 || item.codes.size() != size_t(item.n_frames * config.talker.num_code_groups))
                std::abort();
    });
    return 0;
}
