// Small GPU runs sized for compute-sanitizer racecheck, which makes the full parity tests take many minutes:
// one predictor frame of each kind, a few talker steps, a few vocoder frames in two chunkings, and a whole
// two-frame session. Each still checks its result against the CPU reference. Select with -tc='small:*'.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/engine.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_vocoder.h"
#include "cuda/device_buffer.h"
#include "cuda/stack_kernels.h"
#include "cuda/device_info.h"
#include "tests/test_util.h"

namespace qtts {

namespace {
std::shared_ptr<const Model> tiny_cpu() {
    static auto model = Model::load(test::tiny_model_dir(), {.device = Device::cpu});
    return model;
}
}  // namespace

TEST_CASE("small: one greedy and one sampled predictor frame equal the CPU's") {
    if (cuda::device_count() == 0) return;
    const auto model = tiny_cpu();
    const auto& c = model->config();
    auto cpu = make_cpu_predictor(model->weights());
    auto gpu = cuda::make_backends(c, model->weights()).predictor;
    std::mt19937 gen(3);
    std::normal_distribution<float> normal;
    std::vector<float> hidden(size_t(c.talker.stack.n_embd));
    for (float& x : hidden) x = normal(gen);
    for (const SamplerSettings& s : {SamplerSettings{.do_sample = false, .repetition_penalty = 1.0f},
                                     SamplerSettings{.do_sample = true, .temperature = 0.9f, .top_k = 50}}) {
        std::vector<int32_t> a(size_t(c.talker.num_code_groups), 0), b = a;
        a[0] = b[0] = 17;
        cpu->predict(hidden, a, s, CounterRng(7), 0);
        gpu->predict(hidden, b, s, CounterRng(7), 0);
        CHECK(a == b);
    }
}

TEST_CASE("small: a few talker steps and vocoder frames match the CPU") {
    if (cuda::device_count() == 0) return;
    const auto model = tiny_cpu();
    const int64_t E = model->config().talker.stack.n_embd;
    auto cpu = make_cpu_talker(model->weights());
    auto gpu = cuda::make_backends(model->config(), model->weights()).talker;
    const std::vector<float> embeds(size_t(4 * E), 0.05f);
    cpu->prefill(embeds, 4);
    gpu->prefill(embeds, 4);
    for (int step = 0; step < 2; ++step) {
        cpu->step(std::span(embeds).first(size_t(E)));
        gpu->step(std::span(embeds).first(size_t(E)));
    }
    float worst = 0, peak = 0;
    for (size_t i = 0; i < cpu->logits().size(); ++i) {
        worst = std::max(worst, std::fabs(cpu->logits()[i] - gpu->logits()[i]));
        peak = std::max(peak, std::fabs(cpu->logits()[i]));
    }
    CHECK(worst <= 1e-4f * peak);  // fp32 summation order only (the parity tests measure ~6e-7)

    const Vocoder& vocoder = model->vocoder();
    const int64_t G = vocoder.config().num_quantizers, n = 4;
    std::vector<int32_t> codes(size_t(n * G));
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = int32_t((i * 37) % 2048);
    const auto weights = std::make_shared<const cuda::CudaVocoder>(vocoder);
    cuda::CudaVocoderStream whole(weights), pieces(weights);
    std::vector<float> a, b;
    whole.push(codes, a);
    pieces.push(std::span(codes).first(size_t(G)), b);
    pieces.push(std::span(codes).subspan(size_t(G)), b);
    REQUIRE(a.size() == b.size());
    CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

TEST_CASE("small: a three-frame session on the GPU (device frame loop) gives the CPU session's codes") {
    if (cuda::device_count() == 0) return;
    Session gpu(Model::load(test::tiny_model_dir(), {.device = Device::cuda})), cpu(tiny_cpu());
    SynthesisRequest r;
    r.text = "Two frames.";
    r.max_frames = 3;
    r.vocoder_chunk_frames = 2;  // the device frame loop runs batches of 2 and 1 frames
    r.seed = 5;
    const SynthesisResult a = gpu.synthesize(r);
    CHECK(a.device_frame_loop);
    CHECK(a.codes == cpu.synthesize(r).codes);
}

// The decode kernels' sampler on logits built to break it: ties at the k-th value, -inf masks (codebook 0's
// suppressed ids), fewer finite values than k, signed zeros at the threshold, one value everywhere, many copies of
// the maximum; k from 1 to 113, three temperatures, u at 0, near 1 and random. It sees the host's float logits, so
// every id must be the host's sample_token exactly.
TEST_CASE("small: the device sampler draws the host's ids on adversarial logits") {
    if (cuda::device_count() == 0) return;
    constexpr float kInf = std::numeric_limits<float>::infinity();
    std::mt19937 gen(11);
    std::normal_distribution<float> normal;
    std::uniform_real_distribution<double> unif(0.0, 1.0);
    int compared = 0;
    for (const int n : {2048, 3072, 100, 4000}) {
        CAPTURE(n);
        std::vector<float> logits;
        std::vector<cuda::DevSampler> settings;
        std::vector<SamplerSettings> host;
        std::vector<double> us;
        std::vector<int> kinds;
        for (int kind = 0; kind < 8; ++kind) {
            std::vector<float> v(static_cast<size_t>(n));
            for (int i = 0; i < n; ++i) {
                const float x = normal(gen);
                switch (kind) {
                    case 0: v[size_t(i)] = x; break;
                    case 1: v[size_t(i)] = 4.0f * x; break;
                    case 2: v[size_t(i)] = std::round(x * 4.0f) / 4.0f; break;             // ties everywhere
                    case 3: v[size_t(i)] = i >= 2 * n / 3 && i != 2 * n / 3 + 2 ? -kInf : x; break;  // codebook 0
                    case 4: v[size_t(i)] = i % (n / 10 + 1) == 3 ? x : -kInf; break;       // ~10 finite values
                    case 5:  // signed zeros around the threshold
                        v[size_t(i)] = i % 50 == 0 ? std::fabs(x) + 0.5f
                                       : i % 3     ? (x < 0 ? -0.0f : 0.0f)
                                                   : -std::fabs(x) - 0.5f;
                        break;
                    case 6: v[size_t(i)] = 1.5f; break;                                    // one value
                    default: v[size_t(i)] = i % 7 == 0 ? 3.0f : x; break;                  // the maximum many times
                }
            }
            for (const int64_t k : {1, 7, 50, 64, 113})
                for (const float temp : {0.9f, 1.0f, 0.37f})
                    for (const double u : {0.0, 1.0 - 0x1.0p-53, unif(gen), unif(gen), unif(gen)}) {
                        logits.insert(logits.end(), v.begin(), v.end());
                        host.push_back({.do_sample = true, .temperature = temp, .top_k = k, .top_p = 1.0f});
                        settings.push_back({.do_sample = 1, .temperature = temp, .top_k = int(std::min<int64_t>(k, n)),
                                            .top_p = 1.0f});
                        us.push_back(u);
                        kinds.push_back(kind);
                    }
        }
        const int cases = int(us.size());
        cuda::DeviceBuffer<float> d_logits(logits.size());
        cuda::DeviceBuffer<cuda::DevSampler> d_settings(settings.size());
        cuda::DeviceBuffer<double> d_u(us.size());
        cuda::DeviceBuffer<int> d_out(static_cast<size_t>(cases));
        REQUIRE(cudaMemcpy(d_logits.get(), logits.data(), d_logits.bytes(), cudaMemcpyHostToDevice) == cudaSuccess);
        REQUIRE(cudaMemcpy(d_settings.get(), settings.data(), d_settings.bytes(), cudaMemcpyHostToDevice) ==
                cudaSuccess);
        REQUIRE(cudaMemcpy(d_u.get(), us.data(), d_u.bytes(), cudaMemcpyHostToDevice) == cudaSuccess);
        std::vector<int> out(static_cast<size_t>(cases));
        cuda::launch_sample_test(d_logits.get(), n, d_settings.get(), d_u.get(), cases, d_out.get(), nullptr);
        REQUIRE(cudaMemcpy(out.data(), d_out.get(), d_out.bytes(), cudaMemcpyDeviceToHost) == cudaSuccess);
        for (int c = 0; c < cases; ++c) {
            std::vector<float> v(logits.begin() + ptrdiff_t(c) * n, logits.begin() + ptrdiff_t(c + 1) * n);
            const int32_t want = sample_token(v, host[size_t(c)], us[size_t(c)]);
            CAPTURE(c);
            CAPTURE(kinds[size_t(c)]);
            CAPTURE(host[size_t(c)].top_k);
            CHECK(out[size_t(c)] == want);
            ++compared;
        }
    }
    MESSAGE("sampler draws compared with the host: " << compared);
}

}  // namespace qtts
