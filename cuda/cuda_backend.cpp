// CudaTalker and CudaPredictor: own the device copies of the weights (bf16, uploaded once), the KV caches,
// scratch and phase-ordering words of one instance, and drive the kernels of decode_megakernel.cu and
// prefill_kernels.cu. Host code (compiled as C++20); persistent launches are serialized process-wide so
// that two instances never spin on the GPU at the same time.
#include "cuda/cuda_backend.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/dtype.h"
#include "core/engine.h"
#include "core/error.h"
#include "core/talker.h"
#include "cuda/cuda_vocoder.h"
#include "cuda/device_buffer.h"
#include "cuda/device_info.h"
#include "cuda/stack_kernels.h"

namespace qtts::cuda {

namespace {

std::mutex& launch_mutex() {
    static std::mutex m;
    return m;
}

void copy_bf16(const Tensor& t, uint16_t* device_dst, std::vector<uint16_t>& staging) {
    staging.resize(t.data.size());
    const float* src = t.data.data();
    const int64_t n = int64_t(t.data.size());
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; ++i) staging[size_t(i)] = f32_to_bf16(src[i]);
    QTTS_CUDA_CHECK(cudaMemcpy(device_dst, staging.data(), staging.size() * 2, cudaMemcpyHostToDevice));
}

DeviceBuffer<uint16_t> upload_bf16(const std::vector<const Tensor*>& tensors) {
    size_t total = 0;
    for (const Tensor* t : tensors) total += t->data.size();
    DeviceBuffer<uint16_t> buf(total);
    std::vector<uint16_t> staging;
    size_t off = 0;
    for (const Tensor* t : tensors) {
        copy_bf16(*t, buf.get() + off, staging);
        off += t->data.size();
    }
    return buf;
}

template <class T>
DeviceBuffer<T> upload(const std::vector<T>& v) {
    DeviceBuffer<T> b(v.size());
    QTTS_CUDA_CHECK(cudaMemcpy(b.get(), v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return b;
}

size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

// One decoder stack on the device: all matrices in one bf16 allocation (q, k, v rows adjacent per layer),
// norm weights in one fp32 allocation, and a device array of per-layer pointers.
class DeviceStack {
public:
    explicit DeviceStack(const DecoderStackWeights& w) {
        const auto& c = w.config;
        // head_dim: a power of two, so that each lane's rotate-half partner is a fixed lane (norm_rope_lanes).
        if (c.n_embd % 32 || c.n_ff % 32 || c.q_dim() % 32 || c.head_dim < 2 || (c.head_dim & (c.head_dim - 1)) ||
            c.head_dim > kMaxHeadDim ||
            c.n_embd > kMaxNormPerThread * kMegaThreads || c.n_layer > kMaxLayers ||
            c.n_kv_head <= 0 || c.n_head % c.n_kv_head)
            throw GpuError(fmt::format("the CUDA backend does not support this decoder shape (n_embd {}, n_ff {}, "
                                       "heads {}/{}, head_dim {})",
                                       c.n_embd, c.n_ff, c.n_head, c.n_kv_head, c.head_dim),
                           "use --device cpu");
        const size_t E = size_t(c.n_embd), F = size_t(c.n_ff), Q = size_t(c.q_dim()), KV = size_t(c.kv_dim());
        const size_t qkv = (Q + 2 * KV) * E, o = E * Q, ff = F * E;
        const size_t per_layer = align_up(qkv, 128) + align_up(o, 128) + 3 * align_up(ff, 128);
        weights_ = DeviceBuffer<uint16_t>(per_layer * size_t(c.n_layer));
        const size_t norms_per_layer = 2 * E + 2 * size_t(c.head_dim);
        std::vector<float> norms;
        norms.reserve(norms_per_layer * size_t(c.n_layer) + E);
        std::vector<uint16_t> staging;
        std::vector<LayerDev> layers(size_t(c.n_layer));
        std::vector<size_t> norm_off(size_t(c.n_layer));
        for (int64_t l = 0; l < c.n_layer; ++l) {
            const auto& L = w.layers[size_t(l)];
            uint16_t* base = weights_.get() + per_layer * size_t(l);
            LayerDev& d = layers[size_t(l)];
            uint16_t* p = base;
            d.wqkv = p;
            copy_bf16(L.wq, p, staging);
            copy_bf16(L.wk, p + Q * E, staging);
            copy_bf16(L.wv, p + (Q + KV) * E, staging);
            p += align_up(qkv, 128);
            d.wo = p;
            copy_bf16(L.wo, p, staging);
            p += align_up(o, 128);
            d.w_gate = p;
            copy_bf16(L.w_gate, p, staging);
            p += align_up(ff, 128);
            d.w_up = p;
            copy_bf16(L.w_up, p, staging);
            p += align_up(ff, 128);
            d.w_down = p;
            copy_bf16(L.w_down, p, staging);
            norm_off[size_t(l)] = norms.size();
            for (const Tensor* t : {&L.input_norm, &L.post_norm, &L.q_norm, &L.k_norm})
                norms.insert(norms.end(), t->data.begin(), t->data.end());
        }
        const size_t final_off = norms.size();
        norms.insert(norms.end(), w.final_norm.data.begin(), w.final_norm.data.end());
        norms_ = upload(norms);
        for (int64_t l = 0; l < c.n_layer; ++l) {
            LayerDev& d = layers[size_t(l)];
            const float* nb = norms_.get() + norm_off[size_t(l)];
            d.input_norm = nb;
            d.post_norm = nb + E;
            d.q_norm = nb + 2 * E;
            d.k_norm = nb + 2 * E + size_t(c.head_dim);
        }
        dev_.n_layer = int(c.n_layer);
        dev_.n_embd = int(c.n_embd);
        dev_.n_ff = int(c.n_ff);
        dev_.n_head = int(c.n_head);
        dev_.n_kv_head = int(c.n_kv_head);
        dev_.head_dim = int(c.head_dim);
        dev_.eps = float(c.rms_eps);
        dev_.attn_scale = 1.0f / std::sqrt(float(c.head_dim));
        dev_.inv_hd = 1.0f / float(c.head_dim);
        for (int64_t l = 0; l < c.n_layer; ++l) dev_.layers[l] = layers[size_t(l)];
        dev_.final_norm = norms_.get() + final_off;
        theta_ = c.rope_theta;
    }

    // Grows the KV cache and RoPE tables to hold `positions`, keeping the first `keep` positions.
    void ensure_capacity(int positions, int keep, cudaStream_t stream) {
        if (positions <= dev_.capacity) return;
        int cap = std::max(64, dev_.capacity);
        while (cap < positions) cap *= 2;
        const size_t kv = size_t(dev_.kv_dim());
        DeviceBuffer<float> k(size_t(dev_.n_layer) * cap * kv), v(size_t(dev_.n_layer) * cap * kv);
        if (keep > 0 && dev_.capacity > 0) {
            const size_t row = size_t(keep) * kv * 4;
            QTTS_CUDA_CHECK(cudaMemcpy2DAsync(k.get(), size_t(cap) * kv * 4, k_.get(), size_t(dev_.capacity) * kv * 4,
                                              row, size_t(dev_.n_layer), cudaMemcpyDeviceToDevice, stream));
            QTTS_CUDA_CHECK(cudaMemcpy2DAsync(v.get(), size_t(cap) * kv * 4, v_.get(), size_t(dev_.capacity) * kv * 4,
                                              row, size_t(dev_.n_layer), cudaMemcpyDeviceToDevice, stream));
            QTTS_CUDA_CHECK(cudaStreamSynchronize(stream));
        }
        // Same fp32 formulas as core/ops.cpp Rope, so the tables are bit-identical to the CPU reference.
        const int hd = dev_.head_dim, half = hd / 2;
        std::vector<float> inv(static_cast<size_t>(half)), cs(static_cast<size_t>(cap) * half), sn(static_cast<size_t>(cap) * half);
        for (int j = 0; j < half; ++j) inv[size_t(j)] = 1.0f / std::pow(float(theta_), float(2 * j) / float(hd));
        for (int p = 0; p < cap; ++p)
            for (int j = 0; j < half; ++j) {
                const float angle = float(p) * inv[size_t(j)];
                cs[size_t(p) * half + j] = std::cos(angle);
                sn[size_t(p) * half + j] = std::sin(angle);
            }
        cos_ = upload(cs);
        sin_ = upload(sn);
        k_ = std::move(k);
        v_ = std::move(v);
        dev_.k_cache = k_.get();
        dev_.v_cache = v_.get();
        dev_.rope_cos = cos_.get();
        dev_.rope_sin = sin_.get();
        dev_.capacity = cap;
    }

    const StackDev& dev() const { return dev_; }

private:
    DeviceBuffer<uint16_t> weights_;
    DeviceBuffer<float> norms_;
    DeviceBuffer<float> k_, v_, cos_, sin_;
    StackDev dev_;
    double theta_ = 1e6;
};

// Phase-ordering words of one instance (barrier counter, epoch, error), zeroed once at creation and never again.
class SyncWords {
public:
    SyncWords(double timeout_s, unsigned backoff_ns, int stall_cta) : words_(2), error_(1) {
        timeout_s = watchdog_seconds(timeout_s);
        QTTS_CUDA_CHECK(cudaMemset(words_.get(), 0, words_.bytes()));
        QTTS_CUDA_CHECK(cudaMemset(error_.get(), 0, error_.bytes()));
        sync_.counter = words_.get();
        sync_.epoch = words_.get() + 1;
        sync_.error = error_.get();
        sync_.timeout_ns = (unsigned long long)(timeout_s * 1e9);
        sync_.backoff_ns = backoff_ns;
        sync_.stall_cta = stall_cta;
    }
    const GridSync& get() const { return sync_; }

private:
    DeviceBuffer<unsigned> words_;
    DeviceBuffer<int> error_;
    GridSync sync_;
};

[[noreturn]] void throw_watchdog(const char* what) {
    throw GpuError(fmt::format("the {} megakernel stopped waiting for another CTA (watchdog timeout); the GPU backend "
                               "cannot continue",
                               what),
                   "another program may be using the GPU's SMs; rerun, or use --device cpu");
}

// The limits a launch is planned within (the test options that emulate a smaller GPU).
LaunchLimits launch_limits(const CudaOptions& o) { return {.ctas = o.test_grid_ctas, .smem_bytes = o.test_smem_bytes}; }

// The settings of CudaOptions applied to a planned launch (ring copy method, pacing, test ring size, barriers).
MegaLaunch with_launch_options(MegaLaunch m, const CudaOptions& o) {
    m.barriers = o.grid_barriers ? 1 : 0;
    m.cp_async = o.ring_cp_async ? 1 : 0;
    if (o.ring_pace_kb >= 0) m.pace_bytes = o.ring_pace_kb * 1024;  // else the kernel's own (plan_*_launch)
    if (o.ring_chunk_rows > 0) m.chunk_rows = std::min(o.ring_chunk_rows, kMaxRingChunkRows);
    if (o.test_ring_bytes > 0) m.ring_bytes = std::min(m.ring_bytes, o.test_ring_bytes & ~127);
    return m;
}

DevSampler dev_sampler(const SamplerSettings& s, int vocab, uint64_t seed, uint64_t frame) {
    DevSampler d;
    d.do_sample = s.do_sample ? 1 : 0;
    d.temperature = s.temperature;
    d.top_k = int(std::clamp<int64_t>(s.top_k, 0, vocab));
    d.top_p = s.top_p;
    d.repetition_penalty = s.repetition_penalty;
    d.seed = seed;
    d.frame = frame;
    return d;
}

// Phase trace of one persistent launch: [n_cta][cap][2] ns (slot 0: start; b >= 1: end of phase b, and the
// moment the CTA had the inputs of phase b + 1).
class PhaseTrace {
public:
    void init(bool on, int n_cta) {
        if (!on) return;
        n_cta_ = n_cta;
        buf_ = DeviceBuffer<unsigned long long>(size_t(n_cta) * kCap * 2);
        ring_ = DeviceBuffer<unsigned long long>(size_t(n_cta) * kCap);
        fine_ = DeviceBuffer<unsigned long long>(size_t(n_cta) * kCap * kFineSegs);
        QTTS_CUDA_CHECK(cudaMemset(buf_.get(), 0, buf_.bytes()));
        QTTS_CUDA_CHECK(cudaMemset(ring_.get(), 0, ring_.bytes()));
        QTTS_CUDA_CHECK(cudaMemset(fine_.get(), 0, fine_.bytes()));
    }
    void attach(GridSync& s) const {
        s.trace = buf_.get();
        s.trace_ring = ring_.get();
        s.trace_fine = fine_.get();
        s.trace_cap = buf_.get() ? kCap : 0;
    }
    // Reads the last launch back; cls[b - 1] is the kind of the b-th phase. Per phase: work = its end minus the
    // CTA's previous departure; handoff = the last CTA to have its next inputs minus the last CTA to finish.
    void collect(const std::vector<int>& cls, const std::vector<std::string>& names) {
        if (!buf_.get()) return;
        std::vector<unsigned long long> t(buf_.size()), ring(ring_.size()), fine(fine_.size());
        QTTS_CUDA_CHECK(cudaMemcpy(t.data(), buf_.get(), buf_.bytes(), cudaMemcpyDeviceToHost));
        QTTS_CUDA_CHECK(cudaMemcpy(ring.data(), ring_.get(), ring_.bytes(), cudaMemcpyDeviceToHost));
        QTTS_CUDA_CHECK(cudaMemcpy(fine.data(), fine_.get(), fine_.bytes(), cudaMemcpyDeviceToHost));
        const auto at = [&](int c, int b, int k) { return double(t[(size_t(c) * kCap + b) * 2 + k]); };
        const auto ring_wait = [&](int c, int b) {  // cumulative per launch; slot 0 is never written (0)
            return double(ring[size_t(c) * kCap + b]) - double(ring[size_t(c) * kCap + b - 1]);
        };
        struct Acc {
            double n = 0, work_mean = 0, work_max = 0, handoff = 0, cycle = 0, ring_mean = 0, ring_max = 0;
            double seg[kFineSegs] = {};  // cycles, summed over the CTAs
        };
        std::vector<Acc> acc(names.size());
        const int nb = std::min(int(cls.size()), kCap - 1);
        for (int b = 1; b <= nb; ++b) {
            double wsum = 0, wmax = 0, last_arrive = 0, last_depart = 0, prev_depart = 0, rsum = 0, rmax = 0;
            for (int c = 0; c < n_cta_; ++c) {
                const double w = at(c, b, 0) - at(c, b - 1, 1), r = ring_wait(c, b);
                wsum += w;
                wmax = std::max(wmax, w);
                rsum += r;
                rmax = std::max(rmax, r);
                for (int s = 0; s < kFineSegs; ++s)
                    acc[size_t(cls[size_t(b - 1)])].seg[s] += double(fine[(size_t(c) * kCap + b) * kFineSegs + s]);
                last_arrive = std::max(last_arrive, at(c, b, 0));
                last_depart = std::max(last_depart, at(c, b, 1));
                prev_depart = std::max(prev_depart, at(c, b - 1, 1));
            }
            Acc& a = acc[size_t(cls[size_t(b - 1)])];
            a.n += 1;
            a.work_mean += wsum / n_cta_;
            a.work_max += wmax;
            a.handoff += last_depart - last_arrive;
            a.cycle += last_depart - prev_depart;
            a.ring_mean += rsum / n_cta_;
            a.ring_max += rmax;
        }
        report_ = fmt::format("{:<12} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  (us, means over occurrences; ring: "
                              "warp 0's wait for weight chunks, QTTS_FINE_TRACE builds)\n",
                              "phase", "n", "work mean", "work max", "handoff", "cycle", "ring mean", "ring max");
        double total = 0;
        for (size_t k = 0; k < names.size(); ++k) {
            const Acc& a = acc[k];
            if (a.n == 0) continue;
            total += a.cycle / 1e3;
            report_ += fmt::format("{:<12} {:>5} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f}\n", names[k],
                                   a.n, a.work_mean / a.n / 1e3, a.work_max / a.n / 1e3, a.handoff / a.n / 1e3,
                                   a.cycle / a.n / 1e3, a.ring_mean / a.n / 1e3, a.ring_max / a.n / 1e3);
        }
        report_ += fmt::format("sum of cycles: {:.1f} us over {} phases\n", total, nb);
        double ghz = 1.9;
        if (at(0, kCap - 9, 0) > 0) {
            const double ns = at(0, kCap - 9, 0) - at(0, 0, 1), cycles = at(0, kCap - 9, 1) - at(0, 0, 0);
            report_ += fmt::format("launch: {:.1f} us on CTA 0, SM clock {:.0f} MHz\n", ns / 1e3, cycles / ns * 1e3);
            ghz = cycles / ns;
        }
        const bool fine_built = std::any_of(fine.begin(), fine.end(), [](unsigned long long v) { return v != 0; });
        if (fine_built)
            report_ += fmt::format("{:<12} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}  (thread 0's SM cycles as us, mean "
                                   "over CTAs; QTTS_FINE_TRACE builds)\n",
                                   "segments", "wait", "prep", "ring", "mma", "reduce", "store", "end");
        for (size_t k = 0; k < names.size() && fine_built; ++k) {
            const Acc& a = acc[k];
            if (a.n == 0) continue;
            report_ += fmt::format("{:<12}", names[k]);
            for (int s = 0; s < kFineSegs; ++s) report_ += fmt::format(" {:>7.2f}", a.seg[s] / a.n / n_cta_ / ghz / 1e3);
            report_ += "\n";
        }
        if (at(0, kCap - 41, 1) > 0)
            report_ += fmt::format("ring (CTA 0, warp 0): {:.1f} us waiting for weight chunks, {:.1f} us in MMAs\n",
                                   at(0, kCap - 41, 0) / 1e3, at(0, kCap - 41, 1) / 1e3);
        if (at(0, kCap - 8, 0) > 0) {
            report_ += "sampler steps (last codebook, CTA 0, us):";
            for (int k = 1; k < 8; ++k)
                report_ += fmt::format(" {:.2f}", (at(0, kCap - 8 + k, 0) - at(0, kCap - 8 + k - 1, 0)) / 1e3);
            report_ += "  [load+penalty, pre-topk, kth, post-kth, max+compact, draw, tail]\n";
        }
    }
    const std::string& report() const { return report_; }

private:
    static constexpr int kCap = 1024;
    DeviceBuffer<unsigned long long> buf_, ring_, fine_;
    int n_cta_ = 0;
    std::string report_;
};

// Tagged values (MegaScratch) start with tag 0, which no phase uses.
DeviceBuffer<unsigned long long> tagged_buffer(size_t n) {
    DeviceBuffer<unsigned long long> b(n);
    QTTS_CUDA_CHECK(cudaMemset(b.get(), 0, b.bytes()));
    return b;
}

// Single-position scratch of one persistent decode launch; the talker and the predictor share its layout.
struct ScratchBuffers {
    DeviceBuffer<unsigned long long> h, qkv, attn, act;
    DeviceBuffer<float> part;
    DeviceBuffer<int> head_done;

    ScratchBuffers() = default;
    // cols: positions per pass (the predictor's first pass runs 2; column c at offset c · width).
    ScratchBuffers(const StackDev& st, int n_embd, int max_chunks, int cols = 1)
        : h(tagged_buffer(size_t(cols) * n_embd)), qkv(tagged_buffer(size_t(cols) * (st.q_dim() + 2 * st.kv_dim()))),
          attn(tagged_buffer(size_t(cols) * st.q_dim())), act(tagged_buffer(size_t(cols) * st.n_ff)),
          part(size_t(st.n_head) * max_chunks * (2 + st.head_dim)), head_done(size_t(st.n_layer) * st.n_head) {
        QTTS_CUDA_CHECK(cudaMemset(head_done.get(), 0, head_done.bytes()));  // the combining CTA resets it after use
    }
    MegaScratch view() const {
        MegaScratch m;
        m.h = h.get();
        m.qkv = qkv.get();
        m.part = part.get();
        m.attn = attn.get();
        m.head_done = head_done.get();
        m.act = act.get();
        return m;
    }
};

class CudaTalker final : public TalkerBackend, public CudaTimed {
public:
    CudaTalker(const ModelConfig& config, const ModelWeights& w, const CudaOptions& o)
        : stack_(w.talker.stack), sync_(o.timeout_s, o.backoff_ns, o.test_stall_cta), E_(int(config.talker.stack.n_embd)),
          vocab_(int(config.talker.stack.vocab_size)), options_(o) {
        const StackDev& st = stack_.dev();
        head_ = upload_bf16({&w.talker.codec_head});
        scratch_ = ScratchBuffers(st, E_, o.max_chunks);
        x0_ = DeviceBuffer<float>(size_t(E_));
        hidden_d_ = DeviceBuffer<float>(size_t(E_));
        logits_d_ = DeviceBuffer<float>(size_t(vocab_));
        in_ = PinnedBuffer<float>(size_t(E_));
        hidden_ = PinnedBuffer<float>(size_t(E_));
        logits_ = PinnedBuffer<float>(size_t(vocab_));
        err_ = PinnedBuffer<int>(1);
        grid_ = with_launch_options(plan_talker_launch(st, vocab_, o.max_chunks, launch_limits(o)), o);
        trace_.init(o.trace, grid_.n_cta);
        for (int l = 0; l < st.n_layer; ++l)
            for (int k = 0; k < 5; ++k) trace_cls_.push_back(k);
        stack_.ensure_capacity(256, 0, stream_.get());
        QTTS_CUDA_CHECK(cudaDeviceSynchronize());
    }

    void prefill(std::span<const float> embeds, int64_t n) override {
        QTTS_CHECK(n > 0 && int64_t(embeds.size()) == n * E_, "talker prefill input has {} values, expected {}",
                   embeds.size(), n * E_);
        check_usable();
        cudaStream_t s = stream_.get();
        length_ = 0;
        stack_.ensure_capacity(int(n), 0, s);
        const StackDev& st = stack_.dev();
        const int N = int(n), E = E_, F = st.n_ff, Q = st.q_dim(), W = Q + 2 * st.kv_dim();
        ensure(px_, size_t(N) * E);
        ensure(pxn_, size_t(N) * E);
        ensure(pqkv_, size_t(N) * W);
        ensure(patt_, size_t(N) * Q);
        ensure(pg_, size_t(N) * F);
        ensure(pu_, size_t(N) * F);
        const int widest = std::max({W, F, E, vocab_});
        const size_t split_cap = 8 * size_t(N) * size_t(widest);
        ensure(psplit_, split_cap);
        // y[t] (+)= x[t] · Wᵀ for the N positions (x [N, K], y [N, R]).
        const auto gemm = [&](const float* x, const uint16_t* w, float* y, int R, int K, bool accumulate, int n = 0) {
            launch_gemm_bf16({.x = x, .w = w, .y = y, .n = n ? n : N, .R = R, .K = K, .ldx = K, .ldy = R,
                              .accumulate = accumulate, .part = psplit_.get(), .part_cap = split_cap},
                             s);
        };
        std::lock_guard lock(launch_mutex());
        QTTS_CUDA_CHECK(cudaEventRecord(t0_.get(), s));
        QTTS_CUDA_CHECK(cudaMemcpyAsync(px_.get(), embeds.data(), embeds.size() * 4, cudaMemcpyHostToDevice, s));
        for (int l = 0; l < st.n_layer; ++l) {
            const LayerDev& L = st.layers[l];
            launch_rms_norm_rows(px_.get(), E, L.input_norm, pxn_.get(), E, N, E, st.eps, s);
            gemm(pxn_.get(), L.wqkv, pqkv_.get(), W, E, false);
            launch_qk_norm_rope_append(st, l, pqkv_.get(), N, 0, s);
            launch_attention_prefill(st, l, pqkv_.get(), N, 0, patt_.get(), s);
            gemm(patt_.get(), L.wo, px_.get(), E, Q, true);
            launch_rms_norm_rows(px_.get(), E, L.post_norm, pxn_.get(), E, N, E, st.eps, s);
            gemm(pxn_.get(), L.w_gate, pg_.get(), F, E, false);
            gemm(pxn_.get(), L.w_up, pu_.get(), F, E, false);
            launch_silu_mul(pg_.get(), pu_.get(), pg_.get(), N * F, s);
            gemm(pg_.get(), L.w_down, px_.get(), E, F, true);
        }
        launch_rms_norm_rows(px_.get() + size_t(N - 1) * E, E, st.final_norm, hidden_d_.get(), E, 1, E, st.eps, s);
        gemm(hidden_d_.get(), head_.get(), logits_d_.get(), vocab_, E, false, 1);
        QTTS_CUDA_CHECK(cudaEventRecord(t1_.get(), s));
        fetch_outputs(false);
        length_ = N;
    }

    void step(std::span<const float> embed) override {
        QTTS_CHECK(int64_t(embed.size()) == E_, "talker step input has {} values, expected {}", embed.size(), E_);
        QTTS_CHECK(length_ > 0, "talker step before prefill");
        check_usable();
        cudaStream_t s = stream_.get();
        stack_.ensure_capacity(length_ + 1, length_, s);
        std::memcpy(in_.get(), embed.data(), size_t(E_) * 4);
        const TalkerStepArgs a = step_args(x0_.get(), nullptr);
        std::lock_guard lock(launch_mutex());
        QTTS_CUDA_CHECK(cudaMemcpyAsync(x0_.get(), in_.get(), size_t(E_) * 4, cudaMemcpyHostToDevice, s));
        QTTS_CUDA_CHECK(cudaEventRecord(t0_.get(), s));
        launch_talker_step(a, grid_, s);
        QTTS_CUDA_CHECK(cudaEventRecord(t1_.get(), s));
        fetch_outputs(true);
        trace_.collect(trace_cls_, {"qkv", "attention", "o-proj", "gate/up", "down"});
        ++length_;
    }

    // The device frame loop (CudaFrameLoop, which holds the launch mutex): one step on a device-resident input,
    // enqueued on stream() without waiting; does nothing on the device once *stop is set.
    void enqueue_step(const float* x0, const int* stop) {
        QTTS_CHECK(length_ > 0, "talker step before prefill");
        check_usable();
        stack_.ensure_capacity(length_ + 1, length_, stream_.get());
        launch_talker_step(step_args(x0, stop), grid_, stream_.get());
        ++length_;
    }
    cudaStream_t stream() const { return stream_.get(); }
    const float* hidden_device() const { return hidden_d_.get(); }
    const float* logits_device() const { return logits_d_.get(); }
    // The watchdog word of the launches; a frame loop that finds it set calls fail().
    const int* error_word() const { return sync_.get().error; }
    [[noreturn]] void fail() {
        broken_ = true;
        throw_watchdog("talker");
    }

    std::span<const float> hidden() const override { return {hidden_.get(), size_t(E_)}; }
    std::span<const float> logits() const override { return {logits_.get(), size_t(vocab_)}; }
    std::string name() const override { return "cuda"; }
    double last_device_ms() const override { return last_ms_; }
    std::string trace_report() const override { return trace_.report(); }

private:
    static void ensure(DeviceBuffer<float>& b, size_t n) {
        if (b.size() < n) b = DeviceBuffer<float>(n);
    }
    void check_usable() const {
        if (broken_) throw_watchdog("talker");
    }
    TalkerStepArgs step_args(const float* x0, const int* stop) {
        TalkerStepArgs a;
        a.stack = stack_.dev();
        a.s = scratch_.view();
        a.sync = sync_.get();
        trace_.attach(a.sync);
        a.x0 = x0;
        a.pos = length_;
        a.n_chunks = std::clamp(grid_.n_cta / a.stack.n_head, 1, std::min(options_.max_chunks, length_ + 1));
        a.head = head_.get();
        a.vocab = vocab_;
        a.hidden_out = hidden_d_.get();
        a.logits_out = logits_d_.get();
        a.stop = stop;
        return a;
    }
    void fetch_outputs(bool check_error) {
        cudaStream_t s = stream_.get();
        QTTS_CUDA_CHECK(cudaMemcpyAsync(hidden_.get(), hidden_d_.get(), size_t(E_) * 4, cudaMemcpyDeviceToHost, s));
        QTTS_CUDA_CHECK(cudaMemcpyAsync(logits_.get(), logits_d_.get(), size_t(vocab_) * 4, cudaMemcpyDeviceToHost, s));
        if (check_error)
            QTTS_CUDA_CHECK(cudaMemcpyAsync(err_.get(), sync_.get().error, sizeof(int), cudaMemcpyDeviceToHost, s));
        QTTS_CUDA_CHECK(cudaStreamSynchronize(s));
        float ms = 0;
        QTTS_CUDA_CHECK(cudaEventElapsedTime(&ms, t0_.get(), t1_.get()));
        last_ms_ = ms;
        if (check_error && *err_.get()) {
            broken_ = true;
            throw_watchdog("talker");
        }
    }

    Stream stream_;
    Event t0_, t1_;
    DeviceStack stack_;
    SyncWords sync_;
    int E_, vocab_;
    CudaOptions options_;
    MegaLaunch grid_;
    DeviceBuffer<uint16_t> head_;
    ScratchBuffers scratch_;
    DeviceBuffer<float> x0_, hidden_d_, logits_d_;
    DeviceBuffer<float> px_, pxn_, pqkv_, patt_, pg_, pu_, psplit_;
    PinnedBuffer<float> in_, hidden_, logits_;
    PinnedBuffer<int> err_;
    int length_ = 0;
    bool broken_ = false;
    double last_ms_ = -1;
    PhaseTrace trace_;
    std::vector<int> trace_cls_;
};

class CudaPredictor final : public PredictorBackend, public CudaTimed {
public:
    CudaPredictor(const ModelConfig& config, const ModelWeights& w, const CudaOptions& o)
        : stack_(w.predictor.stack), sync_(o.timeout_s, o.backoff_ns, o.test_stall_cta), G_(int(config.talker.num_code_groups)),
          E_(int(config.predictor.stack.n_embd)), in_dim_(int(config.talker.stack.n_embd)),
          vocab_(int(config.predictor.stack.vocab_size)), vocab0_(int(config.talker.stack.vocab_size)) {
        const auto& p = w.predictor;
        QTTS_CHECK(int(p.lm_head.size()) == G_ - 1 && int(p.codec_embedding.size()) == G_ - 1,
                   "predictor has {} heads for {} code groups", p.lm_head.size(), G_);
        if (in_dim_ % 32) throw GpuError("the CUDA backend needs a talker width divisible by 32", "use --device cpu");
        const StackDev& st = stack_.dev();
        emb0_ = upload_bf16({&w.talker.codec_embedding});
        std::vector<const Tensor*> tables, heads;
        for (int k = 0; k < G_ - 1; ++k) {
            tables.push_back(&p.codec_embedding[size_t(k)]);
            heads.push_back(&p.lm_head[size_t(k)]);
        }
        emb_ = upload_bf16(tables);
        heads_ = upload_bf16(heads);
        if (p.mtp_w) {
            mtp_w_ = upload_bf16({&*p.mtp_w});
            mtp_b_ = upload(p.mtp_b->data);
        }
        scratch_ = ScratchBuffers(st, E_, o.max_chunks, 2);
        logits_d_ = tagged_buffer(size_t(vocab_));
        xproj_ = tagged_buffer(2 * size_t(E_));
        hidden_d_ = DeviceBuffer<float>(size_t(in_dim_));
        codes_d_ = DeviceBuffer<int>(size_t(G_));
        in_ = PinnedBuffer<float>(size_t(in_dim_));
        out_ = PinnedBuffer<int>(size_t(G_) + 1);
        grid_ = with_launch_options(plan_predictor_launch(st, vocab_, vocab0_, in_dim_, G_, o.max_chunks, launch_limits(o)),
                                    o);
        if (o.predictor_table && G_ >= 3) build_table(p.mtp_w.has_value());
        trace_.init(o.trace, grid_.n_cta);
        for (int t = 1; t < G_; ++t) {  // pass 1 runs positions 0 and 1 together
            // Passes 2.. with the table start at layer 0's attention (phase kind 1), without it at the projection
            // or layer 0's QKV; the pass's first phase also holds the sampling (class 7).
            const bool tab = t >= 2 && table_.size() > 0;
            if (p.mtp_w && !tab) trace_cls_.push_back(6);
            const int first = tab ? 1 : 0;
            for (int l = 0; l < st.n_layer; ++l)
                for (int k = l == 0 ? first : 0; k < 5; ++k)
                    trace_cls_.push_back(t >= 2 && l == 0 && k == first && (tab || !p.mtp_w) ? 7 : k);
            trace_cls_.push_back(5);
        }
        stack_.ensure_capacity(G_, 0, stream_.get());
        QTTS_CUDA_CHECK(cudaDeviceSynchronize());
    }

    void predict(std::span<const float> talker_hidden, std::span<int32_t> codes, const SamplerSettings& s,
                 const CounterRng& rng, uint64_t frame) override {
        QTTS_CHECK(int(codes.size()) == G_, "predictor needs {} codes, got {}", G_, codes.size());
        QTTS_CHECK(int(talker_hidden.size()) == in_dim_, "predictor input has {} values, expected {}",
                   talker_hidden.size(), in_dim_);
        QTTS_CHECK(codes[0] >= 0 && codes[0] < vocab0_, "code {} out of range for codebook 0", codes[0]);
        if (broken_) throw_watchdog("code predictor");
        cudaStream_t st = stream_.get();
        std::memcpy(in_.get(), talker_hidden.data(), size_t(in_dim_) * 4);
        PredictorFrameArgs a = frame_args(hidden_d_.get(), s, rng.seed(), frame, codes_d_.get());
        a.code0 = codes[0];
        std::lock_guard lock(launch_mutex());
        QTTS_CUDA_CHECK(cudaMemcpyAsync(hidden_d_.get(), in_.get(), size_t(in_dim_) * 4, cudaMemcpyHostToDevice, st));
        QTTS_CUDA_CHECK(cudaEventRecord(t0_.get(), st));
        launch_predictor_frame(a, grid_, st);
        QTTS_CUDA_CHECK(cudaEventRecord(t1_.get(), st));
        QTTS_CUDA_CHECK(cudaMemcpyAsync(out_.get(), codes_d_.get(), size_t(G_) * 4, cudaMemcpyDeviceToHost, st));
        QTTS_CUDA_CHECK(cudaMemcpyAsync(out_.get() + G_, sync_.get().error, sizeof(int), cudaMemcpyDeviceToHost, st));
        QTTS_CUDA_CHECK(cudaStreamSynchronize(st));
        float ms = 0;
        QTTS_CUDA_CHECK(cudaEventElapsedTime(&ms, t0_.get(), t1_.get()));
        last_ms_ = ms;
        if (out_.get()[G_]) {
            broken_ = true;
            throw_watchdog("code predictor");
        }
        for (int k = 1; k < G_; ++k) codes[size_t(k)] = out_.get()[k];
        trace_.collect(trace_cls_, {"qkv", "attention", "o-proj", "gate/up", "down", "head", "mtp",
                                    table_.size() > 0 ? "sample+attention" : "sample+qkv"});
    }
    std::string name() const override { return "cuda"; }
    double last_device_ms() const override { return last_ms_; }
    std::string trace_report() const override { return trace_.report(); }

    // The device frame loop (CudaFrameLoop, which holds the launch mutex): one frame that draws codebook 0 from
    // the talker's device logits and reads its hidden state from device memory, enqueued on `stream`.
    void enqueue_loop_frame(const FrameLoopArgs& loop, const float* talker_hidden, const SamplerSettings& s,
                            uint64_t seed, uint64_t frame, int* codes_out, cudaStream_t stream) {
        if (broken_) throw_watchdog("code predictor");
        PredictorFrameArgs a = frame_args(talker_hidden, s, seed, frame, codes_out);
        a.loop = loop;
        launch_predictor_frame(a, grid_, stream);
    }
    const int* error_word() const { return sync_.get().error; }
    [[noreturn]] void fail() {
        broken_ = true;
        throw_watchdog("code predictor");
    }

private:
    // Layer 0's table (PredictorFrameArgs::qkv0): the input of pass t (2 .. G-1) is a row of codebook t-1's
    // embedding, so its projection, RMSNorm and QKV product are functions of the code alone, computed here for every
    // code with the prefill kernels (the same norm arithmetic; the GEMM sums in another order, ~1e-7 relative).
    // A pass then starts with layer 0's attention reading its row: one phase fewer, with its handoff.
    void build_table(bool mtp) {
        const StackDev& st = stack_.dev();
        const int R = st.q_dim() + 2 * st.kv_dim(), row = R + (mtp ? E_ : 0), tables = G_ - 2;
        const size_t n = size_t(tables) * size_t(vocab_) * size_t(row);
        size_t free_bytes = 0, total = 0;
        QTTS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
        if (n * 4 + (size_t(1) << 30) > free_bytes) return;  // short of memory: the passes compute layer 0 themselves
        table_ = DeviceBuffer<float>(n);
        DeviceBuffer<float> x(size_t(vocab_) * in_dim_), xn(size_t(vocab_) * E_);
        cudaStream_t s = stream_.get();
        for (int j = 0; j < tables; ++j) {
            float* tab = table_.get() + size_t(j) * vocab_ * row;
            launch_bf16_to_f32(emb_.get() + size_t(j) * vocab_ * in_dim_, x.get(), size_t(vocab_) * in_dim_, s);
            const float* in = x.get();
            int ld = in_dim_;
            if (mtp) {  // the projected input b + W x, also the residual of layer 0
                launch_fill_rows(tab + R, row, mtp_b_.get(), vocab_, E_, s);
                launch_gemm_bf16({.x = x.get(), .w = mtp_w_.get(), .y = tab + R, .n = vocab_, .R = E_, .K = in_dim_,
                                  .ldx = in_dim_, .ldy = row, .accumulate = 1},
                                 s);
                in = tab + R, ld = row;
            }
            launch_rms_norm_rows(in, ld, st.layers[0].input_norm, xn.get(), E_, vocab_, E_, st.eps, s);
            launch_gemm_bf16({.x = xn.get(), .w = st.layers[0].wqkv, .y = tab, .n = vocab_, .R = R, .K = E_, .ldx = E_,
                              .ldy = row},
                             s);
        }
        QTTS_CUDA_CHECK(cudaStreamSynchronize(s));
    }

    PredictorFrameArgs frame_args(const float* talker_hidden, const SamplerSettings& s, uint64_t seed, uint64_t frame,
                                  int* codes_out) {
        PredictorFrameArgs a;
        a.stack = stack_.dev();
        a.s = scratch_.view();
        a.s.logits = logits_d_.get();
        a.s.xproj = xproj_.get();
        a.sync = sync_.get();
        trace_.attach(a.sync);
        a.talker_hidden = talker_hidden;
        a.emb0 = emb0_.get();
        a.emb = emb_.get();
        a.heads = heads_.get();
        a.mtp_w = mtp_w_.get();
        a.mtp_b = mtp_b_.get();
        a.qkv0 = table_.get();  // null without the table
        a.in_dim = in_dim_;
        a.vocab = vocab_;
        a.vocab0 = vocab0_;
        a.n_groups = G_;
        a.sampler = dev_sampler(s, vocab_, seed, frame);
        a.codes_out = codes_out;
        return a;
    }

    Stream stream_;
    Event t0_, t1_;
    DeviceStack stack_;
    SyncWords sync_;
    int G_, E_, in_dim_, vocab_, vocab0_;
    MegaLaunch grid_;
    DeviceBuffer<uint16_t> emb0_, emb_, heads_, mtp_w_;
    ScratchBuffers scratch_;
    DeviceBuffer<float> mtp_b_, hidden_d_, table_;
    DeviceBuffer<unsigned long long> logits_d_, xproj_;
    DeviceBuffer<int> codes_d_;
    PinnedBuffer<float> in_;
    PinnedBuffer<int> out_;
    bool broken_ = false;
    double last_ms_ = -1;
    PhaseTrace trace_;
    std::vector<int> trace_cls_;
};

// The engine's frame loop on the device (FrameLoopBackend) over one CudaTalker and CudaPredictor: per frame
// [talker step] -> [predictor frame: codebook 0 drawn on the device, codebooks 1..G-1, the next talker input], all
// on the talker's stream. Codes land in host-mapped memory; the host waits once per collected batch, which also
// fetches the two watchdog words. Holds the process-wide launch mutex from a batch's first enqueue to its collect.
class CudaFrameLoop final : public FrameLoopBackend {
public:
    CudaFrameLoop(CudaTalker& talker, CudaPredictor& predictor, const ModelConfig& config, const ModelWeights& w)
        : talker_(talker), predictor_(predictor), G_(int(config.talker.num_code_groups)),
          D_(int(config.talker.stack.n_embd)), vocab0_(int(config.talker.stack.vocab_size)),
          eos_(int(config.talker.codec_eos_id)), seen_(size_t(vocab0_)), stop_(1), next_in_(size_t(D_)),
          codes_(size_t(kRing) * G_), start_(kRing), mid_(kRing), end_(kRing) {
        QTTS_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&codes_dev_), codes_.get(), 0));
        QTTS_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&cancel_dev_), cancel_.get(), 0));
        *cancel_word() = 0;
        // The next input sums the tables as the host loop does, in fp32: the device's bf16 copies serve when they
        // hold the values exactly (bf16 checkpoints), else fp32 copies are uploaded.
        std::vector<const Tensor*> tables{&w.talker.codec_embedding};
        for (const Tensor& t : w.predictor.codec_embedding) tables.push_back(&t);
        const bool exact = std::all_of(tables.begin(), tables.end(), [](const Tensor* t) {
            return std::all_of(t->data.begin(), t->data.end(), [](float x) { return (std::bit_cast<uint32_t>(x) & 0xffffu) == 0; });
        });
        if (!exact) {
            std::vector<float> all;
            for (const Tensor* t : tables) all.insert(all.end(), t->data.begin(), t->data.end());
            tables_f32_ = upload(all);
        }
    }
    ~CudaFrameLoop() override {
        if (lock_.owns_lock()) cudaStreamSynchronize(talker_.stream());
    }

    void begin(const Settings& s) override {
        finish();
        settings_ = s;
        next_ = collected_ = 0;
        if (text_.size() < size_t(s.text_rows) * D_) text_ = DeviceBuffer<float>(size_t(s.text_rows) * D_);
        QTTS_CUDA_CHECK(cudaMemsetAsync(seen_.get(), 0, seen_.bytes(), talker_.stream()));
        QTTS_CUDA_CHECK(cudaMemsetAsync(stop_.get(), 0, stop_.bytes(), talker_.stream()));
        *cancel_word() = 0;  // nothing is in flight after finish()
    }

    void put_text_rows(int64_t first, std::span<const float> rows) override {
        QTTS_CHECK(first >= 0 && rows.size() % size_t(D_) == 0 && size_t(first) * D_ + rows.size() <= text_.size(),
                   "text rows [{}, +{}) outside the {} rows begin() allowed", first, rows.size() / size_t(D_),
                   settings_.text_rows);
        QTTS_CUDA_CHECK(cudaMemcpyAsync(text_.get() + size_t(first) * D_, rows.data(), rows.size() * 4,
                                        cudaMemcpyHostToDevice, talker_.stream()));
    }

    void enqueue_frame(int64_t g, int64_t next_text_row) override {
        QTTS_CHECK(g == next_ && g - collected_ < kRing, "frame {} enqueued out of order (next {}, collected {})", g,
                   next_, collected_);
        QTTS_CHECK(next_text_row < settings_.text_rows, "text row {} of {}", next_text_row, settings_.text_rows);
        if (!lock_.owns_lock()) lock_ = std::unique_lock(launch_mutex());
        cudaStream_t s = talker_.stream();
        const size_t slot = size_t(g % kRing);
        codes_.get()[slot * G_] = -1;  // stays so if the frame does nothing (collected, so not in flight)
        QTTS_CUDA_CHECK(cudaEventRecord(start_[slot].get(), s));
        if (g > 0) talker_.enqueue_step(next_in_.get(), stop_.get());
        QTTS_CUDA_CHECK(cudaEventRecord(mid_[slot].get(), s));
        FrameLoopArgs fl;
        fl.talker_logits = talker_.logits_device();
        fl.eos = eos_;
        fl.ban_eos = talker_eos_banned(g, settings_.ban_eos);
        fl.suppress_from = vocab0_ - int(kTalkerControlIds);
        fl.sampler = dev_sampler(settings_.talker, vocab0_, settings_.seed, settings_.frame_offset + uint64_t(g));
        fl.seen = seen_.get();
        fl.stop = stop_.get();
        fl.cancel = cancel_dev_;
        if (next_text_row >= 0) {
            fl.next_out = next_in_.get();
            fl.text_row = text_.get() + size_t(next_text_row) * D_;
            fl.tables_f32 = tables_f32_.get();
        }
        predictor_.enqueue_loop_frame(fl, talker_.hidden_device(), settings_.predictor, settings_.seed,
                                      settings_.frame_offset + uint64_t(g), codes_dev_ + slot * G_, s);
        QTTS_CUDA_CHECK(cudaEventRecord(end_[slot].get(), s));
        ++next_;
    }

    Times collect(int64_t first, int64_t n, std::span<int32_t> codes,
                  const std::function<bool()>& should_cancel) override {
        QTTS_CHECK(first == collected_ && n >= 1 && first + n == next_ && codes.size() == size_t(n * G_),
                   "collect of frames [{}, +{}) (collected {}, enqueued {})", first, n, collected_, next_);
        // The watchdog words come with the same wait (the engine collects everything it enqueued).
        cudaStream_t s = talker_.stream();
        QTTS_CUDA_CHECK(cudaMemcpyAsync(errors_.get(), talker_.error_word(), sizeof(int), cudaMemcpyDeviceToHost, s));
        QTTS_CUDA_CHECK(cudaMemcpyAsync(errors_.get() + 1, predictor_.error_word(), sizeof(int), cudaMemcpyDeviceToHost, s));
        if (should_cancel) {
            // Poll the batch and the caller's flag together (the default stream sync spins as well); a cancel reaches
            // the device through host-mapped memory, which every predictor frame reads at its end.
            QTTS_CUDA_CHECK(cudaEventRecord(done_.get(), s));
            for (bool cancelled = false;;) {
                const cudaError_t e = cudaEventQuery(done_.get());
                if (e == cudaSuccess) break;
                if (e != cudaErrorNotReady) QTTS_CUDA_CHECK(e);
                if (!cancelled && should_cancel()) {
                    *cancel_word() = 1;
                    cancelled = true;
                }
                std::this_thread::yield();
            }
        }
        QTTS_CUDA_CHECK(cudaStreamSynchronize(s));
        release_if_idle(next_);
        if (errors_.get()[0]) talker_.fail();
        if (errors_.get()[1]) predictor_.fail();
        Times t;
        bool stopped = false;
        for (int64_t i = 0; i < n; ++i) {
            const size_t slot = size_t((first + i) % kRing);
            const int* c = codes_.get() + slot * G_;
            std::copy(c, c + G_, codes.begin() + i * G_);
            if (stopped || c[0] < 0) continue;  // launches after EOS or a cancel did nothing
            float talker_ms = 0, predictor_ms = 0;
            QTTS_CUDA_CHECK(cudaEventElapsedTime(&talker_ms, start_[slot].get(), mid_[slot].get()));
            QTTS_CUDA_CHECK(cudaEventElapsedTime(&predictor_ms, mid_[slot].get(), end_[slot].get()));
            t.talker_s += talker_ms * 1e-3;
            t.predictor_s += predictor_ms * 1e-3;
            t.talker_steps += first + i > 0;
            stopped = c[0] == eos_;
        }
        return t;
    }

    void finish() override {
        if (next_ == collected_ && !lock_.owns_lock()) return;
        QTTS_CUDA_CHECK(cudaStreamSynchronize(talker_.stream()));
        release_if_idle(next_);
    }

private:
    static constexpr int kRing = 64;  // frames in flight at most (the engine enqueues one vocoder chunk at a time)
    volatile int* cancel_word() { return cancel_.get(); }
    void release_if_idle(int64_t collected) {
        collected_ = collected;
        if (collected_ == next_ && lock_.owns_lock()) lock_.unlock();
    }

    CudaTalker& talker_;
    CudaPredictor& predictor_;
    int G_, D_, vocab0_, eos_;
    Settings settings_;
    DeviceBuffer<unsigned char> seen_;
    DeviceBuffer<int> stop_;
    DeviceBuffer<float> next_in_, text_, tables_f32_;
    PinnedBuffer<int> codes_;  // [kRing][G], host-mapped
    PinnedBuffer<int> errors_{2};
    PinnedBuffer<int> cancel_{1};  // host-mapped: the host's cancel flag
    int* codes_dev_ = nullptr;
    int* cancel_dev_ = nullptr;
    std::vector<Event> start_, mid_, end_;
    Event done_;
    int64_t next_ = 0, collected_ = 0;
    std::unique_lock<std::mutex> lock_;
};

}  // namespace

// QTTS_WATCHDOG_S replaces only the default: a timeout a caller chose itself (the watchdog test's) stays.
double watchdog_seconds(double configured) {
    if (configured != CudaOptions{}.timeout_s) return configured;
    const char* v = std::getenv("QTTS_WATCHDOG_S");
    if (!v || !*v) return configured;
    char* end = nullptr;
    const double s = std::strtod(v, &end);
    if (*end || !(s > 0.0) || s > 1e6)
        throw GpuError(fmt::format("QTTS_WATCHDOG_S={} is not a number of seconds", v), "unset it or give e.g. 600");
    return s;
}

Backends make_backends(const ModelConfig& config, const ModelWeights& weights, const CudaOptions& options) {
    if (device_count() <= 0)
        throw GpuError("no CUDA GPU found", "use --device cpu, or --device auto to fall back to the CPU");
    QTTS_CHECK(options.max_chunks >= 1 && options.max_chunks <= kMaxChunks, "max_chunks {} out of range",
               options.max_chunks);
    QTTS_CHECK(options.test_grid_ctas >= 0 && options.test_smem_bytes >= 0, "test_grid_ctas {} / test_smem_bytes {} out of range",
               options.test_grid_ctas, options.test_smem_bytes);
    Backends b;
    auto talker = std::make_unique<CudaTalker>(config, weights, options);
    auto predictor = std::make_unique<CudaPredictor>(config, weights, options);
    b.frame_loop = std::make_unique<CudaFrameLoop>(*talker, *predictor, config, weights);
    b.talker = std::move(talker);
    b.predictor = std::move(predictor);
    return b;
}

void register_backend() {
    if (device_count() <= 0) return;
    register_gpu_backend([](const ModelConfig& c, const ModelWeights& w, const Vocoder& v) {
        Backends b = make_backends(c, w);
        b.vocoder = make_vocoder_stream(v);
        return b;
    });
}

}  // namespace qtts::cuda
