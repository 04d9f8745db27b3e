// Whole-file writes that never leave a partial file: the content goes to a temporary file beside the
// target, which is renamed into place only when complete (streamed audio: see core/audio_writer.h).
#pragma once

#include <filesystem>
#include <string_view>

namespace qtts {

// Throws OutputError "cannot write [what ]PATH" with a hint when any step fails; the temporary file is removed.
void write_file_atomically(const std::filesystem::path& path, std::string_view content, std::string_view what = {});

}  // namespace qtts
