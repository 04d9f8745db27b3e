// GPU vocoder tests (CTest label gpu, part of qtts_cuda_tests): CudaVocoderStream against the CPU
// VocoderStream on the tiny checkpoint and on random weights of the real 0.6B decoder shapes, pushed in
// chunks of 1, 3, 7 and 32 frames over more frames than the attention window. Tolerance: relative RMS error
// (rms(gpu - cpu) / rms(cpu)) below 1e-4 and max |gpu - cpu| below 1e-3 of max |cpu|; both sides are fp32
// with different summation orders. The GPU kernels are deterministic, so every GPU chunking must equal the
// GPU single pass bit for bit, and replaying captured CUDA graphs must equal launching the kernels directly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/engine.h"
#include "core/error.h"
#include "core/random_model.h"
#include "core/vocoder.h"
#include "cuda/cuda_vocoder.h"

namespace qtts {

namespace {

std::filesystem::path vocoder_data_dir() { return QTTS_TEST_DATA; }

const Vocoder& tiny_vocoder() {
    static const TensorStore store = TensorStore::open_in(vocoder_data_dir() / "tiny" / "speech_tokenizer");
    static const VocoderConfig config = load_model_config(vocoder_data_dir() / "tiny").vocoder;
    static const Vocoder vocoder = Vocoder::load(store, config);
    return vocoder;
}

// Random weights of the real 0.6B decoder shapes, with biases, layer scales and ConvNeXt gammas scaled by 0.01
// (the real init) and the last conv by 0.02, so that the output stays well inside [-1, 1] (unscaled, over 99 %
// of it clamps, which would hide any difference).
const Vocoder& full_size_vocoder() {
    static const Vocoder vocoder = [] {
        auto base = std::make_shared<TensorStore>(make_random_store(7, 0, 0, RandomValues::f32));
        const TensorStore store = TensorStore::synthetic(
            [base](std::string_view name, const Shape& shape) {
                Tensor t = base->load(name, shape);
                float s = 1.0f;
                for (const char* small : {"bias", "scale", "gamma"})
                    if (name.find(small) != std::string_view::npos) s = 0.01f;
                if (name == "decoder.decoder.6.conv.weight") s = 0.02f;
                for (float& v : t.data) v *= s;
                return t;
            },
            "scaled random 0.6B decoder");
        return Vocoder::load(store, parse_vocoder_config(random_vocoder_config_json("0.6b"), "<random 0.6b>"));
    }();
    return vocoder;
}

std::vector<int32_t> random_codes(int64_t n_frames, const VocoderConfig& c, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> dist(0, int32_t(c.codebook_size) - 1);
    std::vector<int32_t> codes(size_t(n_frames * c.num_quantizers));
    for (int32_t& v : codes) v = dist(rng);
    return codes;
}

std::vector<float> push_in_chunks(VocoderBackend& stream, const std::vector<int32_t>& codes, int64_t chunk,
                                  int64_t G) {
    std::vector<float> out;
    const int64_t n = int64_t(codes.size()) / G;
    for (int64_t f = 0; f < n; f += chunk) {
        const int64_t m = std::min(chunk, n - f);
        stream.push(std::span<const int32_t>(codes.data() + f * G, size_t(m * G)), out);
    }
    return out;
}

struct Errors {
    double rel_rms = 0, rel_max = 0, clamped = 0;
};

Errors compare(const std::vector<float>& gpu, const std::vector<float>& cpu) {
    REQUIRE(gpu.size() == cpu.size());
    double d2 = 0, r2 = 0, dmax = 0, rmax = 0, clamped = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
        REQUIRE(std::isfinite(gpu[i]));
        const double d = double(gpu[i]) - double(cpu[i]);
        d2 += d * d;
        r2 += double(cpu[i]) * double(cpu[i]);
        dmax = std::max(dmax, std::fabs(d));
        rmax = std::max(rmax, std::fabs(double(cpu[i])));
        clamped += std::fabs(cpu[i]) >= 1.0f;
    }
    return {r2 > 0 ? std::sqrt(d2 / r2) : std::sqrt(d2), rmax > 0 ? dmax / rmax : dmax, clamped / double(cpu.size())};
}

constexpr double kRelRmsTol = 1e-4;
constexpr double kRelMaxTol = 1e-3;

void gpu_vs_cpu(const Vocoder& vocoder, int64_t n_frames, const char* label) {
    const VocoderConfig& c = vocoder.config();
    const int64_t G = c.num_quantizers;
    const auto codes = random_codes(n_frames, c, 11);
    std::vector<float> cpu;
    VocoderStream(vocoder, int64_t(1) << 30).push(codes, cpu);

    const auto weights = std::make_shared<const cuda::CudaVocoder>(vocoder);
    cuda::CudaVocoderStream whole(weights, n_frames);  // one pass over everything
    std::vector<float> gpu_whole;
    whole.push(codes, gpu_whole);
    const Errors e = compare(gpu_whole, cpu);
    MESSAGE(std::string(label) << ": GPU single pass of " << n_frames << " frames vs CPU: rel RMS " << e.rel_rms << ", max |d| / max |ref| "
                  << e.rel_max << " (" << 100 * e.clamped << "% of samples clamped)");
    CHECK(e.rel_rms < kRelRmsTol);
    CHECK(e.rel_max < kRelMaxTol);

    cuda::CudaVocoderStream stream(weights);  // max 32 frames per internal pass
    for (int64_t chunk : {1, 3, 7, 32}) {
        CAPTURE(chunk);
        stream.reset();
        const auto gpu = push_in_chunks(stream, codes, chunk, G);
        CHECK(stream.frames_done() == n_frames);
        REQUIRE(gpu.size() == gpu_whole.size());
        CHECK(std::memcmp(gpu.data(), gpu_whole.data(), gpu.size() * sizeof(float)) == 0);
        const Errors ec = compare(gpu, cpu);
        CHECK(ec.rel_rms < kRelRmsTol);
    }
    // A push longer than the internal chunk (32) is split inside the stream: still identical.
    stream.reset();
    std::vector<float> gpu_long;
    stream.push(codes, gpu_long);
    CHECK(std::memcmp(gpu_long.data(), gpu_whole.data(), gpu_long.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_SUITE("gpu") {

TEST_CASE("CudaVocoderStream matches the CPU stream: tiny checkpoint, chunks 1/3/7/32, bit-identical chunkings") {
    gpu_vs_cpu(tiny_vocoder(), 100, "tiny");
}

TEST_CASE("CudaVocoderStream matches the CPU stream: random full-size 0.6B decoder weights") {
    gpu_vs_cpu(full_size_vocoder(), 80, "full-size random");
}

TEST_CASE("CudaVocoderStream: reset restarts, bad codes throw without consuming") {
    const Vocoder& vocoder = tiny_vocoder();
    const VocoderConfig& c = vocoder.config();
    const auto codes = random_codes(5, c, 3);
    cuda::CudaVocoderStream stream(std::make_shared<const cuda::CudaVocoder>(vocoder));
    std::vector<float> a, b;
    stream.push(codes, a);
    stream.reset();
    stream.push(codes, b);
    REQUIRE(a.size() == b.size());
    std::vector<float> cpu;
    VocoderStream(vocoder).push(codes, cpu);
    size_t first = 0, n_diff = 0;
    for (size_t i = 0; i < a.size(); ++i)
        if (a[i] != b[i] && n_diff++ == 0) first = i;
    if (n_diff)
        MESSAGE(n_diff << " samples differ after reset, first at " << first << " (frame " << first / 1920 << "): " << a[first]
                       << " vs " << b[first] << ", CPU " << cpu[first] << "; rel RMS vs CPU: first push "
                       << compare(a, cpu).rel_rms << ", after reset " << compare(b, cpu).rel_rms);
    CHECK(n_diff == 0);
    std::vector<int32_t> bad = codes;
    bad[7] = int32_t(c.codebook_size);
    std::vector<float> out;
    CHECK_THROWS_AS(stream.push(bad, out), InputError);
    CHECK(out.empty());
    CHECK(stream.frames_done() == 5);
}

// Pushes of sizes[i % size] frames until n_frames; `rounds` times with a reset in between (the outputs of
// all rounds are appended).
std::vector<float> push_pattern(VocoderBackend& stream, const std::vector<int32_t>& codes, int64_t G,
                                const std::vector<int64_t>& sizes, int rounds) {
    std::vector<float> out;
    const int64_t n = int64_t(codes.size()) / G;
    for (int r = 0; r < rounds; ++r) {
        stream.reset();
        size_t i = 0;
        for (int64_t f = 0; f < n;) {
            const int64_t m = std::min(sizes[i++ % sizes.size()], n - f);
            stream.push(std::span<const int32_t>(codes.data() + f * G, size_t(m * G)), out);
            f += m;
        }
    }
    return out;
}

void graphs_vs_direct(const Vocoder& vocoder, int64_t n_frames) {
    const VocoderConfig& c = vocoder.config();
    const int64_t G = c.num_quantizers;
    const auto codes = random_codes(n_frames, c, 5);
    const auto weights = std::make_shared<const cuda::CudaVocoder>(vocoder);
    // Ramp, steady chunks, odd tails and pushes longer than the internal chunk (8): lengths 1..8 are used, more
    // than the 3 graph entries of `small`, so it mixes replays with direct launches.
    const std::vector<int64_t> sizes = {1, 2, 4, 8, 8, 3, 5, 13, 1, 7, 6, 2, 20};
    cuda::CudaVocoderStream direct(weights, 8, 0), small(weights, 8, 3), warmed(weights, 8);
    REQUIRE_FALSE(direct.graphs_enabled());
    if (!small.graphs_enabled()) {
        MESSAGE("QTTS_NO_GRAPHS is set: the graph path is not tested");
        return;
    }
    warmed.warmup(std::vector<int64_t>{1, 2, 4, 8});
    CHECK(warmed.graph_chunks() == 4);
    CHECK(warmed.frames_done() == 0);
    const auto ref = push_pattern(direct, codes, G, sizes, 2);
    const auto a = push_pattern(small, codes, G, sizes, 2);
    const auto b = push_pattern(warmed, codes, G, sizes, 2);
    CHECK(small.graph_chunks() == 3);
    CHECK(warmed.graph_chunks() == 8);
    REQUIRE(ref.size() == size_t(2 * n_frames * c.samples_per_frame));
    REQUIRE(a.size() == ref.size());
    REQUIRE(b.size() == ref.size());
    CHECK(std::memcmp(a.data(), ref.data(), ref.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(b.data(), ref.data(), ref.size() * sizeof(float)) == 0);
    // Both rounds (reset in between) are the same audio, and equal a single direct pass.
    CHECK(std::memcmp(ref.data(), ref.data() + ref.size() / 2, ref.size() / 2 * sizeof(float)) == 0);
    cuda::CudaVocoderStream whole(weights, n_frames, 0);
    std::vector<float> one;
    whole.push(codes, one);
    REQUIRE(one.size() == ref.size() / 2);
    CHECK(std::memcmp(one.data(), ref.data(), one.size() * sizeof(float)) == 0);
}

TEST_CASE("CudaVocoderStream: CUDA graph replays equal direct launches bit for bit (mixed chunks, small cache)") {
    SUBCASE("tiny checkpoint") { graphs_vs_direct(tiny_vocoder(), 100); }
    SUBCASE("random full-size 0.6B decoder weights") { graphs_vs_direct(full_size_vocoder(), 60); }
}

TEST_CASE("Session on CUDA (GPU vocoder): audio matches the CPU session") {
    ModelOptions cpu_options, gpu_options;
    cpu_options.device = Device::cpu;
    gpu_options.device = Device::cuda;
    const auto cpu_model = Model::load(vocoder_data_dir() / "tiny", cpu_options);
    const auto gpu_model = Model::load(vocoder_data_dir() / "tiny", gpu_options);
    Session cpu(cpu_model), gpu(gpu_model);
    SynthesisRequest r;
    r.text = "Hello from the GPU vocoder.";
    r.talker = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
    r.predictor = SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f};
    r.max_frames = 20;
    r.ignore_eos = true;
    for (int64_t chunk : {1, 4}) {
        r.vocoder_chunk_frames = chunk;
        const auto a = gpu.synthesize(r), b = cpu.synthesize(r);
        REQUIRE(a.codes == b.codes);
        const Errors e = compare(a.audio, b.audio);
        MESSAGE("session audio, vocoder chunk " << chunk << ": rel RMS " << e.rel_rms);
        CHECK(e.rel_rms < kRelRmsTol);
    }
}

}  // TEST_SUITE

}  // namespace qtts
