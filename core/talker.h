// Weights of the talker and the code predictor bound from model.safetensors into typed structs (once, at
// load; every tensor checked by name, shape and dtype), and their CPU reference backends.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "core/backend.h"
#include "core/decoder_stack.h"
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

std::unique_ptr<TalkerBackend> make_cpu_talker(const ModelWeights& weights);
std::unique_ptr<PredictorBackend> make_cpu_predictor(const ModelWeights& weights);

}  // namespace qtts
