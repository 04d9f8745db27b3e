// CudaVocoder / CudaVocoderStream (see cuda_vocoder.h). The weights are repacked from the CPU decoder's packed
// panels into dense [taps * in, out] matrices (transposed convs: one per phase; q/k/v side by side; gate/up
// interleaved for the fused SwiGLU epilogue) in one device allocation. A chunk of n frames is ~100 launches on
// one stream: per stage a few conv GEMMs with fused bias / SnakeBeta / GELU / residual epilogues, plus the
// row-wise kernels. Causal state lives in "staged" buffers [history rows + new rows] kept in two copies: a
// chunk reads copy p and its last history rows are carried into the head of copy p ^ 1 by one launch at the end.
// CUDA graphs: the work of a chunk depends on the host only through its length n, the parity p (which copy of
// every staged buffer it reads) and the pinned input slot [pos0 | codes] (copied in by the first node, so the
// position and the codes are read when the graph runs). So the chunk is captured once per (n, p) and replayed;
// the graph holds exactly the launches of the direct path, so both give the same bits.
#include "cuda/cuda_vocoder.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "core/error.h"
#include "core/vocoder_weights.h"
#include "cuda/device_buffer.h"
#include "cuda/device_info.h"
#include "cuda/vocoder_kernels.h"

namespace qtts::cuda {

namespace {

constexpr size_t kNone = std::numeric_limits<size_t>::max();
constexpr int kConvNeXtRatio = 4;  // pwconv1 width / latent

// One conv GEMM's device weights, as offsets into CudaVocoderWeights::buf.
struct DevGemm {
    size_t w = kNone, bias = kNone;
    int ntap = 1, cin = 0, N = 0, phases = 1;
    int splits = 1, kchunk = 0;
    int K() const { return ntap * cin; }
};

struct DevSnake {
    size_t a = kNone, b = kNone;
};

struct DevLayer {
    size_t attn_norm, attn_scale, mlp_norm, mlp_scale;
    DevGemm qkv, o, gate_up, down;
};

struct DevUpsample {
    DevGemm up;
    int stride = 1;
    size_t dw_w, dw_b, ln_w, ln_b, gamma;
    DevGemm pw1, pw2;
};

struct DevUnit {
    DevSnake act1, act2;
    DevGemm conv1, conv2;
    int dilation = 1;
};

struct DevBlock {
    DevSnake act;
    DevGemm up;
    int stride = 1;
    DevUnit units[3];
};

// Split-K pieces of a GEMM: a function of K only, so every chunk size sums in the same order.
// About 256 of K per piece: enough CTAs to stream the weights when a chunk has few rows; at 32 frames the
// partial sums add ~60 MB of traffic per frame (a few % of the time).
int splits_for(int K) { return std::clamp(K / 256, 1, 16); }

// Host staging of the device weights; every piece 16-byte aligned.
class Packer {
public:
    size_t add(const float* p, size_t n) {
        const size_t off = (data_.size() + 3) / 4 * 4;
        data_.resize(off + n, 0.0f);
        std::memcpy(data_.data() + off, p, n * sizeof(float));
        return off;
    }
    size_t add(const std::vector<float>& v) { return v.empty() ? kNone : add(v.data(), v.size()); }
    const std::vector<float>& data() const { return data_; }

private:
    std::vector<float> data_;
};

// PackedWeight panels [ceil(N / 16)][taps][in][16] -> dense [taps * in][N].
std::vector<float> dense(const vocoder_ops::PackedWeight& w) {
    const int64_t K = w.n_tap * w.n_in, N = w.n_out, P = vocoder_ops::kPanel;
    std::vector<float> d(size_t(K * N));
    for (int64_t p = 0; p * P < N; ++p)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t j = 0; j < P && p * P + j < N; ++j)
                d[size_t(k * N + p * P + j)] = w.panels[size_t((p * K + k) * P + j)];
    return d;
}

DevGemm finish_gemm(DevGemm g) {
    g.splits = splits_for(g.K());
    g.kchunk = ((g.K() + g.splits - 1) / g.splits + 15) / 16 * 16;
    g.splits = (g.K() + g.kchunk - 1) / g.kchunk;
    return g;
}

DevGemm add_gemm(Packer& pk, const vocoder_ops::PackedWeight& w) {
    DevGemm g;
    g.w = pk.add(dense(w));
    g.bias = pk.add(w.bias);
    g.ntap = int(w.n_tap);
    g.cin = int(w.n_in);
    g.N = int(w.n_out);
    return finish_gemm(g);
}

DevGemm add_transposed(Packer& pk, const voc::TransposedConv& tc) {
    std::vector<float> all;
    for (const auto& ph : tc.phases) {
        const std::vector<float> d = dense(ph);
        all.insert(all.end(), d.begin(), d.end());
    }
    DevGemm g;
    g.w = pk.add(all);
    g.bias = pk.add(tc.phases.front().bias);
    g.ntap = int(tc.phases.front().n_tap);
    g.cin = int(tc.phases.front().n_in);
    g.N = int(tc.phases.front().n_out);
    g.phases = int(tc.stride);
    return finish_gemm(g);
}

// Side by side along N: [K][N_a + N_b + ...] (no biases).
DevGemm add_concat(Packer& pk, const std::vector<const vocoder_ops::PackedWeight*>& parts, bool interleave) {
    const int64_t K = parts.front()->n_tap * parts.front()->n_in;
    std::vector<std::vector<float>> ds;
    int64_t N = 0;
    for (const auto* p : parts) {
        ds.push_back(dense(*p));
        N += p->n_out;
    }
    std::vector<float> d(size_t(K * N));
    for (int64_t k = 0; k < K; ++k) {
        if (interleave) {  // (a o, b o) pairs
            const int64_t n = parts.front()->n_out;
            for (int64_t o = 0; o < n; ++o)
                for (size_t i = 0; i < parts.size(); ++i)
                    d[size_t(k * N + o * int64_t(parts.size()) + int64_t(i))] = ds[i][size_t(k * n + o)];
        } else {
            int64_t col = 0;
            for (size_t i = 0; i < parts.size(); ++i) {
                const int64_t n = parts[i]->n_out;
                std::copy_n(ds[i].begin() + k * n, n, d.begin() + k * N + col);
                col += n;
            }
        }
    }
    DevGemm g;
    g.w = pk.add(d);
    g.ntap = 1;
    g.cin = int(K);
    g.N = int(N);
    return finish_gemm(g);
}

DevSnake add_snake(Packer& pk, const voc::Snake& s) { return {pk.add(s.alpha), pk.add(s.inv_beta)}; }

}  // namespace

struct CudaVocoderWeights {
    VocoderConfig c;
    DeviceBuffer<float> buf;
    int sm_count = 132;
    size_t codebooks = kNone, final_norm = kNone, inv_freq = kNone;
    DevGemm dequant, pre_conv, input_proj, output_proj, decoder_in, final_conv;
    std::vector<DevLayer> layers;
    std::vector<DevUpsample> upsample;
    std::vector<DevBlock> blocks;
    DevSnake final_act;

    const float* p(size_t off) const { return off == kNone ? nullptr : buf.get() + off; }
};

namespace {

// Calls fn(gemm, rows) for every GEMM of a chunk of n frames, in launch order.
template <class Fn>
void for_each_gemm(const CudaVocoderWeights& w, int64_t n, Fn&& fn) {
    fn(w.dequant, n), fn(w.pre_conv, n), fn(w.input_proj, n);
    for (const DevLayer& L : w.layers) fn(L.qkv, n), fn(L.o, n), fn(L.gate_up, n), fn(L.down, n);
    fn(w.output_proj, n);
    int64_t rows = n;
    for (const DevUpsample& u : w.upsample) {
        fn(u.up, rows);
        rows *= u.stride;
        fn(u.pw1, rows), fn(u.pw2, rows);
    }
    fn(w.decoder_in, rows);
    for (const DevBlock& B : w.blocks) {
        fn(B.up, rows);
        rows *= B.stride;
        for (const DevUnit& U : B.units) fn(U.conv1, rows), fn(U.conv2, rows);
    }
    fn(w.final_conv, rows);
}

std::unique_ptr<CudaVocoderWeights> upload_weights(const VocoderWeights& w) {
    const VocoderConfig& c = w.config;
    if (c.n_kv_head <= 0 || c.n_head % c.n_kv_head || c.head_dim % 2 || c.head_dim > 256 || c.sliding_window > 256 ||
        w.blocks.empty())
        throw GpuError(fmt::format("the CUDA vocoder does not support this decoder shape (heads {}/{}, head_dim {}, "
                                   "sliding window {})",
                                   c.n_head, c.n_kv_head, c.head_dim, c.sliding_window),
                       "use --device cpu");
    auto d = std::make_unique<CudaVocoderWeights>();
    d->c = c;
    Packer pk;
    d->codebooks = pk.add(w.codebooks);
    {  // semantic rows then acoustic rows: one GEMM over [semantic | acoustic sum]
        std::vector<float> a = dense(w.semantic_proj), b = dense(w.acoustic_proj);
        a.insert(a.end(), b.begin(), b.end());
        DevGemm g;
        g.w = pk.add(a);
        g.cin = int(2 * c.vq_dim());
        g.N = int(c.codebook_dim);
        d->dequant = finish_gemm(g);
    }
    d->pre_conv = add_gemm(pk, w.pre_conv.w);
    d->input_proj = add_gemm(pk, w.input_proj);
    for (const voc::TransformerLayer& l : w.layers) {
        DevLayer L;
        L.attn_norm = pk.add(l.attn_norm);
        L.attn_scale = pk.add(l.attn_scale);
        L.mlp_norm = pk.add(l.mlp_norm);
        L.mlp_scale = pk.add(l.mlp_scale);
        L.qkv = add_concat(pk, {&l.q, &l.k, &l.v}, false);
        L.o = add_gemm(pk, l.o);
        L.gate_up = add_concat(pk, {&l.gate, &l.up}, true);
        L.down = add_gemm(pk, l.down);
        d->layers.push_back(L);
    }
    d->final_norm = pk.add(w.final_norm);
    d->output_proj = add_gemm(pk, w.output_proj);
    d->inv_freq = pk.add(w.inv_freq);
    for (const voc::UpsampleStage& s : w.upsample) {
        DevUpsample u;
        u.up = add_transposed(pk, s.up);
        u.stride = int(s.up.stride);
        u.dw_w = pk.add(s.block.dw_weight);
        u.dw_b = pk.add(s.block.dw_bias);
        u.ln_w = pk.add(s.block.norm_w);
        u.ln_b = pk.add(s.block.norm_b);
        u.gamma = pk.add(s.block.gamma);
        u.pw1 = add_gemm(pk, s.block.pw1);
        u.pw2 = add_gemm(pk, s.block.pw2);
        d->upsample.push_back(u);
    }
    d->decoder_in = add_gemm(pk, w.decoder_in.w);
    for (const voc::DecoderBlock& b : w.blocks) {
        DevBlock B;
        B.act = add_snake(pk, b.act);
        B.up = add_transposed(pk, b.up);
        B.stride = int(b.up.stride);
        for (size_t u = 0; u < b.units.size(); ++u) {
            DevUnit& U = B.units[u];
            U.act1 = add_snake(pk, b.units[u].act1);
            U.act2 = add_snake(pk, b.units[u].act2);
            U.conv1 = add_gemm(pk, b.units[u].conv1.w);
            U.conv2 = add_gemm(pk, b.units[u].conv2.w);
            U.dilation = int(b.units[u].conv1.dilation);
        }
        d->blocks.push_back(B);
    }
    d->final_act = add_snake(pk, w.final_act);
    d->final_conv = add_gemm(pk, w.final_conv.w);

    d->buf = DeviceBuffer<float>(pk.data().size());
    QTTS_CUDA_CHECK(cudaMemcpy(d->buf.get(), pk.data().data(), pk.data().size() * sizeof(float),
                               cudaMemcpyHostToDevice));
    // A pageable-memory cudaMemcpy may return before its DMA lands, and the streams' work does not wait for
    // the legacy stream (they are non-blocking): finish the upload here.
    QTTS_CUDA_CHECK(cudaDeviceSynchronize());
    int dev = 0;
    QTTS_CUDA_CHECK(cudaGetDevice(&dev));
    QTTS_CUDA_CHECK(cudaDeviceGetAttribute(&d->sm_count, cudaDevAttrMultiProcessorCount, dev));
    return d;
}

// A causal op's input: [hist rows of history][new rows], in two copies (see the file comment).
struct Staged {
    float* buf[2] = {nullptr, nullptr};
    int64_t hist = 0, width = 0, rows = 0;  // rows: new rows of the current chunk (for the carry)
    float* head(int p) const { return buf[p]; }
    float* in(int p) const { return buf[p] + hist * width; }
};

// Bump allocation of many float buffers out of one device allocation.
class Arena {
public:
    void want(float*& p, int64_t n) { reqs_.push_back({&p, (size_t(n) + 63) / 64 * 64}); }
    void want(Staged& s, int64_t hist, int64_t width, int64_t max_rows) {
        s.hist = hist;
        s.width = width;
        want(s.buf[0], (hist + max_rows) * width);
        want(s.buf[1], (hist + max_rows) * width);
    }
    void commit(DeviceBuffer<float>& buf) {
        size_t total = 0;
        for (const auto& r : reqs_) total += r.second;
        buf = DeviceBuffer<float>(total);
        size_t off = 0;
        for (const auto& r : reqs_) {
            *r.first = buf.get() + off;
            off += r.second;
        }
        reqs_.clear();
    }

private:
    std::vector<std::pair<float**, size_t>> reqs_;
};

// Owner of an instantiated CUDA graph (move-only; the destructor ignores errors).
class GraphExec {
public:
    GraphExec() = default;
    explicit GraphExec(cudaGraphExec_t e) : e_(e) {}
    GraphExec(const GraphExec&) = delete;
    GraphExec& operator=(const GraphExec&) = delete;
    GraphExec(GraphExec&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
    GraphExec& operator=(GraphExec&& o) noexcept {
        if (this != &o) {
            if (e_) cudaGraphExecDestroy(e_);
            e_ = std::exchange(o.e_, nullptr);
        }
        return *this;
    }
    ~GraphExec() {
        if (e_) cudaGraphExecDestroy(e_);
    }
    cudaGraphExec_t get() const { return e_; }

private:
    cudaGraphExec_t e_ = nullptr;
};

// Records what `enqueue` puts on `stream` (nothing runs) and instantiates it. Thread-local capture mode: other
// threads' CUDA calls are unaffected. On failure the capture is ended and the exception passes on.
template <class Fn>
GraphExec capture_graph(cudaStream_t stream, Fn&& enqueue) {
    QTTS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        enqueue();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();  // clear the aborted capture's error so that later calls report their own
        throw;
    }
    QTTS_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    QTTS_CUDA_CHECK(err);
    return GraphExec(exec);
}

bool graphs_disabled_by_env() {
    const char* v = std::getenv("QTTS_NO_GRAPHS");
    return v && *v && std::strcmp(v, "0") != 0;
}

struct BlockBufs {
    Staged up_in;        // [1 + rows_in, in] SnakeBeta(block input)
    float* x = nullptr;  // [rows_out, out] residual stream
    Staged units[3];     // [6 d + rows_out, out] SnakeBeta(x) before each unit's conv1
    float* tmp = nullptr;  // [rows_out, out] conv1 output after act2
};

}  // namespace

struct CudaVocoderState {
    int64_t max_chunk = 0;
    int parity = 0;
    int64_t frames_done = 0;
    double last_ms = 0;
    Stream stream;
    Event start, stop;
    DeviceBuffer<float> scratch, staged, workspace;
    DeviceBuffer<unsigned> counters;
    // The chunk's inputs [pos0 (int64) | codes (n * num_quantizers int32)]: written on the host into the pinned
    // slot, copied to the device by the chunk's first operation (so a graph reads the current values).
    DeviceBuffer<int64_t> in_d;
    PinnedBuffer<int64_t> in_h;
    PinnedBuffer<float> pcm_h;
    // Graph cache: chunk length -> one graph per parity. At most max_graph_chunks entries, never evicted.
    int64_t max_graph_chunks = 0;
    struct ChunkGraphs {
        int64_t n = 0;
        GraphExec exec[2];
    };
    std::vector<ChunkGraphs> graphs;

    const int64_t* pos_d() const { return in_d.get(); }
    const int32_t* codes_d() const { return reinterpret_cast<const int32_t*>(in_d.get() + 1); }
    int32_t* codes_h() const { return reinterpret_cast<int32_t*>(in_h.get() + 1); }
    const ChunkGraphs* find_graphs(int64_t n) const {
        for (const ChunkGraphs& g : graphs)
            if (g.n == n) return &g;
        return nullptr;
    }

    float *deq = nullptr, *pre_out = nullptr, *h = nullptr, *xn = nullptr, *qkv = nullptr, *attn = nullptr,
          *glu = nullptr, *proj_out = nullptr, *ln = nullptr, *pw1 = nullptr, *pcm_d = nullptr;
    Staged pre_conv, dec_in, final_in;
    std::vector<Staged> keys, values, dw;
    std::vector<float*> up_x;  // [stage] input of upsample stage s > 0
    std::vector<BlockBufs> blocks;

    std::vector<Staged*> all_staged() {
        std::vector<Staged*> v{&pre_conv, &dec_in, &final_in};
        for (auto& s : keys) v.push_back(&s);
        for (auto& s : values) v.push_back(&s);
        for (auto& s : dw) v.push_back(&s);
        for (auto& b : blocks) {
            v.push_back(&b.up_in);
            for (auto& u : b.units) v.push_back(&u);
        }
        return v;
    }
};

CudaVocoder::CudaVocoder(const Vocoder& vocoder) {
    if (device_count() <= 0)
        throw GpuError("no CUDA GPU found", "use --device cpu, or --device auto to fall back to the CPU");
    w_ = upload_weights(vocoder.weights());
}
CudaVocoder::~CudaVocoder() = default;
const VocoderConfig& CudaVocoder::config() const { return w_->c; }
size_t CudaVocoder::weight_bytes() const { return w_->buf.bytes(); }

CudaVocoder::Cost CudaVocoder::cost_per_frame() const {
    Cost cost;
    cost.weight_bytes = double(weight_bytes());
    for_each_gemm(*w_, 1, [&](const DevGemm& g, int64_t M) {
        cost.flops += 2.0 * double(M) * g.K() * g.N * g.phases;
        cost.activation_bytes += 4.0 * double(M) * (g.cin + 2.0 * g.N * g.phases);
    });
    return cost;
}

CudaVocoderStream::CudaVocoderStream(std::shared_ptr<const CudaVocoder> vocoder, int64_t max_chunk_frames,
                                     int64_t max_graph_chunks)
    : vocoder_(std::move(vocoder)), st_(std::make_unique<CudaVocoderState>()) {
    const CudaVocoderWeights& w = *vocoder_->w_;
    const VocoderConfig& c = w.c;
    CudaVocoderState& s = *st_;
    const int64_t n = s.max_chunk = std::max<int64_t>(1, max_chunk_frames);
    s.max_graph_chunks = graphs_disabled_by_env() ? 0 : std::max<int64_t>(0, max_graph_chunks);
    const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_kv_head * c.head_dim;

    Arena scratch, staged;
    scratch.want(s.deq, n * 2 * c.vq_dim());
    staged.want(s.pre_conv, w.pre_conv.ntap - 1, c.codebook_dim, n);
    scratch.want(s.pre_out, n * c.latent_dim);
    scratch.want(s.h, n * c.hidden_size);
    scratch.want(s.xn, n * c.hidden_size);
    scratch.want(s.qkv, n * (q_dim + 2 * kv_dim));
    scratch.want(s.attn, n * q_dim);
    scratch.want(s.glu, n * c.n_ff);
    s.keys.resize(w.layers.size());
    s.values.resize(w.layers.size());
    for (size_t l = 0; l < w.layers.size(); ++l) {
        staged.want(s.keys[l], c.sliding_window - 1, kv_dim, n);
        staged.want(s.values[l], c.sliding_window - 1, kv_dim, n);
    }
    scratch.want(s.proj_out, n * c.latent_dim);
    int64_t rows = n, most = n;
    s.dw.resize(w.upsample.size());
    s.up_x.assign(w.upsample.size(), nullptr);
    for (size_t i = 0; i < w.upsample.size(); ++i) {
        if (i > 0) scratch.want(s.up_x[i], rows * c.latent_dim);
        rows *= w.upsample[i].stride;
        most = std::max(most, rows);
        staged.want(s.dw[i], voc::kConvNeXtKernel - 1, c.latent_dim, rows);
    }
    scratch.want(s.ln, most * c.latent_dim);
    scratch.want(s.pw1, most * kConvNeXtRatio * c.latent_dim);
    staged.want(s.dec_in, w.decoder_in.ntap - 1, c.latent_dim, rows);
    s.blocks.resize(w.blocks.size());
    for (size_t b = 0; b < w.blocks.size(); ++b) {
        const DevBlock& B = w.blocks[b];
        BlockBufs& bb = s.blocks[b];
        const int64_t in = B.up.cin, out = B.up.N;
        staged.want(bb.up_in, B.up.ntap - 1, in, rows);
        rows *= B.stride;
        scratch.want(bb.x, rows * out);
        scratch.want(bb.tmp, rows * out);
        for (int u = 0; u < 3; ++u)
            staged.want(bb.units[u], int64_t(B.units[u].conv1.ntap - 1) * B.units[u].dilation, out, rows);
    }
    staged.want(s.final_in, w.final_conv.ntap - 1, w.final_conv.cin, rows);
    scratch.want(s.pcm_d, rows);
    QTTS_CHECK(rows == n * c.samples_per_frame, "CUDA vocoder: {} samples for {} frames", rows, n);

    // Split-K workspace and tile counters for the largest chunk.
    int64_t ws = 0, tiles = 0;
    const auto need = [&](const DevGemm& g, int64_t M) {
        if (g.splits <= 1) return;
        ws = std::max(ws, int64_t(g.phases) * g.splits * M * g.N);
        tiles = std::max(tiles, conv_gemm_tiles(int(M), g.N, g.phases, 32));
    };
    for_each_gemm(w, n, need);

    scratch.commit(s.scratch);
    staged.commit(s.staged);
    s.workspace = DeviceBuffer<float>(size_t(std::max<int64_t>(ws, 1)));
    s.counters = DeviceBuffer<unsigned>(size_t(std::max<int64_t>(tiles, 1)));
    QTTS_CUDA_CHECK(cudaMemsetAsync(s.counters.get(), 0, s.counters.bytes(), s.stream.get()));  // reset() syncs
    const size_t in_slots = 1 + size_t(n * c.num_quantizers + 1) / 2;
    s.in_d = DeviceBuffer<int64_t>(in_slots);
    s.in_h = PinnedBuffer<int64_t>(in_slots);
    s.pcm_h = PinnedBuffer<float>(size_t(n * c.samples_per_frame));
    reset();
}

CudaVocoderStream::~CudaVocoderStream() = default;

void CudaVocoderStream::reset() {
    CudaVocoderState& s = *st_;
    QTTS_CUDA_CHECK(cudaMemsetAsync(s.staged.get(), 0, s.staged.bytes(), s.stream.get()));
    QTTS_CUDA_CHECK(cudaStreamSynchronize(s.stream.get()));
    s.parity = 0;
    s.frames_done = 0;
}

int64_t CudaVocoderStream::frames_done() const { return st_->frames_done; }
double CudaVocoderStream::last_device_ms() const { return st_->last_ms; }
int64_t CudaVocoderStream::graph_chunks() const { return int64_t(st_->graphs.size()); }
bool CudaVocoderStream::graphs_enabled() const { return st_->max_graph_chunks > 0; }

void CudaVocoderStream::prepare_graphs(int64_t n) {
    CudaVocoderState& s = *st_;
    if (n < 1 || n > s.max_chunk || s.find_graphs(n) || int64_t(s.graphs.size()) >= s.max_graph_chunks) return;
    CudaVocoderState::ChunkGraphs g;
    g.n = n;
    for (int p = 0; p < 2; ++p) g.exec[p] = capture_graph(s.stream.get(), [&] { enqueue_chunk(n, p); });
    s.graphs.push_back(std::move(g));
}

void CudaVocoderStream::warmup(std::span<const int64_t> push_frames) {
    CudaVocoderState& s = *st_;
    for (int64_t n : push_frames) {
        prepare_graphs(std::min(n, s.max_chunk));
        if (n > s.max_chunk) prepare_graphs(n % s.max_chunk);
    }
}

void CudaVocoderStream::push(std::span<const int32_t> codes, std::vector<float>& out) {
    const VocoderConfig& c = vocoder_->config();
    CudaVocoderState& s = *st_;
    check_vocoder_codes(c, codes, s.frames_done);
    const int64_t n_frames = int64_t(codes.size()) / c.num_quantizers;
    if (n_frames == 0) return;
    // Capture first (host work only), so that the device time below is the replay alone.
    for (int64_t f = 0; f < n_frames; f += s.max_chunk) prepare_graphs(std::min(s.max_chunk, n_frames - f));
    QTTS_CUDA_CHECK(cudaEventRecord(s.start.get(), s.stream.get()));
    for (int64_t f = 0; f < n_frames; f += s.max_chunk)
        decode_chunk(codes.data() + f * c.num_quantizers, std::min(s.max_chunk, n_frames - f), out);
    QTTS_CUDA_CHECK(cudaEventRecord(s.stop.get(), s.stream.get()));
    QTTS_CUDA_CHECK(cudaEventSynchronize(s.stop.get()));
    float ms = 0;
    QTTS_CUDA_CHECK(cudaEventElapsedTime(&ms, s.start.get(), s.stop.get()));
    s.last_ms = ms;
}

void CudaVocoderStream::decode_chunk(const int32_t* codes, int64_t n, std::vector<float>& out) {
    const VocoderConfig& c = vocoder_->config();
    CudaVocoderState& s = *st_;
    cudaStream_t st = s.stream.get();
    s.in_h.get()[0] = s.frames_done;
    std::memcpy(s.codes_h(), codes, size_t(n) * size_t(c.num_quantizers) * sizeof(int32_t));
    if (const CudaVocoderState::ChunkGraphs* g = s.find_graphs(n))
        QTTS_CUDA_CHECK(cudaGraphLaunch(g->exec[s.parity].get(), st));
    else
        enqueue_chunk(n, s.parity);
    QTTS_CUDA_CHECK(cudaStreamSynchronize(st));
    const size_t samples = size_t(n * c.samples_per_frame);
    out.insert(out.end(), s.pcm_h.get(), s.pcm_h.get() + samples);
    s.parity ^= 1;
    s.frames_done += n;
}

void CudaVocoderStream::enqueue_chunk(int64_t n64, int p) {
    const CudaVocoderWeights& w = *vocoder_->w_;
    const VocoderConfig& c = w.c;
    CudaVocoderState& s = *st_;
    cudaStream_t st = s.stream.get();
    const int n = int(n64);
    const int hidden = int(c.hidden_size), latent = int(c.latent_dim);
    const float eps = float(c.rms_eps);

    // One conv GEMM launch. x: [M + (ntap - 1) * step rows, cin] with leading dimension cin.
    const auto gemm = [&](const DevGemm& g, const float* x, int step, int M, ConvGemmArgs a) {
        a.x = x;
        a.ldx = g.cin;
        a.step = step;
        a.cin = g.cin;
        a.ntap = g.ntap;
        a.w = w.p(g.w);
        a.w_poff = int64_t(g.K()) * g.N;
        a.bias = w.p(g.bias);
        a.M = M;
        a.N = g.N;
        a.K = g.K();
        a.phases = g.phases;
        a.splits = g.splits;
        a.kchunk = g.kchunk;
        if (a.y && a.ldy == 0) a.ldy = a.act == VocAct::glu ? g.N / 2 : g.N;
        if (a.y2 && a.ldy2 == 0) a.ldy2 = g.N;
        if (a.res && a.ldres == 0) a.ldres = g.N;
        a.workspace = s.workspace.get();
        a.counters = s.counters.get();
        a.vec_a = g.cin % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
        a.vec_b = g.N % 4 == 0;
        const int64_t tiles64 = conv_gemm_tiles(M, g.N, g.phases, 64) * g.splits;
        launch_conv_gemm(a, tiles64 >= w.sm_count ? 64 : 32, st);
    };
    const auto snake_args = [](ConvGemmArgs& a, const DevSnake& sn, const CudaVocoderWeights& ww) {
        a.y2_a = ww.p(sn.a);
        a.y2_b = ww.p(sn.b);
    };

    QTTS_CUDA_CHECK(cudaMemcpyAsync(s.in_d.get(), s.in_h.get(),
                                    sizeof(int64_t) + size_t(n) * size_t(c.num_quantizers) * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, st));

    // Dequantize, pre-conv, input projection.
    launch_voc_gather(s.codes_d(), w.p(w.codebooks), n, int(c.num_quantizers), int(c.codebook_size),
                      int(c.vq_dim()), s.deq, st);
    gemm(w.dequant, s.deq, 1, n, {.y = s.pre_conv.in(p)});
    s.pre_conv.rows = n;
    gemm(w.pre_conv, s.pre_conv.head(p), 1, n, {.y = s.pre_out});
    gemm(w.input_proj, s.pre_out, 1, n, {.y = s.h});

    // Transformer.
    for (size_t l = 0; l < w.layers.size(); ++l) {
        const DevLayer& L = w.layers[l];
        Staged &K = s.keys[l], &V = s.values[l];
        launch_voc_rms_norm(s.h, w.p(L.attn_norm), s.xn, n, hidden, eps, st);
        gemm(L.qkv, s.xn, 1, n, {.y = s.qkv});
        launch_voc_rope_kv(s.qkv, n, int(c.n_head), int(c.n_kv_head), int(c.head_dim), w.p(w.inv_freq), s.pos_d(),
                           K.head(p), V.head(p), int(K.hist), st);
        launch_voc_attention(s.qkv, K.head(p), V.head(p), n, int(c.n_head), int(c.n_kv_head), int(c.head_dim),
                             int(K.hist), int(c.sliding_window), s.pos_d(), s.attn, st);
        K.rows = V.rows = n;
        gemm(L.o, s.attn, 1, n, {.y = s.h, .res = s.h, .gamma = w.p(L.attn_scale)});
        launch_voc_rms_norm(s.h, w.p(L.mlp_norm), s.xn, n, hidden, eps, st);
        gemm(L.gate_up, s.xn, 1, n, {.y = s.glu, .act = VocAct::glu});
        gemm(L.down, s.glu, 1, n, {.y = s.h, .res = s.h, .gamma = w.p(L.mlp_scale)});
    }
    launch_voc_rms_norm(s.h, w.p(w.final_norm), s.xn, n, hidden, eps, st);
    gemm(w.output_proj, s.xn, 1, n, {.y = s.proj_out});

    // Upsampling: transposed conv (kernel = stride) into the ConvNeXt's dwconv input, ConvNeXt.
    int rows = n;
    for (size_t i = 0; i < w.upsample.size(); ++i) {
        const DevUpsample& U = w.upsample[i];
        const float* in = i == 0 ? s.proj_out : s.up_x[i];
        Staged& dw = s.dw[i];
        gemm(U.up, in, 1, rows, {.y = dw.in(p), .ldy = int64_t(U.stride) * latent, .y_poff = latent});
        rows *= U.stride;
        dw.rows = rows;
        launch_voc_dwconv_layernorm(dw.head(p), w.p(U.dw_w), w.p(U.dw_b), int(voc::kConvNeXtKernel), w.p(U.ln_w),
                                    w.p(U.ln_b), voc::kConvNeXtEps, s.ln, rows, latent, st);
        gemm(U.pw1, s.ln, 1, rows, {.y = s.pw1, .act = VocAct::gelu});
        float* next = i + 1 < w.upsample.size() ? s.up_x[i + 1] : s.dec_in.in(p);
        gemm(U.pw2, s.pw1, 1, rows, {.y = next, .res = dw.in(p), .gamma = w.p(U.gamma)});
    }
    s.dec_in.rows = rows;

    // Decoder: conv (+ block 0's SnakeBeta), 4 blocks, SnakeBeta, conv, clamp.
    {
        ConvGemmArgs a{.y = s.blocks[0].up_in.in(p), .act = VocAct::snake};
        a.act_a = w.p(w.blocks[0].act.a);
        a.act_b = w.p(w.blocks[0].act.b);
        gemm(w.decoder_in, s.dec_in.head(p), 1, rows, a);
    }
    for (size_t b = 0; b < w.blocks.size(); ++b) {
        const DevBlock& B = w.blocks[b];
        BlockBufs& bb = s.blocks[b];
        const int out_ch = B.up.N;
        bb.up_in.rows = rows;
        {
            ConvGemmArgs a{.y = bb.x, .ldy = int64_t(B.stride) * out_ch, .y_poff = out_ch, .y2 = bb.units[0].in(p),
                           .ldy2 = int64_t(B.stride) * out_ch, .y2_poff = out_ch};
            snake_args(a, B.units[0].act1, w);
            gemm(B.up, bb.up_in.head(p), 1, rows, a);
        }
        rows *= B.stride;
        for (int u = 0; u < 3; ++u) {
            const DevUnit& U = B.units[u];
            bb.units[u].rows = rows;
            {
                ConvGemmArgs a{.y = bb.tmp, .act = VocAct::snake};
                a.act_a = w.p(U.act2.a);
                a.act_b = w.p(U.act2.b);
                gemm(U.conv1, bb.units[u].head(p), U.dilation, rows, a);
            }
            ConvGemmArgs a{.y = u < 2 ? bb.x : nullptr, .res = bb.x};
            if (u < 2) {
                a.y2 = bb.units[u + 1].in(p);
                snake_args(a, B.units[u + 1].act1, w);
            } else if (b + 1 < w.blocks.size()) {
                a.y2 = s.blocks[b + 1].up_in.in(p);
                snake_args(a, w.blocks[b + 1].act, w);
            } else {
                a.y2 = s.final_in.in(p);
                snake_args(a, w.final_act, w);
            }
            gemm(U.conv2, bb.tmp, 1, rows, a);
        }
    }
    s.final_in.rows = rows;
    gemm(w.final_conv, s.final_in.head(p), 1, rows, {.y = s.pcm_d, .act = VocAct::clamp});

    // Carry every history into the other copy, then fetch the PCM.
    VocCopies copies;
    for (Staged* sg : s.all_staged()) {
        if (sg->hist == 0) continue;
        QTTS_CHECK(copies.n < kVocMaxCopies, "CUDA vocoder: too many carried histories");
        copies.src[copies.n] = sg->buf[p] + sg->rows * sg->width;
        copies.dst[copies.n] = sg->buf[p ^ 1];
        copies.count[copies.n] = sg->hist * sg->width;
        ++copies.n;
    }
    launch_voc_copies(copies, st);
    QTTS_CUDA_CHECK(cudaMemcpyAsync(s.pcm_h.get(), s.pcm_d, size_t(rows) * sizeof(float), cudaMemcpyDeviceToHost, st));
}

std::unique_ptr<VocoderBackend> make_vocoder_stream(const Vocoder& vocoder) {
    return std::make_unique<CudaVocoderStream>(std::make_shared<const CudaVocoder>(vocoder));
}

}  // namespace qtts::cuda
