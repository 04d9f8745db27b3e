// Small GPU runs sized for compute-sanitizer racecheck, which makes the full parity tests take many minutes:
// one predictor frame of each kind, a few talker steps, a few vocoder frames in two chunkings, and a whole
// two-frame session. Each still checks its result against the CPU reference. Select with -tc='small:*'.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "core/engine.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_vocoder.h"
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

}  // namespace qtts
