// Weights of the talker and the code predictor bound from model.safetensors into typed structs (once, at
// load; every tensor checked by name, shape and dtype), and their CPU reference backends.
#pragma once

#include <atomic>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/backend.h"
#include "core/decoder_stack.h"
#include "core/host_worker.h"
#include "core/model_config.h"
#include "core/safetensors.h"

namespace qtts {

struct TalkerWeights {
    const TensorInfo* text_embedding = nullptr;  // [text_vocab, text_hidden], rows read from the mapping on use
    Tensor text_fc1_w, text_fc1_b;               // [text_hidden, text_hidden], [text_hidden]
    Tensor text_fc2_w, text_fc2_b;               // [n_embd, text_hidden], [n_embd]
    Tensor codec_embedding;                      // [vocab, n_embd]
    DecoderStackWeights stack;                   // talker.model.*
    Tensor codec_head;                           // [vocab, n_embd]
};

struct PredictorWeights {
    DecoderStackWeights stack;            // talker.code_predictor.model.*
    std::vector<Tensor> codec_embedding;  // G-1 × [codebook, talker n_embd]: embeds codebooks 1 .. G-1
    std::vector<Tensor> lm_head;          // G-1 × [codebook, n_embd]: lm_head[k-1] predicts codebook k
    std::optional<Tensor> mtp_w;          // [n_embd, talker n_embd] (1.7B only)
    std::optional<Tensor> mtp_b;          // [n_embd]
};

struct ModelWeights {
    TalkerWeights talker;
    PredictorWeights predictor;

    static ModelWeights load(const TensorStore& store, const ModelConfig& config);
    // P(id): text_projection(text_embedding[id]) for every id, into `out` [ids.size()][talker n_embd]. One
    // batched pass reads the projection weights once (per-id calls re-read 24 MB each at 0.6B); every row is
    // computed exactly as alone.
    void text_vectors(const TensorStore& store, std::span<const int64_t> ids, float* out) const;
    // Row `code` of the table that embeds codebook `k` (k = 0: talker codec_embedding; k >= 1: predictor).
    const float* codebook_row(int64_t k, int64_t code) const;
};

// Text vectors of ids that every prompt holds (the chat template's role tokens, tts_bos / tts_pad / tts_eos),
// projected once when a session starts: a request then projects only its own text.
class TextRowCache {
public:
    TextRowCache() = default;
    TextRowCache(const ModelWeights& weights, const TensorStore& store, std::vector<int64_t> ids);
    const float* find(int64_t id) const;  // nullptr when `id` is not cached

private:
    std::vector<int64_t> ids_;  // sorted, unique
    std::vector<float> vecs_;
    int64_t width_ = 0;
};

// The text vectors of one request (text_vectors of `ids`). Rows [0, first) (the prefill positions and decode step
// 0's row) are ready when the constructor returns; the rest (`Rest`) there too, on the request's thread when a
// row of it is first asked for (after the first audio when it streams frame by frame), or on a HostWorker while
// the GPU runs the prefill and the first frames. At 0.6B the projection costs ~1.3 ms of one x86 core per row
// (two 2048-wide layers, fp32) and a prompt has ~80 rows, so it was the largest host cost before the first audio
// of the GPU engine. On the worker the rest goes in batches of growing size (8, 16, 32, ... rows), so decode step
// 1 waits for 8 rows, not all of them. Rows of ids in `cache` are copied. Every row is computed exactly as alone,
// so the rows are bit-identical however they are batched.
class TextTrack {
public:
    enum class Rest { now, on_first_use, background };
    // `worker` is used by Rest::background only (without one, background means on_first_use).
    TextTrack(const ModelWeights& weights, const TensorStore& store, std::vector<int64_t> ids, int64_t first,
              Rest rest, const TextRowCache* cache = nullptr, HostWorker* worker = nullptr);
    TextTrack(const TextTrack&) = delete;
    TextTrack& operator=(const TextTrack&) = delete;
    ~TextTrack();  // drops the batches the worker has not started and waits for the one it runs

    int64_t rows() const { return int64_t(ids_.size()); }
    // Row i (n_embd values). The first time a row of a later batch is asked for, projects it (on_first_use) or
    // waits for it, and rethrows the batch's error.
    const float* row(int64_t i);
    double wait_s() const { return wait_s_; }  // seconds of the request's thread in the constructor and row()

private:
    struct Batch {
        int64_t end;               // rows [previous batch's end, end)
        std::future<void> done;    // valid until its rows were first asked for
    };
    void project(int64_t begin, int64_t end);  // rows [begin, end)
    const ModelWeights* weights_;
    const TensorStore* store_;
    const TextRowCache* cache_;
    std::vector<int64_t> ids_;
    int64_t first_ = 0, width_ = 0;
    std::vector<float> vecs_;
    std::vector<Batch> batches_;            // the rows [first_, n): one deferred batch, or the worker's batches
    std::atomic<bool> abandoned_ = false;   // set by the destructor: the worker skips the batches not started
    double wait_s_ = 0;
};

std::unique_ptr<TalkerBackend> make_cpu_talker(const ModelWeights& weights);
std::unique_ptr<PredictorBackend> make_cpu_predictor(const ModelWeights& weights);

}  // namespace qtts
