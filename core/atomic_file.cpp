#include "core/atomic_file.h"

#include <unistd.h>

#include <fstream>
#include <system_error>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;

void write_file_atomically(const fs::path& path, std::string_view content, std::string_view what) {
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    const fs::path tmp = dir / fmt::format(".{}.part-{}", path.filename().string(), ::getpid());
    bool ok;
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        ok = out && out.write(content.data(), std::streamsize(content.size())) && out.flush();
    }
    std::error_code ec;
    if (ok) fs::rename(tmp, path, ec);
    if (!ok || ec) {
        fs::remove(tmp, ec);
        throw OutputError(what.empty() ? fmt::format("cannot write {}", path.string())
                                       : fmt::format("cannot write {} {}", what, path.string()),
                          "check that the directory exists, is writable and has free space");
    }
}

}  // namespace qtts
