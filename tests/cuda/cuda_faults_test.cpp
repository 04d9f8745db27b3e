// GPU faults (CTest label gpu): a CTA that never publishes its values becomes a GpuError within a bounded time
// and leaves the instance unusable; running out of GPU memory at load and at run time is a GpuError naming
// it, never a crash; `--device auto` falls back to the CPU engine when the GPU engine cannot be built.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "core/engine.h"
#include "core/error.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_info.h"

namespace qtts {

namespace {

std::shared_ptr<const Model> tiny_on(Device device) {
    return Model::load(std::filesystem::path(QTTS_TEST_DATA) / "tiny", {.device = device});
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Takes all but `leave` bytes of free GPU memory until destroyed.
class MemoryHog {
public:
    explicit MemoryHog(size_t leave) {
        size_t free = 0, total = 0;
        REQUIRE(cudaMemGetInfo(&free, &total) == cudaSuccess);
        for (size_t chunk = size_t(1) << 30; chunk >= (size_t(1) << 20) && free > leave; chunk /= 2) {
            void* p = nullptr;
            while (free > leave + chunk && cudaMalloc(&p, chunk) == cudaSuccess) {
                blocks_.push_back(p);
                free -= chunk;
            }
            cudaGetLastError();
        }
    }
    ~MemoryHog() {
        for (void* p : blocks_) cudaFree(p);
    }

private:
    std::vector<void*> blocks_;
};

}  // namespace

TEST_CASE("a CTA that never publishes becomes a GpuError within the watchdog time and the instance stays unusable") {
    if (cuda::device_count() == 0) return;
    const auto model = tiny_on(Device::cpu);
    const int64_t E = model->config().talker.stack.n_embd;
    Backends b = cuda::make_backends(model->config(), model->weights(), {.timeout_s = 0.2, .test_stall_cta = 1});
    const std::vector<float> embeds(size_t(3 * E), 0.1f);
    b.talker->prefill(embeds, 3);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_THROWS_WITH_AS(b.talker->step(std::span(embeds).first(size_t(E))),
                         doctest::Contains("megakernel stopped waiting for another CTA (watchdog timeout)"), GpuError);
    CHECK(seconds_since(t0) < 10.0);  // 0.2 s watchdog; the bound only proves "no hang"
    CHECK_THROWS_AS(b.talker->step(std::span(embeds).first(size_t(E))), GpuError);

    std::vector<int32_t> codes(size_t(model->config().talker.num_code_groups), 0);
    const std::vector<float> hidden(size_t(E), 0.1f);
    CHECK_THROWS_WITH_AS(b.predictor->predict(hidden, codes, SamplerSettings{}, CounterRng(0), 0),
                         doctest::Contains("code predictor megakernel stopped"), GpuError);

    // A fresh instance is unaffected: the sync words belong to each instance.
    Backends fresh = cuda::make_backends(model->config(), model->weights());
    fresh.talker->prefill(embeds, 3);
    fresh.talker->step(std::span(embeds).first(size_t(E)));
}

TEST_SUITE("no_gpu") {
TEST_CASE("QTTS_WATCHDOG_S replaces the default watchdog only; a value that is not seconds is a GpuError") {
    // No GPU needed. The environment is restored: compute-sanitizer runs set it for every test of this binary.
    const char* prev = std::getenv("QTTS_WATCHDOG_S");
    const std::string saved = prev ? prev : "";
    const double dflt = cuda::CudaOptions{}.timeout_s;
    unsetenv("QTTS_WATCHDOG_S");
    CHECK(cuda::watchdog_seconds(dflt) == dflt);
    setenv("QTTS_WATCHDOG_S", "600", 1);
    CHECK(cuda::watchdog_seconds(dflt) == 600.0);
    CHECK(cuda::watchdog_seconds(0.2) == 0.2);  // a caller's own timeout (the stall test's) stays
    for (const char* bad : {"soon", "-1", "0", "10s"}) {
        setenv("QTTS_WATCHDOG_S", bad, 1);
        CHECK_THROWS_WITH_AS(cuda::watchdog_seconds(dflt),
                             (std::string("QTTS_WATCHDOG_S=") + bad + " is not a number of seconds").c_str(), GpuError);
    }
    if (prev) setenv("QTTS_WATCHDOG_S", saved.c_str(), 1);
    else unsetenv("QTTS_WATCHDOG_S");
}
}  // TEST_SUITE

TEST_CASE("out of GPU memory at load is a GpuError, and --device auto falls back to the CPU") {
    if (cuda::device_count() == 0) return;
    const auto gpu_model = tiny_on(Device::cuda);
    const auto auto_model = tiny_on(Device::automatic);
    MemoryHog hog(size_t(8) << 20);  // 8 MiB left: less than the tiny engine's buffers and kernels need
    CHECK_THROWS_WITH_AS(Session{gpu_model}, doctest::Contains("out of GPU memory"), GpuError);
    Session fallback(auto_model);
    CHECK(fallback.backend_name() == "cpu");
    SynthesisRequest req;
    req.text = "Falls back.";
    req.max_frames = 2;
    CHECK(fallback.synthesize(req).n_frames == 2);
}

TEST_CASE("out of GPU memory while the KV cache grows is a GpuError, not a crash") {
    if (cuda::device_count() == 0) return;
    Session session(tiny_on(Device::cuda));
    SynthesisRequest req;
    req.text = "A long run that must grow the cache.";
    req.max_frames = 2;
    session.synthesize(req);  // builds and warms the engine before the memory is taken
    MemoryHog hog(0);
    req.max_frames = 4000;
    req.ignore_eos = true;
    CHECK_THROWS_WITH_AS(session.synthesize(req), doctest::Contains("out of GPU memory"), GpuError);
}

}  // namespace qtts
