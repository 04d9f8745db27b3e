// Benchmark of the CUDA vocoder (CudaVocoderStream) on random fp32 weights of the real 0.6B decoder shapes:
// ms per 80 ms frame when frames are pushed 1, 2, 4, 8 and 32 at a time (wall time of push() including the
// codes upload and PCM download, and CUDA-event device time), with the chunk replayed from a CUDA graph and
// with its kernels launched directly, against a floor: the larger of (weight bytes / chunk + activation
// bytes) / HBM bandwidth and GEMM FLOPs / fp32 FMA peak. Also the one-off cost of capturing a chunk length's
// graphs, and a check that both paths give the same bits.
// Usage: bench_cuda_vocoder [--frames N] [--reps N] [--chunks 1,2,4,8,32]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/random_model.h"
#include "core/vocoder.h"
#include "cuda/cuda_vocoder.h"
#include "cuda/device_info.h"

namespace {

using namespace qtts;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// HBM bandwidth and fp32 (non-tensor) FMA peak of known GPUs.
void peaks(const std::string& name, double& bw, double& fp32) {
    bw = 3.35e12, fp32 = 67e12;                                      // H100 SXM
    if (name.find("H200") != std::string::npos) bw = 4.8e12, fp32 = 67e12;
    else if (name.find("PCIe") != std::string::npos) bw = 2.0e12, fp32 = 51e12;
    else if (name.find("A100") != std::string::npos) bw = 2.0e12, fp32 = 19.5e12;
}

}  // namespace

int main(int argc, char** argv) {
    int frames = 64, reps = 7;
    std::vector<int> chunks = {1, 2, 4, 8, 32};
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto next = [&] { return i + 1 < argc ? std::atoi(argv[++i]) : 0; };
        if (a == "--frames") frames = next();
        else if (a == "--reps") reps = next();
        else if (a == "--chunks" && i + 1 < argc) {
            chunks.clear();
            for (const char* p = argv[++i]; *p;) {
                chunks.push_back(std::atoi(p));
                while (*p && *p != ',') ++p;
                if (*p == ',') ++p;
            }
        } else {
            std::fprintf(stderr, "usage: %s [--frames N] [--reps N] [--chunks 1,2,4,8,32]\n", argv[0]);
            return 2;
        }
    }
    if (frames < 1 || reps < 1 || chunks.empty() ||
        std::any_of(chunks.begin(), chunks.end(), [&](int c) { return c < 1 || c > frames; })) {
        std::fprintf(stderr, "need --frames >= 1, --reps >= 1 and push sizes in [1, frames]\n");
        return 2;
    }
    if (cuda::device_count() <= 0) {
        std::printf("skipped: no GPU\n");
        return 0;
    }
    const std::string dev = cuda::device_summary(0);
    double bw = 0, fp32 = 0;
    peaks(dev, bw, fp32);
    std::printf("device: %s; floors use %.2f TB/s HBM and %.0f TFLOP/s fp32\n", dev.c_str(), bw / 1e12, fp32 / 1e12);

    double t = now_ms();
    const VocoderConfig config = parse_vocoder_config(random_vocoder_config_json("0.6b"), "<random 0.6b>");
    const Vocoder vocoder = Vocoder::load(make_random_store(7, 0, 0, RandomValues::f32), config);
    const auto weights = std::make_shared<const cuda::CudaVocoder>(vocoder);
    std::printf("random 0.6B decoder weights built and uploaded in %.1f s (%.1f MB fp32 on the device)\n",
                (now_ms() - t) / 1e3, double(weights->weight_bytes()) / 1e6);
    const cuda::CudaVocoder::Cost cost = weights->cost_per_frame();
    std::printf("per frame: %.2f GFLOP, %.1f MB activations; weights %.1f MB per chunk\n\n", cost.flops / 1e9,
                cost.activation_bytes / 1e6, cost.weight_bytes / 1e6);

    const int64_t G = config.num_quantizers;
    std::mt19937 rng(1);
    std::uniform_int_distribution<int32_t> dist(0, int32_t(config.codebook_size) - 1);
    std::vector<int32_t> codes(size_t(frames * G));
    for (int32_t& c : codes) c = dist(rng);

    cuda::CudaVocoderStream direct(weights, cuda::CudaVocoderStream::kDefaultMaxChunkFrames, 0), graphed(weights);
    if (!graphed.graphs_enabled()) std::printf("QTTS_NO_GRAPHS is set: the graph columns launch directly too\n\n");

    // One-off capture + instantiation of each chunk length's two graphs (host time; what the first push of a
    // new length pays, or Session::warmup).
    std::printf("| frames per push | graph capture + instantiate ms (2 graphs) | device memory MB |\n|---|---|---|\n");
    for (int chunk : chunks) {
        const size_t mem0 = cuda::memory_used_bytes();
        const double t0 = now_ms();
        graphed.warmup(std::vector<int64_t>{chunk});
        const double ms = now_ms() - t0;
        std::printf("| %d | %.2f | %.1f |\n", chunk, ms, double(cuda::memory_used_bytes() - mem0) / 1e6);
    }
    std::printf("\n");

    // Median over reps (after one warm-up rep) of ms per frame pushing `chunk` frames at a time; the audio of
    // the last rep is kept in `pcm_all`.
    struct Result {
        double wall = 0, device = 0;
    };
    const auto run = [&](cuda::CudaVocoderStream& stream, int chunk, std::vector<float>& pcm_all) {
        std::vector<double> wall, devt;
        std::vector<float> pcm;
        for (int rep = 0; rep < reps + 1; ++rep) {
            stream.reset();
            pcm_all.clear();
            double w_sum = 0, d_sum = 0;
            for (int f = 0; f + chunk <= frames; f += chunk) {
                pcm.clear();
                const double t0 = now_ms();
                stream.push(std::span<const int32_t>(codes.data() + f * G, size_t(chunk * G)), pcm);
                w_sum += now_ms() - t0;
                d_sum += stream.last_device_ms();
                pcm_all.insert(pcm_all.end(), pcm.begin(), pcm.end());
            }
            const int pushed = frames / chunk * chunk;
            if (rep > 0) wall.push_back(w_sum / pushed), devt.push_back(d_sum / pushed);  // rep 0 warms up
        }
        return Result{median(wall), median(devt)};
    };

    std::printf("| frames per push | direct wall ms/frame | direct device ms/frame | graph wall ms/frame | "
                "graph device ms/frame | wall speed-up | floor ms/frame | %% of floor (graph device) | bound | "
                "same bits |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (int chunk : chunks) {
        std::vector<float> pcm_direct, pcm_graph;
        const Result d = run(direct, chunk, pcm_direct);
        const Result g = run(graphed, chunk, pcm_graph);
        const bool same = pcm_direct.size() == pcm_graph.size() &&
                          std::equal(pcm_direct.begin(), pcm_direct.end(), pcm_graph.begin(),
                                     [](float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; });
        const double mem_floor = (cost.weight_bytes / chunk + cost.activation_bytes) / bw * 1e3;
        const double flop_floor = cost.flops / fp32 * 1e3;
        const double floor = std::max(mem_floor, flop_floor);
        std::printf("| %d | %.3f | %.3f | %.3f | %.3f | %.2fx | %.3f | %.0f%% | %s | %s |\n", chunk, d.wall, d.device,
                    g.wall, g.device, d.wall / g.wall, floor, 100.0 * floor / g.device,
                    mem_floor > flop_floor ? "HBM" : "fp32 FMA", same ? "yes" : "NO");
    }
    std::printf("\n(median of %d runs of %d frames each; ms per 80 ms frame; the 32-frame row is the amortized "
                "figure; %d graph chunk lengths cached)\n",
                reps, frames, int(graphed.graph_chunks()));
    return 0;
}
