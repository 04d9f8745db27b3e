// Benchmark of the CUDA talker and code predictor on random bf16 weights of a real architecture (--size 0.6b:
// 28 + 5 layers, 1024 wide, 16/8 heads of 128, FFN 3072, vocab 3072 / 2048, 16 code groups; --size 1.7b: the
// talker 2048 wide with FFN 6144 and the predictor's input projection). Prints talker step and predictor frame
// times (median), bytes moved and the fraction of the HBM bandwidth floor, and prefill time.
// Usage: bench_cuda_backend [--size 0.6b|1.7b] [--context N] [--steps N] [--frames N] [--prefill N] [--no-variants]
//        [--variant KEY=V,KEY=V...]... [--rounds N] [--sampler N]
// --variant measures CudaOptions settings instead of the built-in variants (repeatable; keys: pace = ring_pace_kb,
// chunk = ring_chunk_rows, chunks = max_chunks, trace = 0/1, backoff = backoff_ns, ring = at most this many KB of
// weight ring, 0: all the shared memory left, table = 0/1 the predictor's layer-0 table); --rounds N runs the list N
// times, alternating, so drifts of the machine hit every variant alike.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/costs.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/random_model.h"
#include "core/talker.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_buffer.h"
#include "cuda/device_info.h"
#include "cuda/stack_kernels.h"

namespace {

using namespace qtts;

uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// Uniform values with standard deviation `scale` (+ `offset`), rounded to bf16 so the upload is exact.
Tensor random_tensor(Shape shape, float scale, uint64_t seed, float offset = 0.0f) {
    Tensor t(std::move(shape));
    const int64_t n = t.numel();
    const float a = scale * std::sqrt(3.0f);
    float* p = t.ptr();
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
        const double u = double(mix(seed * 0x100000001B3ull + uint64_t(i)) >> 11) * 0x1.0p-53;
        p[i] = bf16_to_f32(f32_to_bf16(offset + a * float(2.0 * u - 1.0)));
    }
    return t;
}

DecoderStackWeights random_stack(const DecoderStackConfig& c, uint64_t seed) {
    DecoderStackWeights w;
    w.config = c;
    const float se = 1.0f / std::sqrt(float(c.n_embd)), sq = 1.0f / std::sqrt(float(c.q_dim())),
                sf = 1.0f / std::sqrt(float(c.n_ff));
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const uint64_t s = seed * 1000 + uint64_t(l) * 16;
        DecoderLayerWeights L;
        L.input_norm = random_tensor({c.n_embd}, 0.1f, s + 0, 1.0f);
        L.wq = random_tensor({c.q_dim(), c.n_embd}, se, s + 1);
        L.wk = random_tensor({c.kv_dim(), c.n_embd}, se, s + 2);
        L.wv = random_tensor({c.kv_dim(), c.n_embd}, se, s + 3);
        L.wo = random_tensor({c.n_embd, c.q_dim()}, sq, s + 4);
        L.q_norm = random_tensor({c.head_dim}, 0.1f, s + 5, 1.0f);
        L.k_norm = random_tensor({c.head_dim}, 0.1f, s + 6, 1.0f);
        L.post_norm = random_tensor({c.n_embd}, 0.1f, s + 7, 1.0f);
        L.w_gate = random_tensor({c.n_ff, c.n_embd}, se, s + 8);
        L.w_up = random_tensor({c.n_ff, c.n_embd}, se, s + 9);
        L.w_down = random_tensor({c.n_embd, c.n_ff}, sf, s + 10);
        w.layers.push_back(std::move(L));
    }
    w.final_norm = random_tensor({c.n_embd}, 0.1f, seed * 1000 + 999, 1.0f);
    return w;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double peak_bandwidth(const std::string& name) {
    if (name.find("H200") != std::string::npos) return 4.8e12;
    if (name.find("H100") != std::string::npos) return name.find("PCIe") != std::string::npos ? 2.0e12 : 3.35e12;
    if (name.find("A100") != std::string::npos) return 2.0e12;
    if (name.find("5090") != std::string::npos) return 1.79e12;
    return 3.35e12;
}

struct Result {
    std::string variant;
    double step_ms, step_dev_ms, frame_ms, frame_dev_ms, prefill_ms;
};

// "pace=16,chunk=24" -> the options it names (the rest default); false on an unknown key.
bool parse_variant(const std::string& spec, cuda::CudaOptions& o) {
    size_t at = 0;
    while (at < spec.size()) {
        const size_t end = std::min(spec.find(',', at), spec.size()), eq = spec.find('=', at);
        if (eq == std::string::npos || eq > end) return false;
        const std::string key = spec.substr(at, eq - at);
        const int v = std::atoi(spec.substr(eq + 1, end - eq - 1).c_str());
        if (key == "pace") o.ring_pace_kb = v;
        else if (key == "chunk") o.ring_chunk_rows = v;
        else if (key == "chunks") o.max_chunks = v;
        else if (key == "trace") o.trace = v != 0;
        else if (key == "backoff") o.backoff_ns = unsigned(v);
        else if (key == "ring") o.test_ring_bytes = v * 1024;
        else if (key == "table") o.predictor_table = v != 0;
        else return false;
        at = end + 1;
    }
    return true;
}

}  // namespace

// --sampler N: the decode kernels' sampler alone, one block per SM and N draws per SM back to back, on 2048 normal
// logits (the predictor's vocabulary, standard deviation 2) with top-k 50 and temperature 0.9: µs per draw, median of
// 5 launches. In a decode kernel the same code runs beside the weight stream, which makes each of its block steps
// slower.
int sampler_bench(int per_sm) {
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess) return 1;
    const int n = 2048, cases = sms * per_sm;
    std::vector<float> logits(size_t(cases) * n);
    for (size_t i = 0; i < logits.size(); ++i) {  // Box-Muller on the counter hash
        const double u1 = (double(mix(2 * i) >> 11) + 1.0) * 0x1.0p-53, u2 = double(mix(2 * i + 1) >> 11) * 0x1.0p-53;
        logits[i] = float(2.0 * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
    std::vector<cuda::DevSampler> settings(size_t(cases), {.do_sample = 1, .temperature = 0.9f, .top_k = 50});
    std::vector<double> us(static_cast<size_t>(cases));
    for (int c = 0; c < cases; ++c) us[size_t(c)] = double(mix(uint64_t(c) + 77) >> 11) * 0x1.0p-53;
    cuda::DeviceBuffer<float> d_logits(logits.size());
    cuda::DeviceBuffer<cuda::DevSampler> d_settings(settings.size());
    cuda::DeviceBuffer<double> d_u(us.size());
    cuda::DeviceBuffer<int> d_out(static_cast<size_t>(cases));
    cudaMemcpy(d_logits.get(), logits.data(), d_logits.bytes(), cudaMemcpyHostToDevice);
    cudaMemcpy(d_settings.get(), settings.data(), d_settings.bytes(), cudaMemcpyHostToDevice);
    cudaMemcpy(d_u.get(), us.data(), d_u.bytes(), cudaMemcpyHostToDevice);
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    std::vector<double> ms;
    for (int r = 0; r < 6; ++r) {
        cudaEventRecord(a);
        cuda::launch_sample_test(d_logits.get(), n, d_settings.get(), d_u.get(), cases, d_out.get(), nullptr, true);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float t = 0;
        cudaEventElapsedTime(&t, a, b);
        if (r > 0) ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    std::printf("sampler %7.2f us per draw (%d SMs x %d draws)\n", ms[ms.size() / 2] * 1e3 / per_sm, sms, per_sm);
    return 0;
}

int main(int argc, char** argv) {
    int context = 75, steps = 60, frames = 50, prefill_len = 20, rounds = 1, sampler = 0;
    bool variants = true;
    std::string size = "0.6b";
    std::vector<std::pair<std::string, cuda::CudaOptions>> custom;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
        if (a == "--context") context = next();
        else if (a == "--steps") steps = next();
        else if (a == "--frames") frames = next();
        else if (a == "--prefill") prefill_len = next();
        else if (a == "--no-variants") variants = false;
        else if (a == "--size" && i + 1 < argc) size = argv[++i];
        else if (a == "--rounds") rounds = std::max(1, next());
        else if (a == "--sampler") sampler = std::max(1, next());
        else if (a == "--variant" && i + 1 < argc && parse_variant(argv[i + 1], custom.emplace_back(argv[i + 1], cuda::CudaOptions{}).second)) ++i;
        else {
            std::fprintf(stderr,
                         "usage: %s [--size 0.6b|1.7b] [--context N] [--steps N] [--frames N] [--prefill N] "
                         "[--no-variants] [--variant pace=KB,chunk=ROWS,chunks=N,trace=0|1,backoff=NS,ring=KB,table=0|1]... [--rounds N] "
                         "[--sampler N]\n",
                         argv[0]);
            return 2;
        }
    }
    // The shapes come from the config of the random architecture, as they would from a checkpoint.
    ModelConfig cfg;
    try {
        cfg = parse_model_config(random_model_config_json(size), "<random " + size + ">");
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 2;
    }
    if (cuda::device_count() <= 0) {
        std::printf("skipped: no GPU\n");
        return 0;
    }
    if (sampler > 0) return sampler_bench(sampler);
    const std::string dev = cuda::device_summary(0);
    const double peak = peak_bandwidth(dev);
    std::printf("device: %s, HBM peak used for the floor: %.2f TB/s\n", dev.c_str(), peak / 1e12);

    const DecoderStackConfig &tc = cfg.talker.stack, &pc = cfg.predictor.stack;
    const int64_t E = tc.n_embd, G = cfg.talker.num_code_groups;

    double t = now_ms();
    ModelWeights w;
    w.talker.stack = random_stack(tc, 1);
    w.talker.codec_embedding = random_tensor({tc.vocab_size, E}, 0.05f, 11);
    w.talker.codec_head = random_tensor({tc.vocab_size, E}, 1.0f / std::sqrt(float(E)), 12);
    w.predictor.stack = random_stack(pc, 2);
    for (int64_t k = 0; k + 1 < G; ++k) {
        w.predictor.codec_embedding.push_back(random_tensor({pc.vocab_size, E}, 0.05f, 100 + uint64_t(k)));
        w.predictor.lm_head.push_back(
            random_tensor({pc.vocab_size, pc.n_embd}, 1.0f / std::sqrt(float(pc.n_embd)), 200 + uint64_t(k)));
    }
    if (cfg.has_mtp_projection()) {
        w.predictor.mtp_w = random_tensor({pc.n_embd, E}, 1.0f / std::sqrt(float(E)), 300);
        w.predictor.mtp_b = random_tensor({pc.n_embd}, 0.01f, 301);
    }
    std::printf("random %s weights built in %.1f s\n", size.c_str(), (now_ms() - t) / 1e3);

    // Bytes each launch must stream (bf16 weights, fp32 KV), counted once (core/costs.h, as qtts bench).
    const int mid_ctx = context + steps / 2;
    const double talker_bytes = double(talker_step_bytes(cfg, 2, mid_ctx));
    const double cp_floor_bytes = double(predictor_frame_bytes(cfg, 2));  // the 2-position start reads once

    std::vector<Result> results;
    std::vector<std::pair<std::string, cuda::CudaOptions>> configs = {{"default", {}}};
    if (!custom.empty()) {
        configs.clear();
        for (int r = 0; r < rounds; ++r) configs.insert(configs.end(), custom.begin(), custom.end());
    } else if (variants) {
        configs.push_back({"traced", {.trace = true}});
        configs.push_back({"cp.async ring", {.ring_cp_async = true}});
        configs.push_back({"unpaced ring", {.ring_pace_kb = 0}});
        configs.push_back({"grid barriers", {.grid_barriers = true}});
        configs.push_back({"traced, grid barriers", {.trace = true, .grid_barriers = true}});
    }

    std::vector<float> embeds(size_t(std::max(context, prefill_len) * E));
    for (size_t i = 0; i < embeds.size(); ++i) embeds[i] = float(double(mix(i) >> 11) * 0x1.0p-53 - 0.5);
    for (const auto& [name, opt] : configs) {
        const double t_build = now_ms();
        Backends b = cuda::make_backends(cfg, w, opt);
        std::printf("[%s] backends built in %.0f ms (weights uploaded, the predictor's layer-0 table if on)\n",
                    name.c_str(), now_ms() - t_build);
        auto* tt = dynamic_cast<cuda::CudaTimed*>(b.talker.get());
        auto* tp = dynamic_cast<cuda::CudaTimed*>(b.predictor.get());
        Result r{name, 0, 0, 0, 0, 0};
        // Prefill of ~20 positions (median of 5, after a warm-up).
        std::vector<double> pf;
        for (int rep = 0; rep < 6; ++rep) {
            const double t0 = now_ms();
            b.talker->prefill(std::span<const float>(embeds.data(), size_t(prefill_len * E)), prefill_len);
            if (rep) pf.push_back(now_ms() - t0);
        }
        r.prefill_ms = median(pf);
        // Talker steps at context ~`context` .. `context + steps`.
        b.talker->prefill(std::span<const float>(embeds.data(), size_t(context * E)), context);
        std::vector<double> wall, devt;
        std::vector<float> x(static_cast<size_t>(E));
        for (int s = 0; s < steps + 3; ++s) {
            for (int64_t d = 0; d < E; ++d)
                x[size_t(d)] = float(double(mix(uint64_t(s) * 8192 + uint64_t(d)) >> 11) * 0x1.0p-53 - 0.5);
            const double t0 = now_ms();
            b.talker->step(x);
            const double dt = now_ms() - t0;
            if (s >= 3) wall.push_back(dt), devt.push_back(tt->last_device_ms());
        }
        const auto lg = b.talker->logits();
        bool finite = std::all_of(lg.begin(), lg.end(), [](float v) { return std::isfinite(v); });
        r.step_ms = median(wall);
        r.step_dev_ms = median(devt);
        // Code predictor frames with the checkpoint's default sampling (top-k 50, temperature 0.9).
        const SamplerSettings s{.do_sample = true, .temperature = 0.9f, .top_k = 50, .top_p = 1.0f};
        std::vector<double> fw, fd;
        std::vector<int32_t> codes(static_cast<size_t>(G));
        const auto hid = b.talker->hidden();
        std::vector<float> hidden(hid.begin(), hid.end());
        for (int f = 0; f < frames + 3; ++f) {
            codes[0] = int32_t(f % pc.vocab_size);
            const double t0 = now_ms();
            b.predictor->predict(hidden, codes, s, CounterRng(7), uint64_t(f));
            const double dt = now_ms() - t0;
            if (f >= 3) fw.push_back(dt), fd.push_back(tp->last_device_ms());
        }
        r.frame_ms = median(fw);
        r.frame_dev_ms = median(fd);
        if (opt.trace)
            std::printf("[%s] talker step phase trace:\n%s[%s] predictor frame phase trace:\n%s", name.c_str(),
                        tt->trace_report().c_str(), name.c_str(), tp->trace_report().c_str());
        std::printf("[%s] logits finite: %s; last codes:", name.c_str(), finite ? "yes" : "NO");
        for (int32_t c : codes) std::printf(" %d", c);
        std::printf("\n");
        results.push_back(r);
    }

    std::printf("\nbytes per talker step: %.1f MB (%lld layers, codec_head, fp32 KV at context %d)\n", talker_bytes / 1e6,
                (long long)tc.n_layer, mid_ctx);
    std::printf("bytes per predictor frame: floor %.1f MB (%lld passes of %lld layers + heads%s; the 2-position start "
                "reads the weights once)\n",
                cp_floor_bytes / 1e6, (long long)(G - 1), (long long)pc.n_layer,
                cfg.has_mtp_projection() ? " + input projection" : "");
    std::printf("floors at %.2f TB/s: talker %.3f ms, predictor %.3f ms\n\n", peak / 1e12, talker_bytes / peak * 1e3,
                cp_floor_bytes / peak * 1e3);
    std::printf("| variant | talker step ms (wall / device) | %% of BW floor | predictor ms/frame (wall / device) | "
                "%% of BW floor | prefill %d pos ms |\n|---|---|---|---|---|---|\n",
                prefill_len);
    for (const Result& r : results)
        std::printf("| %s | %.3f / %.3f | %.0f%% | %.3f / %.3f | %.0f%% | %.2f |\n", r.variant.c_str(), r.step_ms,
                    r.step_dev_ms, 100.0 * talker_bytes / peak / (r.step_dev_ms * 1e-3), r.frame_ms, r.frame_dev_ms,
                    100.0 * cp_floor_bytes / peak / (r.frame_dev_ms * 1e-3), r.prefill_ms);
    std::printf("\n(median of %d talker steps at context %d..%d and %d predictor frames; %% of floor = floor bytes / "
                "peak / device time)\n",
                steps, context, context + steps, frames);
    return 0;
}
