// The safetensors parser never trusts a header: each malformed file gives a ModelError naming the problem.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

// Builds a file image: u64 header length, header JSON, `data_bytes` zero bytes.
std::vector<uint8_t> make_file(const std::string& header, size_t data_bytes, int64_t claimed_len = -1) {
    std::vector<uint8_t> out(8 + header.size() + data_bytes, 0);
    uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(n >> (8 * i));
    std::memcpy(out.data() + 8, header.data(), header.size());
    return out;
}

std::string parse_error(const std::vector<uint8_t>& bytes) {
    try {
        SafetensorsFile::parse(bytes.data(), bytes.size(), "t.safetensors");
    } catch (const ModelError& e) {
        return e.what();
    }
    return "no error";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("a well-formed header parses with shapes, dtypes and data pointers") {
    const auto bytes = make_file(
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
        R"("b":{"dtype":"F32","shape":[],"data_offsets":[12,16]}})",
        16);
    const auto t = SafetensorsFile::parse(bytes.data(), bytes.size(), "t");
    REQUIRE(t.size() == 2);
    CHECK(t[0].name == "a");
    CHECK(t[0].dtype == DType::bf16);
    CHECK(t[0].shape == Shape{2, 3});
    CHECK(t[1].shape.empty());
}

TEST_CASE("truncated and lying files are rejected") {
    CHECK(contains(parse_error({1, 2, 3}), "too short"));
    const std::string h = R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
    CHECK(contains(parse_error(make_file(h, 16, 1 << 20)), "does not fit"));              // header length lies
    CHECK(contains(parse_error(make_file(h, 8)), "outside the 8-byte data section"));       // truncated data
    CHECK(contains(parse_error(make_file("{not json", 0)), "not valid JSON"));
    CHECK(contains(parse_error(make_file("[1,2]", 0)), "not a JSON object"));
}

TEST_CASE("offsets, sizes and dtypes are checked") {
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,4]}})", 16)),
                   "outside"));
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16)),
                   "is 12 bytes but F32 [4] needs 16"));
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"Q4","shape":[4],"data_offsets":[0,16]}})", 16)),
                   "unknown dtype \"Q4\""));
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,16]}})", 16)),
                   "malformed shape"));
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4]}})", 16)), "lacks"));
    // Shape product overflowing 64 bits must not wrap around into a "valid" size.
    CHECK(contains(parse_error(make_file(
                       R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,16]}})", 16)),
                   "overflows"));
}

TEST_CASE("overlapping tensors and duplicate names are rejected") {
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                         16)),
                   "overlap"));
    CHECK(contains(parse_error(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                         R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                         8)),
                   "names tensor 'a' twice"));
}

TEST_CASE("TensorStore checks shapes and names the tensor") {
    const auto store = TensorStore::open(test::tiny_model_dir() / "model.safetensors");
    CHECK(store.load("talker.model.norm.weight", {64}).numel() == 64);
    try {
        (void)store.load("talker.model.norm.weight", {128});
        FAIL("no throw");
    } catch (const ModelError& e) {
        CHECK(contains(e.what(), "tensor 'talker.model.norm.weight' has wrong shape; expected [128], got [64]"));
    }
    CHECK_THROWS_WITH_AS((void)store.info("nope"), doctest::Contains("missing tensor 'nope'"), ModelError);
}

TEST_CASE("bf16 tensors convert exactly to fp32") {
    const auto store = TensorStore::open(test::tiny_model_dir() / "model.safetensors");
    const auto& info = store.info("talker.model.norm.weight");
    REQUIRE(info.dtype == DType::bf16);
    const Tensor t = store.load("talker.model.norm.weight", {64});
    uint16_t raw;
    std::memcpy(&raw, info.data, 2);
    CHECK(t.data[0] == bf16_to_f32(raw));
    CHECK(f32_to_bf16(t.data[0]) == raw);
}

// Tensors of a million values or more are converted by several threads (model load); each thread takes a slice,
// so every value must still land at its own index, including around the slice edges and at an odd byte offset.
TEST_CASE("large tensors convert in parallel to the same values as one by one") {
    const size_t n = (size_t(3) << 20) + 7;
    std::vector<uint8_t> raw(2 * n + 1);
    for (size_t i = 0; i < n; ++i) {
        const uint16_t v = uint16_t(0x3f80 + (i * 2654435761u >> 20) % 0x3000);  // varied finite bf16 values
        std::memcpy(raw.data() + 1 + 2 * i, &v, 2);
    }
    std::vector<float> got(n, -1.0f);
    convert_to_f32(DType::bf16, raw.data() + 1, got.data(), n);
    size_t wrong = 0;
    for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, raw.data() + 1 + 2 * i, 2);
        wrong += got[i] != bf16_to_f32(v);
    }
    CHECK(wrong == 0);
}

TEST_CASE("zero-byte and missing files give a ModelError naming the file") {
    test::TempDir dir;
    const auto empty = dir.path / "model.safetensors";
    std::ofstream(empty).close();
    CHECK_THROWS_WITH_AS(TensorStore::open(empty), doctest::Contains("model.safetensors: file is 0 bytes"), ModelError);
    CHECK_THROWS_WITH_AS(TensorStore::open(dir.path / "absent.safetensors"), doctest::Contains("cannot open"),
                         ModelError);
}

TEST_CASE("sharded checkpoints resolve tensors through the index") {
    test::TempDir dir;
    const auto write = [&](const std::string& name, const std::vector<uint8_t>& bytes) {
        std::ofstream(dir.path / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), long(bytes.size()));
    };
    write("m-1.safetensors", make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
    write("m-2.safetensors", make_file(R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8));
    std::ofstream(dir.path / "model.safetensors.index.json")
        << R"({"weight_map":{"a":"m-1.safetensors","b":"m-2.safetensors"}})";
    const auto store = TensorStore::open_in(dir.path);
    CHECK(store.load("a", {1}).numel() == 1);
    CHECK(store.load("b", {2}).numel() == 2);
    std::ofstream(dir.path / "model.safetensors.index.json")
        << R"({"weight_map":{"a":"m-1.safetensors","c":"m-2.safetensors"}})";
    CHECK_THROWS_WITH_AS(TensorStore::open_in(dir.path), doctest::Contains("tensor 'c' is listed in shard"), ModelError);
}

}  // namespace qtts

namespace qtts {

TEST_CASE("a weight stored with an integer dtype is refused by name") {
    test::TempDir dir;
    std::vector<uint8_t> bytes(8);
    const std::string header = R"({"w":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})";
    for (int i = 0; i < 8; ++i) bytes[size_t(i)] = uint8_t(header.size() >> (8 * i));
    bytes.insert(bytes.end(), header.begin(), header.end());
    bytes.resize(bytes.size() + 8, 0);
    std::ofstream(dir.path / "m.safetensors", std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()), long(bytes.size()));
    const auto store = TensorStore::open(dir.path / "m.safetensors");
    CHECK_THROWS_WITH_AS((void)store.load("w", {2}), doctest::Contains("tensor 'w' has dtype I32; expected a floating type"),
                         ModelError);
}

}  // namespace qtts
