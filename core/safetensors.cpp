// Safetensors format: u64 little-endian header length N, N bytes of JSON, then the data section.
// Every header field is checked against the file before use; see safetensors.h.
#include "core/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // real headers are < 1 MiB; refuse absurd lengths
constexpr size_t kMaxRank = 8;

[[noreturn]] void bad_file(const std::string& file, const std::string& what) {
    throw ModelError(fmt::format("{}: {}", file, what),
                     "the file is corrupt or not a safetensors checkpoint; download it again");
}

// Parses JSON rejecting duplicate keys in the top-level object (a lying header could otherwise hide a tensor).
json parse_header_json(const std::string& text, const std::string& file) {
    std::set<std::string> seen;
    std::string duplicate;
    json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
            if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty())
                duplicate = parsed.get<std::string>();
        }
        return true;
    };
    json header;
    try {
        header = json::parse(text, cb);
    } catch (const json::exception& e) {
        bad_file(file, fmt::format("header is not valid JSON ({})", e.what()));
    }
    if (!duplicate.empty()) bad_file(file, fmt::format("header names tensor '{}' twice", duplicate));
    if (!header.is_object()) bad_file(file, "header is not a JSON object");
    return header;
}

// Names end up in one-line error messages: a name with a newline or escape sequence is refused up front.
bool has_control_chars(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

uint64_t checked_byte_count(const Shape& shape, DType dtype, const std::string& file, const std::string& name) {
    uint64_t n = dtype_size(dtype);
    for (int64_t d : shape) {
        if (d < 0) bad_file(file, fmt::format("tensor '{}' has a negative dimension", name));
        if (d != 0 && n > std::numeric_limits<uint64_t>::max() / uint64_t(d))
            bad_file(file, fmt::format("tensor '{}' shape {} overflows", name, shape_str(shape)));
        n *= uint64_t(d);
    }
    return n;
}

}  // namespace

std::vector<TensorInfo> SafetensorsFile::parse(const uint8_t* bytes, uint64_t file_size, const std::string& file) {
    if (file_size < 8) bad_file(file, fmt::format("file is {} bytes, too short for a safetensors header", file_size));
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
    if (header_len > kMaxHeaderBytes || header_len > file_size - 8)
        bad_file(file, fmt::format("header length {} does not fit in a file of {} bytes (truncated?)", header_len,
                                   file_size));
    const uint64_t data_size = file_size - 8 - header_len;
    const uint8_t* data = bytes + 8 + header_len;
    json header = parse_header_json(std::string(reinterpret_cast<const char*>(bytes + 8), header_len), file);

    std::vector<TensorInfo> tensors;
    for (auto& [name, entry] : header.items()) {
        if (name == "__metadata__") continue;
        if (has_control_chars(name))
            bad_file(file, fmt::format("tensor name {} holds control characters", json(name).dump()));
        if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
            !entry.contains("data_offsets"))
            bad_file(file, fmt::format("tensor '{}' lacks dtype, shape or data_offsets", name));
        TensorInfo t;
        t.name = name;
        t.file = file;
        const auto& dt = entry["dtype"];
        if (!dt.is_string() || !parse_dtype(dt.get<std::string>(), t.dtype))
            bad_file(file, fmt::format("tensor '{}' has unknown dtype {}", name, dt.dump()));
        const auto& shape = entry["shape"];
        if (!shape.is_array() || shape.size() > kMaxRank)
            bad_file(file, fmt::format("tensor '{}' has a malformed shape", name));
        for (const auto& d : shape) {
            if (!d.is_number_unsigned()) bad_file(file, fmt::format("tensor '{}' has a malformed shape", name));
            const uint64_t v = d.get<uint64_t>();
            if (v > uint64_t(std::numeric_limits<int64_t>::max()))
                bad_file(file, fmt::format("tensor '{}' has a malformed shape", name));
            t.shape.push_back(int64_t(v));
        }
        const auto& off = entry["data_offsets"];
        if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
            bad_file(file, fmt::format("tensor '{}' has malformed data_offsets", name));
        t.begin = off[0].get<uint64_t>();
        t.end = off[1].get<uint64_t>();
        if (t.begin > t.end || t.end > data_size)
            bad_file(file, fmt::format("tensor '{}' data_offsets [{}, {}] lie outside the {}-byte data section",
                                       name, t.begin, t.end, data_size));
        const uint64_t expected = checked_byte_count(t.shape, t.dtype, file, name);
        if (t.end - t.begin != expected)
            bad_file(file, fmt::format("tensor '{}' is {} bytes but {} {} needs {}", name, t.end - t.begin,
                                       dtype_name(t.dtype), shape_str(t.shape), expected));
        t.data = data + t.begin;
        tensors.push_back(std::move(t));
    }
    std::vector<const TensorInfo*> order;
    for (const auto& t : tensors) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < order.size(); ++i)
        if (order[i]->begin < order[i - 1]->end)
            bad_file(file, fmt::format("tensors '{}' and '{}' overlap", order[i - 1]->name, order[i]->name));
    return tensors;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
    const std::string file = path.string();
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        throw ModelError(fmt::format("{}: cannot open ({})", file, std::strerror(errno)),
                         "check the --model directory");
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        bad_file(file, "not a regular file");
    }
    std::shared_ptr<SafetensorsFile> out(new SafetensorsFile());
    out->path_ = file;
    out->map_size_ = size_t(st.st_size);
    if (out->map_size_ > 0) {
        void* m = ::mmap(nullptr, out->map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            ::close(fd);
            bad_file(file, fmt::format("cannot map the file ({})", std::strerror(errno)));
        }
        out->map_ = m;
    }
    ::close(fd);
    static const uint8_t kEmpty[1] = {0};
    const auto* bytes = out->map_ ? static_cast<const uint8_t*>(out->map_) : kEmpty;
    out->tensors_ = parse(bytes, out->map_size_, file);
    return out;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_) ::munmap(map_, map_size_);
}

TensorStore TensorStore::open(const fs::path& path) {
    TensorStore store;
    const std::string p = path.string();
    if (p.size() > 5 && p.ends_with(".json")) {
        std::ifstream in(path);
        if (!in)
            throw ModelError(fmt::format("{}: cannot open the shard index", p), "check the --model directory");
        json index;
        try {
            index = json::parse(in);
        } catch (const json::exception& e) {
            throw ModelError(fmt::format("{}: not valid JSON ({})", p, e.what()), "download the file again");
        }
        if (!index.contains("weight_map") || !index["weight_map"].is_object())
            throw ModelError(fmt::format("{}: no weight_map object", p), "download the file again");
        std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
        std::map<std::string, std::string> wanted;  // tensor -> shard file name
        for (auto& [tensor, shard] : index["weight_map"].items()) {
            if (has_control_chars(tensor))
                throw ModelError(fmt::format("{}: tensor name {} holds control characters", p, json(tensor).dump()),
                                 "download the file again");
            if (!shard.is_string() || shard.get<std::string>().find('/') != std::string::npos)
                throw ModelError(fmt::format("{}: bad shard name for '{}'", p, tensor), "download the file again");
            wanted[tensor] = shard.get<std::string>();
            if (!shards.count(shard.get<std::string>()))
                shards[shard.get<std::string>()] = SafetensorsFile::open(path.parent_path() / shard.get<std::string>());
        }
        for (auto& [name, f] : shards) store.files_.push_back(f);
        for (const auto& f : store.files_)
            for (const auto& t : f->tensors()) {
                auto it = wanted.find(t.name);
                if (it != wanted.end() && fs::path(f->path()).filename() == it->second) store.by_name_[t.name] = &t;
            }
        for (const auto& [tensor, shard] : wanted)
            if (!store.by_name_.count(tensor))
                throw ModelError(fmt::format("{}: tensor '{}' is listed in shard {} but not found there", p, tensor, shard),
                                 "download the checkpoint again");
        store.description_ = fmt::format("{} ({} shards)", p, shards.size());
        return store;
    }
    store.files_.push_back(SafetensorsFile::open(path));
    for (const auto& t : store.files_[0]->tensors()) store.by_name_[t.name] = &t;
    store.description_ = p;
    return store;
}

TensorStore TensorStore::open_in(const fs::path& dir, std::string_view stem) {
    const fs::path single = dir / (std::string(stem) + ".safetensors");
    const fs::path index = dir / (std::string(stem) + ".safetensors.index.json");
    if (fs::exists(single)) return open(single);
    if (fs::exists(index)) return open(index);
    throw ModelError(fmt::format("{}: no {}.safetensors (or sharded index) found", dir.string(), stem),
                     "pass the model directory that holds config.json and model.safetensors");
}

bool TensorStore::contains(std::string_view name) const { return by_name_.find(name) != by_name_.end(); }

const TensorInfo& TensorStore::info(std::string_view name) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end())
        throw ModelError(fmt::format("{}: missing tensor '{}'", description_, name),
                         "the checkpoint does not match config.json or is incomplete");
    used_.insert(std::string(name));
    return *it->second;
}

TensorStore TensorStore::synthetic(Fabricator fabricate, std::string description) {
    TensorStore store;
    store.fabricate_ = std::move(fabricate);
    store.description_ = std::move(description);
    return store;
}

void TensorStore::add_owned(const std::string& name, DType dtype, const Shape& shape, std::vector<uint8_t> bytes) {
    QTTS_CHECK(uint64_t(bytes.size()) == uint64_t(shape_numel(shape)) * dtype_size(dtype), "size of '{}'", name);
    owned_bytes_.push_back(std::move(bytes));
    TensorInfo t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.end = owned_bytes_.back().size();
    t.data = owned_bytes_.back().data();
    t.file = description_;
    owned_info_.push_back(std::move(t));
    by_name_[name] = &owned_info_.back();
}

Tensor TensorStore::load(std::string_view name, const Shape& expected) const {
    if (fabricate_ && !contains(name)) return fabricate_(name, expected);
    const TensorInfo& t = info(name);
    if (t.shape != expected)
        throw ModelError(fmt::format("{}: tensor '{}' has wrong shape; expected {}, got {}", t.file, name,
                                     shape_str(expected), shape_str(t.shape)),
                         "the checkpoint does not match config.json");
    if (t.dtype != DType::f32 && t.dtype != DType::bf16 && t.dtype != DType::f16 && t.dtype != DType::f64)
        throw ModelError(fmt::format("{}: tensor '{}' has dtype {}; expected a floating type", t.file, name,
                                     dtype_name(t.dtype)),
                         "the checkpoint does not match config.json");
    Tensor out(expected);
    convert_to_f32(t.dtype, t.data, out.ptr(), size_t(out.numel()));
    return out;
}

std::optional<Tensor> TensorStore::load_optional(std::string_view name, const Shape& expected) const {
    if (!contains(name)) return std::nullopt;
    return load(name, expected);
}

void TensorStore::load_rows(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* out) const {
    QTTS_CHECK(t.shape.size() == 2 && row_begin >= 0 && row_begin <= row_end && row_end <= t.shape[0],
               "row range [{}, {}) of '{}'", row_begin, row_end, t.name);
    const size_t cols = size_t(t.shape[1]);
    const auto* base = static_cast<const uint8_t*>(t.data) + size_t(row_begin) * cols * dtype_size(t.dtype);
    convert_to_f32(t.dtype, base, out, size_t(row_end - row_begin) * cols);
}

std::vector<std::string> TensorStore::names() const {
    std::vector<std::string> out;
    for (const auto& [name, t] : by_name_) out.push_back(name);
    return out;
}

std::vector<std::string> TensorStore::unused() const {
    std::vector<std::string> out;
    for (const auto& [name, t] : by_name_)
        if (!used_.count(name)) out.push_back(name);
    return out;
}

}  // namespace qtts
