// Memory-mapped safetensors checkpoints. `SafetensorsFile` maps one file and validates its header against
// the file (bounds, overlaps, dtype/shape/byte counts) before any tensor is touched; `TensorStore` is one
// logical checkpoint (a single file, or shards named by `*.safetensors.index.json`) with name lookup and
// typed fp32 loading that checks the expected shape. Nothing in a header is trusted.
//
//   auto store = qtts::TensorStore::open(dir / "model.safetensors");
//   qtts::Tensor w = store.load("talker.codec_head.weight", {3072, 1024});   // any float dtype -> fp32
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace qtts {

struct TensorInfo {
    std::string name;
    DType dtype = DType::f32;
    Shape shape;
    uint64_t begin = 0;  // byte offset inside the file's data section
    uint64_t end = 0;
    const void* data = nullptr;  // points into the mapping; valid while the owning file lives
    std::string file;            // for error messages
};

class SafetensorsFile {
public:
    // Throws ModelError naming `path` for anything unreadable or inconsistent.
    static std::shared_ptr<SafetensorsFile> open(const std::filesystem::path& path);
    // Parses a header from memory (used by open() and by tests/fuzzers); `file_size` is the whole file.
    static std::vector<TensorInfo> parse(const uint8_t* bytes, uint64_t file_size, const std::string& name);

    ~SafetensorsFile();
    SafetensorsFile(const SafetensorsFile&) = delete;
    SafetensorsFile& operator=(const SafetensorsFile&) = delete;

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::string& path() const { return path_; }

private:
    SafetensorsFile() = default;
    std::string path_;
    void* map_ = nullptr;
    size_t map_size_ = 0;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, std::string> metadata_;
};

class TensorStore {
public:
    // `path` is a .safetensors file or a .safetensors.index.json (sharded checkpoint).
    static TensorStore open(const std::filesystem::path& path);
    // Opens `<dir>/<stem>.safetensors` or `<dir>/<stem>.safetensors.index.json`, whichever exists.
    static TensorStore open_in(const std::filesystem::path& dir, std::string_view stem = "model");

    bool contains(std::string_view name) const;
    const TensorInfo& info(std::string_view name) const;  // throws ModelError "missing tensor ..."
    // Loads as fp32 and checks the shape; throws ModelError naming tensor, expected and found shape.
    Tensor load(std::string_view name, const Shape& expected) const;
    // Loads only rows [row_begin, row_end) of a rank-2 tensor (large embedding tables).
    void load_rows(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* out) const;
    std::optional<Tensor> load_optional(std::string_view name, const Shape& expected) const;

    // A store with no files: tensors added with add_owned() are served as stored; any other load() is
    // answered by `fabricate(name, shape)` (random weights for benchmarks; see core/random_model.h).
    using Fabricator = std::function<Tensor(std::string_view name, const Shape& shape)>;
    static TensorStore synthetic(Fabricator fabricate, std::string description);
    void add_owned(const std::string& name, DType dtype, const Shape& shape, std::vector<uint8_t> bytes);
    bool is_synthetic() const { return bool(fabricate_); }

    std::vector<std::string> names() const;
    // Names present in the checkpoint that no load()/info() call asked for (reported as warnings).
    std::vector<std::string> unused() const;
    const std::string& description() const { return description_; }

private:
    std::vector<std::shared_ptr<SafetensorsFile>> files_;
    std::map<std::string, const TensorInfo*, std::less<>> by_name_;
    mutable std::set<std::string, std::less<>> used_;
    Fabricator fabricate_;
    std::deque<std::vector<uint8_t>> owned_bytes_;
    std::deque<TensorInfo> owned_info_;
    std::string description_;
};

}  // namespace qtts
