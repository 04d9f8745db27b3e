#include "core/talker.h"

#include <algorithm>
#include <chrono>

#include <omp.h>

#include "core/error.h"
#include "core/ops.h"

namespace qtts {

ModelWeights ModelWeights::load(const TensorStore& store, const ModelConfig& c) {
    ModelWeights w;
    const auto& tc = c.talker.stack;
    const int64_t th = c.talker.text_hidden_size;
    auto& t = w.talker;
    t.text_embedding = &store.info("talker.model.text_embedding.weight");
    if (t.text_embedding->shape != Shape{c.talker.text_vocab_size, th})
        throw ModelError(fmt::format("{}: tensor 'talker.model.text_embedding.weight' has wrong shape; expected {}, got {}",
                                     t.text_embedding->file, shape_str({c.talker.text_vocab_size, th}),
                                     shape_str(t.text_embedding->shape)),
                         "the checkpoint does not match config.json");
    Tensor probe({1, th});
    store.load_rows(*t.text_embedding, 0, 1, probe.ptr());  // rejects non-float dtypes now, not mid-request
    t.text_fc1_w = store.load("talker.text_projection.linear_fc1.weight", {th, th});
    t.text_fc1_b = store.load("talker.text_projection.linear_fc1.bias", {th});
    t.text_fc2_w = store.load("talker.text_projection.linear_fc2.weight", {tc.n_embd, th});
    t.text_fc2_b = store.load("talker.text_projection.linear_fc2.bias", {tc.n_embd});
    t.codec_embedding = store.load("talker.model.codec_embedding.weight", {tc.vocab_size, tc.n_embd});
    t.stack = DecoderStackWeights::load(store, "talker.model", tc);
    t.codec_head = store.load("talker.codec_head.weight", {tc.vocab_size, tc.n_embd});

    const auto& pc = c.predictor.stack;
    auto& p = w.predictor;
    p.stack = DecoderStackWeights::load(store, "talker.code_predictor.model", pc);
    for (int64_t k = 0; k + 1 < c.talker.num_code_groups; ++k) {
        p.codec_embedding.push_back(store.load(fmt::format("talker.code_predictor.model.codec_embedding.{}.weight", k),
                                               {pc.vocab_size, tc.n_embd}));
        p.lm_head.push_back(
            store.load(fmt::format("talker.code_predictor.lm_head.{}.weight", k), {pc.vocab_size, pc.n_embd}));
    }
    if (c.has_mtp_projection()) {
        p.mtp_w = store.load("talker.code_predictor.small_to_mtp_projection.weight", {pc.n_embd, tc.n_embd});
        p.mtp_b = store.load("talker.code_predictor.small_to_mtp_projection.bias", {pc.n_embd});
    }
    return w;
}

void ModelWeights::text_vectors(const TensorStore& store, std::span<const int64_t> ids, float* out) const {
    const auto& t = talker;
    const int64_t th = t.text_fc1_w.dim(0), n = int64_t(ids.size()), in = t.text_embedding->shape[1];
    std::vector<float> rows(static_cast<size_t>(n * in)), mid(static_cast<size_t>(n * th));
    for (int64_t i = 0; i < n; ++i) {
        const int64_t id = ids[size_t(i)];
        QTTS_CHECK(id >= 0 && id < t.text_embedding->shape[0], "text id {} out of range", id);
        store.load_rows(*t.text_embedding, id, id + 1, rows.data() + i * in);
    }
    ops::linear(t.text_fc1_w, &t.text_fc1_b, rows.data(), n, mid.data());
    for (float& v : mid) v = ops::silu(v);
    ops::linear(t.text_fc2_w, &t.text_fc2_b, mid.data(), n, out);
}

TextRowCache::TextRowCache(const ModelWeights& weights, const TensorStore& store, std::vector<int64_t> ids)
    : ids_(std::move(ids)), width_(weights.talker.text_fc2_w.dim(0)) {
    std::sort(ids_.begin(), ids_.end());
    ids_.erase(std::unique(ids_.begin(), ids_.end()), ids_.end());
    vecs_.resize(ids_.size() * size_t(width_));
    weights.text_vectors(store, ids_, vecs_.data());
}

const float* TextRowCache::find(int64_t id) const {
    const auto it = std::lower_bound(ids_.begin(), ids_.end(), id);
    return it != ids_.end() && *it == id ? vecs_.data() + size_t(it - ids_.begin()) * size_t(width_) : nullptr;
}

TextTrack::TextTrack(const ModelWeights& weights, const TensorStore& store, std::vector<int64_t> ids, int64_t first,
                     Rest rest, const TextRowCache* cache, HostWorker* worker)
    : weights_(&weights), store_(&store), cache_(cache), ids_(std::move(ids)),
      first_(std::clamp<int64_t>(first, 0, int64_t(ids_.size()))), width_(weights.talker.text_fc2_w.dim(0)),
      vecs_(ids_.size() * size_t(width_)) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n = rows();
    if (rest == Rest::now) first_ = n;
    if (rest == Rest::background && worker) {
        // Every row on the worker, so one OpenMP team does all of it (see HostWorker), with one core fewer than
        // the machine has: this thread launches the GPU work, and the team's idle workers spin for ~10 ms after
        // each batch (with every core in the team, its wake-up and the prefill's launches waited up to 8 ms).
        const int fewer = std::max(1, omp_get_max_threads() - 1);
        worker->submit([this] { project(0, first_); }, fewer).get();
        constexpr int64_t kFirstLaterBatchRows = 8;  // ~1 ms on 15 cores at 0.6B; step 1 comes ≥ 6 ms later
        try {
            for (int64_t begin = first_, size = kFirstLaterBatchRows; begin < n; begin += size, size *= 2) {
                const int64_t end = std::min(n, begin + size);
                auto job = [this, begin, end] {
                    if (!abandoned_) project(begin, end);
                };
                batches_.push_back({end, worker->submit(job, fewer)});
            }
        } catch (...) {  // no destructor runs for a half-made track: stop the batches already queued here
            abandoned_ = true;
            for (Batch& batch : batches_) batch.done.wait();
            throw;
        }
    } else {
        project(0, first_);
        if (first_ < n) batches_.push_back({n, std::async(std::launch::deferred, [this] { project(first_, rows()); })});
    }
    wait_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void TextTrack::project(int64_t begin, int64_t end) {
    std::vector<int64_t> todo, todo_ids;  // rows not in the cache, and their ids
    for (int64_t i = begin; i < end; ++i) {
        const float* cached = cache_ ? cache_->find(ids_[size_t(i)]) : nullptr;
        if (cached)
            std::copy_n(cached, width_, vecs_.data() + size_t(i * width_));
        else
            todo.push_back(i), todo_ids.push_back(ids_[size_t(i)]);
    }
    if (todo.empty()) return;
    std::vector<float> out(todo.size() * size_t(width_));
    weights_->text_vectors(*store_, todo_ids, out.data());
    for (size_t j = 0; j < todo.size(); ++j)
        std::copy_n(out.data() + j * size_t(width_), width_, vecs_.data() + size_t(todo[j] * width_));
}

TextTrack::~TextTrack() {
    // A deferred batch that was never asked for is dropped; the worker skips the batches it has not started, and
    // the one it runs must finish before the rows go.
    abandoned_ = true;
    for (Batch& batch : batches_)
        if (batch.done.valid() && batch.done.wait_for(std::chrono::seconds(0)) != std::future_status::deferred)
            batch.done.wait();
}

const float* TextTrack::row(int64_t i) {
    QTTS_CHECK(i >= 0 && i < rows(), "text track row {} of {}", i, rows());
    if (i >= first_) {
        Batch& batch = *std::find_if(batches_.begin(), batches_.end(), [i](const Batch& b) { return i < b.end; });
        if (batch.done.valid()) {
            const auto t0 = std::chrono::steady_clock::now();
            batch.done.get();  // runs a deferred batch; rethrows the batch's error; invalidates it either way
            wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        }
    }
    return vecs_.data() + size_t(i * width_);
}

const float* ModelWeights::codebook_row(int64_t k, int64_t code) const {
    const Tensor& table = k == 0 ? talker.codec_embedding : predictor.codec_embedding.at(size_t(k - 1));
    QTTS_CHECK(code >= 0 && code < table.dim(0), "code {} out of range for codebook {}", code, k);
    return table.row(code);
}

namespace {

class CpuTalker final : public TalkerBackend {
public:
    explicit CpuTalker(const ModelWeights& w)
        : w_(w), stack_(w.talker.stack), hidden_(size_t(w.talker.stack.config.n_embd)),
          logits_(size_t(w.talker.stack.config.vocab_size)) {}

    void prefill(std::span<const float> embeds, int64_t n) override {
        cache_.reset(w_.talker.stack.config.n_layer);
        run(embeds, n);
    }
    void step(std::span<const float> embed) override { run(embed, 1); }
    std::span<const float> hidden() const override { return hidden_; }
    std::span<const float> logits() const override { return logits_; }
    std::string name() const override { return "cpu"; }

private:
    void run(std::span<const float> x, int64_t n) {
        const int64_t E = w_.talker.stack.config.n_embd;
        QTTS_CHECK(int64_t(x.size()) == n * E, "talker input has {} values, expected {}", x.size(), n * E);
        std::vector<float> out(size_t(n * E));
        stack_.forward(x.data(), n, cache_, out.data());
        std::copy(out.end() - E, out.end(), hidden_.begin());
        ops::linear(w_.talker.codec_head, nullptr, hidden_.data(), 1, logits_.data());
    }

    const ModelWeights& w_;
    DecoderStack stack_;
    KvCache cache_;
    std::vector<float> hidden_, logits_;
};

class CpuPredictor final : public PredictorBackend {
public:
    explicit CpuPredictor(const ModelWeights& w) : w_(w), stack_(w.predictor.stack) {}

    void predict(std::span<const float> talker_hidden, std::span<int32_t> codes, const SamplerSettings& s,
                 const CounterRng& rng, uint64_t frame) override {
        run(talker_hidden, codes, [&](int64_t k, std::span<float> logits) {
            // HF semantics: the predictor's "history" is the codes it generated so far in this frame.
            apply_repetition_penalty(logits, codes.subspan(1, size_t(k - 1)), s.repetition_penalty);
            codes[size_t(k)] = sample_token(logits, s, rng.uniform(uint64_t(1 + k), frame));
        });
    }

    void forced_argmax(std::span<const float> talker_hidden, std::span<const int32_t> codes,
                       std::span<int32_t> out) override {
        std::vector<int32_t> fed(codes.begin(), codes.end());
        run(talker_hidden, fed, [&](int64_t k, std::span<float> logits) { out[size_t(k)] = argmax(logits); });
    }

    std::string name() const override { return "cpu"; }

private:
    // Runs the 2-position start and the single steps; `choose(k, logits)` must leave codes[k] set.
    template <typename Choose>
    void run(std::span<const float> talker_hidden, std::span<int32_t> codes, Choose&& choose) {
        const auto& p = w_.predictor;
        const int64_t E = p.stack.config.n_embd, G = int64_t(codes.size());
        QTTS_CHECK(G == int64_t(p.lm_head.size()) + 1, "predictor needs {} codes, got {}", p.lm_head.size() + 1, G);
        KvCache cache;
        cache.reset(p.stack.config.n_layer);
        // Position 0: the talker hidden; position 1: codebook 0 embedded with the talker table (spec §4.3).
        std::vector<float> in(static_cast<size_t>(2 * E)), out(static_cast<size_t>(2 * E)),
            logits(static_cast<size_t>(p.stack.config.vocab_size));
        project(talker_hidden.data(), in.data());
        project(w_.codebook_row(0, codes[0]), in.data() + E);
        stack_.forward(in.data(), 2, cache, out.data());
        const float* h = out.data() + E;
        for (int64_t k = 1; k < G; ++k) {
            if (k > 1) {
                project(w_.codebook_row(k - 1, codes[size_t(k - 1)]), in.data());
                stack_.forward(in.data(), 1, cache, out.data());
                h = out.data();
            }
            ops::linear(p.lm_head[size_t(k - 1)], nullptr, h, 1, logits.data());
            choose(k, std::span<float>(logits));
        }
    }

    // small_to_mtp_projection (identity when the widths agree, as in 0.6B).
    void project(const float* x, float* y) const {
        const auto& p = w_.predictor;
        if (p.mtp_w) {
            ops::linear(*p.mtp_w, &*p.mtp_b, x, 1, y);
        } else {
            std::copy(x, x + p.stack.config.n_embd, y);
        }
    }

    const ModelWeights& w_;
    DecoderStack stack_;
};

}  // namespace

void PredictorBackend::forced_argmax(std::span<const float>, std::span<const int32_t>, std::span<int32_t>) {
    throw Error(fmt::format("the {} code predictor does not support teacher forcing", name()));
}

std::unique_ptr<TalkerBackend> make_cpu_talker(const ModelWeights& w) { return std::make_unique<CpuTalker>(w); }
std::unique_ptr<PredictorBackend> make_cpu_predictor(const ModelWeights& w) {
    return std::make_unique<CpuPredictor>(w);
}

}  // namespace qtts
