// GPU parity tests (CTest label gpu): CudaTalker / CudaPredictor against the CPU reference on the tiny
// checkpoint, and full Session synthesis on both devices against the official fixtures. Weights are bf16 in
// the checkpoint, so both sides use identical weights; differences come only from fp32 summation order
// (tolerance 1e-4 of max |ref|, typically ~1e-6). Without a device only the no_gpu suite runs.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/engine.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"
#include "tests/test_util.h"

namespace qtts {

namespace {

std::filesystem::path data_dir() { return QTTS_TEST_DATA; }

std::shared_ptr<const Model> tiny(Device device) {
    static std::shared_ptr<const Model> cpu = Model::load(data_dir() / "tiny", {.device = Device::cpu});
    static std::shared_ptr<const Model> gpu = Model::load(data_dir() / "tiny", {.device = Device::cuda});
    return device == Device::cpu ? cpu : gpu;
}

std::vector<float> random_vec(std::mt19937& gen, size_t n, float scale) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float& x : v) x = d(gen);
    return v;
}

// max |a - b| / max |b|
double rel_err(std::span<const float> a, std::span<const float> b) {
    REQUIRE(a.size() == b.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        REQUIRE(std::isfinite(a[i]));
        num = std::max(num, double(std::fabs(a[i] - b[i])));
        den = std::max(den, double(std::fabs(b[i])));
    }
    return den > 0 ? num / den : num;
}

constexpr double kTol = 1e-4;

void talker_parity(int64_t prefill_len, int steps, uint32_t seed) {
    const auto model = tiny(Device::cpu);
    const int64_t E = model->config().talker.stack.n_embd;
    auto cpu = make_cpu_talker(model->weights());
    auto gpu = cuda::make_backends(model->config(), model->weights()).talker;
    std::mt19937 gen(seed);
    const auto embeds = random_vec(gen, size_t(prefill_len * E), 0.5f);
    cpu->prefill(embeds, prefill_len);
    gpu->prefill(embeds, prefill_len);
    double worst_h = rel_err(gpu->hidden(), cpu->hidden()), worst_l = rel_err(gpu->logits(), cpu->logits());
    CHECK(worst_h < kTol);
    CHECK(worst_l < kTol);
    for (int s = 0; s < steps; ++s) {
        const auto x = random_vec(gen, size_t(E), 0.5f);
        cpu->step(x);
        gpu->step(x);
        const double eh = rel_err(gpu->hidden(), cpu->hidden()), el = rel_err(gpu->logits(), cpu->logits());
        CAPTURE(s);
        CHECK(eh < kTol);
        CHECK(el < kTol);
        worst_h = std::max(worst_h, eh);
        worst_l = std::max(worst_l, el);
    }
    MESSAGE("prefill " << prefill_len << " + " << steps << " steps: worst rel err hidden " << worst_h << ", logits "
                       << worst_l);
}

}  // namespace

TEST_SUITE("gpu") {

TEST_CASE("CudaTalker matches CpuTalker: short prefill, one attention chunk") { talker_parity(3, 10, 1); }

TEST_CASE("CudaTalker matches CpuTalker: longer context, split attention") { talker_parity(50, 10, 2); }

TEST_CASE("CudaTalker matches CpuTalker: KV cache grows during decode") { talker_parity(250, 10, 3); }

TEST_CASE("CudaTalker: prefill restarts the sequence") {
    const auto model = tiny(Device::cpu);
    const int64_t E = model->config().talker.stack.n_embd;
    auto cpu = make_cpu_talker(model->weights());
    auto gpu = cuda::make_backends(model->config(), model->weights()).talker;
    std::mt19937 gen(4);
    for (int round = 0; round < 2; ++round) {
        const auto embeds = random_vec(gen, size_t(7 * E), 0.5f);
        cpu->prefill(embeds, 7);
        gpu->prefill(embeds, 7);
        for (int s = 0; s < 3; ++s) {
            const auto x = random_vec(gen, size_t(E), 0.5f);
            cpu->step(x);
            gpu->step(x);
        }
        CHECK(rel_err(gpu->logits(), cpu->logits()) < kTol);
    }
}

// The weight ring's copy method and its size change where and when rows land, never the arithmetic: unpaced
// bulk copies, the pre-Hopper cp.async path and a 4 KB ring (every phase cut into several chunks, the ring
// wrapping many times per launch) must give the default (paced bulk copies) ring's bits. So must grid
// barriers at every phase boundary on top of the tagged values (when a phase starts, its inputs are all there).
// Runs each variant on the tiny checkpoint (a prefill, 4 talker steps, a greedy and a sampled predictor frame) and
// checks that every variant gives the first one's talker logits and hidden states and codes bit for bit.
static void check_same_bits(const std::vector<cuda::CudaOptions>& variants) {
    const auto model = tiny(Device::cpu);
    const auto& c = model->config();
    const int64_t E = c.talker.stack.n_embd, G = c.talker.num_code_groups;
    std::vector<std::vector<float>> logits;
    std::vector<std::vector<int32_t>> codes;
    for (const auto& opt : variants) {
        Backends b = cuda::make_backends(c, model->weights(), opt);
        std::mt19937 gen(11);
        const auto embeds = random_vec(gen, size_t(9 * E), 0.5f);
        b.talker->prefill(embeds, 9);
        std::vector<float> all;
        for (int s = 0; s < 4; ++s) {
            b.talker->step(random_vec(gen, size_t(E), 0.5f));
            all.insert(all.end(), b.talker->logits().begin(), b.talker->logits().end());
            all.insert(all.end(), b.talker->hidden().begin(), b.talker->hidden().end());
        }
        logits.push_back(all);
        std::vector<int32_t> frames(static_cast<size_t>(2 * G));
        frames[0] = frames[size_t(G)] = 17;
        b.predictor->predict(b.talker->hidden(), std::span(frames).first(size_t(G)),
                             {.do_sample = false, .repetition_penalty = 1.0f}, CounterRng(3), 0);
        b.predictor->predict(b.talker->hidden(), std::span(frames).last(size_t(G)),
                             {.do_sample = true, .temperature = 0.9f, .top_k = 50}, CounterRng(3), 0);
        codes.push_back(frames);
    }
    for (size_t v = 1; v < variants.size(); ++v) {
        CAPTURE(v);
        CHECK(logits[v] == logits[0]);
        CHECK(codes[v] == codes[0]);
    }
}

TEST_CASE("the weight ring and the phase ordering: unpaced, cp.async copies, a small ring and grid barriers give the default's bits") {
    check_same_bits({{},
                     {.ring_pace_kb = 0},
                     {.ring_cp_async = true},
                     {.test_ring_bytes = 4096},
                     {.ring_cp_async = true, .test_ring_bytes = 4096},
                     {.ring_pace_kb = 1, .test_ring_bytes = 4096},
                     {.grid_barriers = true}});
}

// RTX 30/40/50 GPUs (sm_86/89/120) give a block at most 99 KB of shared memory: both kernels must fit with the real
// 0.6B shapes (before the predictor's sampling buffers were slimmed, its plan needed ~101 KB plus the ring and the
// CUDA engine fell back to the CPU there), and the tiny checkpoint must give the same bits in that plan.
TEST_CASE("99 KB of shared memory per block (RTX 30/40/50): the 0.6B kernels fit, and the bits are the default's") {
    const auto model = Model::load_random("0.6b", 5, {.device = Device::cpu});
    CHECK_NOTHROW(cuda::make_backends(model->config(), model->weights(), {.test_smem_bytes = 99 << 10}));
    check_same_bits({{}, {.test_smem_bytes = 99 << 10}, {.ring_cp_async = true, .test_smem_bytes = 99 << 10}});
}

// A GPU with few SMs: the tiny predictor's 8 attention items on 3 CTAs put up to 3 items (warps, K/V slots) in one
// CTA, and the talker's 4 heads take two rounds of items. One attention chunk per head in both, so that the talker's
// softmax is the same computation.
TEST_CASE("a grid of 3 CTAs gives the full grid's bits (several attention items and K/V slots per CTA)") {
    check_same_bits({{.max_chunks = 1}, {.max_chunks = 1, .test_grid_ctas = 3}, {.max_chunks = 1, .test_grid_ctas = 5}});
}

TEST_CASE("CudaPredictor matches CpuPredictor") {
    const auto model = tiny(Device::cpu);
    const auto& c = model->config();
    const int64_t E = c.talker.stack.n_embd, G = c.talker.num_code_groups;
    auto cpu = make_cpu_predictor(model->weights());
    auto gpu = cuda::make_backends(c, model->weights()).predictor;
    std::mt19937 gen(5);
    const SamplerSettings greedy{.do_sample = false, .repetition_penalty = 1.0f};
    const SamplerSettings sampled{.do_sample = true, .temperature = 0.9f, .top_k = 50};
    const SamplerSettings nucleus{.do_sample = true, .temperature = 0.8f, .top_k = 0, .top_p = 0.9f,
                                  .repetition_penalty = 1.3f};
    const SamplerSettings topk_p{.do_sample = true, .temperature = 1.1f, .top_k = 20, .top_p = 0.7f,
                                 .repetition_penalty = 1.05f};
    int frames = 0, greedy_equal = 0, sampled_equal = 0, sampled_total = 0;
    for (int f = 0; f < 12; ++f) {
        const auto hidden = random_vec(gen, size_t(E), 1.0f);
        const int32_t code0 = int32_t(gen() % 2048);
        std::vector<int32_t> a(static_cast<size_t>(G)), b(static_cast<size_t>(G));
        a[0] = b[0] = code0;
        cpu->predict(hidden, a, greedy, CounterRng(9), uint64_t(f));
        gpu->predict(hidden, b, greedy, CounterRng(9), uint64_t(f));
        CHECK(a == b);
        greedy_equal += a == b;
        ++frames;
        for (const SamplerSettings* s : {&sampled, &nucleus, &topk_p}) {
            std::fill(a.begin() + 1, a.end(), -1);
            std::fill(b.begin() + 1, b.end(), -1);
            cpu->predict(hidden, a, *s, CounterRng(1234 + f), uint64_t(f));
            gpu->predict(hidden, b, *s, CounterRng(1234 + f), uint64_t(f));
            for (int64_t k = 1; k < G; ++k) REQUIRE((b[size_t(k)] >= 0 && b[size_t(k)] < 2048));
            sampled_equal += a == b;
            ++sampled_total;
        }
    }
    MESSAGE("greedy frames identical: " << greedy_equal << "/" << frames << "; sampled frames identical: "
                                        << sampled_equal << "/" << sampled_total);
    // Sampling uses the same counter RNG and rules; logits differ by ~1e-6, so a draw can only flip at a
    // CDF boundary. Almost every frame must agree.
    CHECK(sampled_equal >= sampled_total - 2);
}

// The predictor's layer-0 table (CudaOptions::predictor_table) replaces the projection, norm and QKV product of
// passes 2 .. G-1 by a lookup computed at load with the prefill GEMM, which sums in another order than the decode
// matvec (~1e-7 relative in q/k/v). The codes must not change: greedy frames and sampled ones with every sampler
// rule, on the tiny checkpoint and on the full-size 0.6B architecture.
TEST_CASE("the predictor's layer-0 table gives the codes of passes that compute layer 0") {
    for (const bool full : {false, true}) {
        CAPTURE(full);
        const auto model = full ? Model::load_random("0.6b", 5, {.device = Device::cpu}) : tiny(Device::cpu);
        const auto& c = model->config();
        const int64_t E = c.talker.stack.n_embd, G = c.talker.num_code_groups, V0 = c.talker.stack.vocab_size;
        auto with = cuda::make_backends(c, model->weights()).predictor;
        auto without = cuda::make_backends(c, model->weights(), {.predictor_table = false}).predictor;
        std::mt19937 gen(21);
        int equal = 0, total = 0;
        for (int f = 0; f < 6; ++f) {
            const auto hidden = random_vec(gen, size_t(E), 1.0f);
            const int32_t code0 = int32_t(gen() % uint32_t(std::min<int64_t>(V0, 2048)));
            for (const SamplerSettings& s :
                 {SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f},
                  SamplerSettings{.do_sample = true, .temperature = 0.9f, .top_k = 50},
                  SamplerSettings{.do_sample = true, .temperature = 0.8f, .top_k = 0, .top_p = 0.9f,
                                  .repetition_penalty = 1.3f}}) {
                std::vector<int32_t> a(static_cast<size_t>(G), -1), b(static_cast<size_t>(G), -1);
                a[0] = b[0] = code0;
                with->predict(hidden, a, s, CounterRng(77 + f), uint64_t(f));
                without->predict(hidden, b, s, CounterRng(77 + f), uint64_t(f));
                CHECK(a == b);
                equal += a == b;
                ++total;
            }
        }
        MESSAGE("layer-0 table on / off, " << (full ? "0.6B" : "tiny") << ": frames identical " << equal << "/" << total);
    }
}

// The 1.7B Base architecture on random weights (Model::load_random: bf16 values, so both engines run the same
// weights): the talker is 2048 wide (FFN 6144) and the code predictor, still 1024 wide, sends every input through
// small_to_mtp_projection. Nothing in the kernels may be sized for 0.6B, so this must match the CPU as the tiny
// checkpoint does: same tolerance, greedy frames exactly. Select with -tc='*full-size*'.
TEST_CASE("full-size 1.7B random weights: talker (2048 wide) and predictor (MTP projection) match the CPU") {
    const auto model = Model::load_random("1.7b", 3, {.device = Device::cpu});
    const auto& c = model->config();
    REQUIRE(c.has_mtp_projection());
    const int64_t E = c.talker.stack.n_embd, G = c.talker.num_code_groups;
    REQUIRE(E == 2048);
    auto cpu_talker = make_cpu_talker(model->weights());
    auto cpu_predictor = make_cpu_predictor(model->weights());
    Backends gpu = cuda::make_backends(c, model->weights());
    std::mt19937 gen(17);
    const auto embeds = random_vec(gen, size_t(6 * E), 0.5f);
    cpu_talker->prefill(embeds, 6);
    gpu.talker->prefill(embeds, 6);
    double worst = std::max(rel_err(gpu.talker->hidden(), cpu_talker->hidden()),
                            rel_err(gpu.talker->logits(), cpu_talker->logits()));
    for (int s = 0; s < 3; ++s) {
        const auto x = random_vec(gen, size_t(E), 0.5f);
        cpu_talker->step(x);
        gpu.talker->step(x);
        worst = std::max({worst, rel_err(gpu.talker->hidden(), cpu_talker->hidden()),
                          rel_err(gpu.talker->logits(), cpu_talker->logits())});
    }
    CHECK(worst < kTol);
    const SamplerSettings greedy{.do_sample = false, .repetition_penalty = 1.0f};
    const SamplerSettings sampled{.do_sample = true, .temperature = 0.9f, .top_k = 50};
    int sampled_equal = 0;
    for (int f = 0; f < 3; ++f) {
        // The talker's hidden state drives the predictor, as in a session.
        const std::vector<float> h = f == 0 ? std::vector<float>(cpu_talker->hidden().begin(), cpu_talker->hidden().end())
                                            : random_vec(gen, size_t(E), 1.0f);
        std::vector<int32_t> a(static_cast<size_t>(G)), b(static_cast<size_t>(G));
        a[0] = b[0] = int32_t(gen() % 2048);
        cpu_predictor->predict(h, a, greedy, CounterRng(9), uint64_t(f));
        gpu.predictor->predict(h, b, greedy, CounterRng(9), uint64_t(f));
        CAPTURE(f);
        CHECK(a == b);
        cpu_predictor->predict(h, a, sampled, CounterRng(5), uint64_t(f));
        gpu.predictor->predict(h, b, sampled, CounterRng(5), uint64_t(f));
        sampled_equal += a == b;
    }
    MESSAGE("1.7B random: worst rel err (talker hidden/logits) " << worst << "; sampled predictor frames identical "
                                                                 << sampled_equal << "/3");
    CHECK(sampled_equal >= 2);  // a draw can flip only at a CDF boundary (logits differ by ~1e-6)
}

TEST_CASE("Session on CUDA reproduces the official fixture codes and the CPU engine") {
    const auto fixture = nlohmann::json::parse(std::ifstream(data_dir() / "fixtures" / "tiny_english.json"));
    Session cpu(tiny(Device::cpu)), gpu(tiny(Device::cuda));
    CHECK(gpu.backend_name() == "cuda");
    for (const auto& item : fixture["items"]) {
        CAPTURE(item["text"].get<std::string>());
        const SynthesisRequest r = test::fixture_request(item);
        const SynthesisResult a = gpu.synthesize(r);
        const std::vector<int32_t> expected = test::fixture_codes(item);
        CHECK(a.n_frames == item["n_frames"].get<int64_t>());
        CHECK(a.codes == expected);
        const SynthesisResult b = cpu.synthesize(r);
        CHECK(a.codes == b.codes);
    }
    // Default (sampled) settings: both devices draw from the same counter RNG.
    SynthesisRequest r;
    r.text = "Hello there, this is a sampled run.";
    r.max_frames = 12;
    r.seed = 42;
    const auto a = gpu.synthesize(r), b = cpu.synthesize(r);
    size_t same = 0;
    for (size_t i = 0; i < std::min(a.codes.size(), b.codes.size()); ++i) same += a.codes[i] == b.codes[i];
    MESSAGE("sampled session: " << same << "/" << b.codes.size() << " codes identical, frames " << a.n_frames << "/"
                                << b.n_frames);
    CHECK(a.n_frames >= 1);
}

// The device frame loop (codebook 0 drawn on the GPU, the next input summed there, frames enqueued per vocoder
// chunk) against the engine's host loop over the same backends: same codes, same stop, same audio bits.
void check_device_loop_matches_host_loop(Session& gpu, SynthesisRequest r) {
    SynthesisRequest host = r;
    host.host_frame_loop = true;
    const SynthesisResult a = gpu.synthesize(r), b = gpu.synthesize(host);
    CHECK(a.device_frame_loop);
    CHECK_FALSE(b.device_frame_loop);
    CHECK(a.codes == b.codes);
    CHECK(a.n_frames == b.n_frames);
    CHECK(a.stop == b.stop);
    CHECK(a.times.talker_steps == b.times.talker_steps);
    REQUIRE(a.audio.size() == b.audio.size());
    CHECK(std::memcmp(a.audio.data(), b.audio.data(), a.audio.size() * sizeof(float)) == 0);
}

TEST_CASE("the device frame loop gives the host loop's codes: greedy, sampled with penalty / top-k / top-p, offsets, chunkings") {
    Session gpu(tiny(Device::cuda));
    const auto fixture = nlohmann::json::parse(std::ifstream(data_dir() / "fixtures" / "tiny_english.json"));
    for (const auto& item : fixture["items"]) {
        SynthesisRequest r = test::fixture_request(item);
        r.vocoder_chunk_frames = 8;
        r.vocoder_ramp = true;
        const SynthesisResult a = gpu.synthesize(r);
        CHECK(a.device_frame_loop);
        CHECK(a.codes == test::fixture_codes(item));
        check_device_loop_matches_host_loop(gpu, r);
    }
    struct Case {
        SamplerSettings talker, predictor;
        uint64_t seed, offset;
        int64_t frames, chunk;
        bool ramp;
    } cases[] = {
        {{.do_sample = true, .temperature = 0.9f, .top_k = 50, .repetition_penalty = 1.05f}, {}, 42, 0, 40, 16, true},
        {{.do_sample = true, .temperature = 1.3f, .top_k = 0, .top_p = 0.8f, .repetition_penalty = 1.3f},
         {.do_sample = true, .temperature = 0.7f, .top_k = 20, .top_p = 0.9f}, 7, 1000, 23, 3, false},
        {{.do_sample = false, .repetition_penalty = 1.5f}, {.do_sample = false}, 0, 0, 17, 1, false},
    };
    for (const Case& k : cases) {
        CAPTURE(k.seed);
        SynthesisRequest r;
        r.text = "A sampled run with a repetition penalty, long enough for several chunks.";
        r.talker = k.talker;
        r.predictor = k.predictor;
        r.seed = k.seed;
        r.rng_frame_offset = k.offset;
        r.max_frames = k.frames;
        r.vocoder_chunk_frames = k.chunk;
        r.vocoder_ramp = k.ramp;
        r.ignore_eos = k.seed == 7;
        check_device_loop_matches_host_loop(gpu, r);
    }
}

TEST_CASE("the device frame loop stops where the host loop draws EOS, and the next request starts clean") {
    // The tiny model never draws its real EOS in 31 greedy frames; a copy whose EOS id is the fixture's codebook-0
    // code of frame 5 stops at its first occurrence from frame 2 on (EOS is banned at frames 0-1).
    const auto fixture = nlohmann::json::parse(std::ifstream(data_dir() / "fixtures" / "tiny_english.json"));
    const auto& item = fixture["items"][0];
    const std::vector<int32_t> codes = test::fixture_codes(item);
    const int64_t G = tiny(Device::cpu)->config().talker.num_code_groups;
    const int32_t eos = codes[size_t(5 * G)];
    int64_t expected = 5;
    for (int64_t f = 2; f < 5; ++f)
        if (codes[size_t(f * G)] == eos) expected = std::min(expected, f);
    const auto dir = std::filesystem::temp_directory_path() / fmt::format("qtts-eos-{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::copy(data_dir() / "tiny", dir, std::filesystem::copy_options::recursive);
    nlohmann::json config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
    int replaced = 0;
    const std::function<void(nlohmann::json&)> set_eos = [&](nlohmann::json& j) {
        for (auto it = j.begin(); it != j.end(); ++it) {
            if (it.key() == "codec_eos_token_id") it.value() = eos, ++replaced;
            else if (it.value().is_object()) set_eos(it.value());
        }
    };
    set_eos(config);
    REQUIRE(replaced >= 1);
    std::ofstream(dir / "config.json") << config.dump();
    Session gpu(Model::load(dir, {.device = Device::cuda}));
    std::filesystem::remove_all(dir);
    SynthesisRequest r = test::fixture_request(item);
    r.vocoder_chunk_frames = 4;  // EOS inside the second batch: frames after it are enqueued and do nothing
    const SynthesisResult a = gpu.synthesize(r);
    CHECK(a.device_frame_loop);
    CHECK(a.stop == StopReason::eos);
    CHECK(a.n_frames == expected);
    CHECK(std::equal(a.codes.begin(), a.codes.end(), codes.begin()));
    check_device_loop_matches_host_loop(gpu, r);
    // The stop flag and the codebook-0 history are per utterance: a request that ignores EOS runs to its cap.
    r.ignore_eos = true;
    r.max_frames = 9;
    const SynthesisResult b = gpu.synthesize(r);
    CHECK(b.stop == StopReason::frame_cap);
    CHECK(b.n_frames == 9);
    CHECK(std::equal(b.codes.begin(), b.codes.begin() + expected * G, codes.begin()));  // then EOS is banned
    check_device_loop_matches_host_loop(gpu, r);
}

TEST_CASE("a cancel mid-batch stops the device frame loop after the frame running, and the next request runs whole") {
    // The engine polls should_stop once before a batch and then while the batch runs; this observer says stop at
    // its second call, i.e. just after 64 frames were enqueued as one batch. The device checks the flag at the end
    // of every predictor frame, so the frame running then is the last; a batch of 64 tiny frames takes
    // milliseconds, the host's first poll microseconds.
    struct CancelAtSecondPoll : SynthesisObserver {
        int polls = 0;
        bool should_stop() override { return ++polls >= 2; }
    };
    Session gpu(tiny(Device::cuda));
    SynthesisRequest r;
    r.text = "A cancelled request, long enough for one batch of sixty-four frames.";
    r.talker = SamplerSettings{.do_sample = false};
    r.predictor = SamplerSettings{.do_sample = false};
    r.ignore_eos = true;
    r.max_frames = 64;
    r.vocoder_chunk_frames = 64;
    r.vocoder_ramp = false;
    const SynthesisResult whole = gpu.synthesize(r);
    REQUIRE(whole.n_frames == 64);
    CancelAtSecondPoll cancel;
    const SynthesisResult a = gpu.synthesize(r, &cancel);
    CHECK(a.device_frame_loop);
    CHECK(a.stop == StopReason::cancelled);
    MESSAGE("frames run before the cancel took effect: " << a.n_frames);
    CHECK(a.n_frames >= 1);
    CHECK(a.n_frames <= 8);
    CHECK(std::equal(a.codes.begin(), a.codes.end(), whole.codes.begin()));
    REQUIRE(whole.audio.size() % 64 == 0);
    CHECK(a.audio.size() == whole.audio.size() / 64 * size_t(a.n_frames));  // every frame that ran is voiced
    const SynthesisResult b = gpu.synthesize(r);  // the cancel flag is per request
    CHECK(b.stop == StopReason::frame_cap);
    CHECK(b.codes == whole.codes);
}

}  // TEST_SUITE

}  // namespace qtts

int main(int argc, char** argv) {
    doctest::Context context(argc, argv);
    if (qtts::cuda::device_count() <= 0) {  // only the host-side tests (suite no_gpu) can run
        std::printf("skipped: no GPU (running the no_gpu suite only)\n");
        context.setOption("test-suite", "no_gpu");
        return context.run();
    }
    qtts::cuda::register_backend();
    std::printf("device: %s\n", qtts::cuda::device_summary(0).c_str());
    return context.run();
}
