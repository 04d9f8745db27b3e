// Bytes a decode step must move, for "% of the bandwidth floor" figures: every weight of the stack and its
// head once per step, plus the KV cache read by attention (fp32 in both engines). `weight_bytes` is the stored
// element size the backend streams (2 for bf16 on the GPU, 4 for the fp32 CPU reference).
#pragma once

#include <cstdint>

#include "core/model_config.h"

namespace qtts {

inline int64_t stack_params(const DecoderStackConfig& c) {
    const int64_t per_layer = c.q_dim() * c.n_embd + 2 * c.kv_dim() * c.n_embd + c.n_embd * c.q_dim() +
                              3 * c.n_ff * c.n_embd + 2 * c.n_embd + 2 * c.head_dim;
    return c.n_layer * per_layer + c.n_embd;
}

// One talker step at context length `context` (positions already in the cache, plus the new one).
inline int64_t talker_step_bytes(const ModelConfig& m, int64_t weight_bytes, int64_t context) {
    const auto& c = m.talker.stack;
    const int64_t kv = 2 * c.n_layer * context * c.kv_dim() * int64_t(sizeof(float));
    return (stack_params(c) + c.vocab_size * c.n_embd) * weight_bytes + kv;
}

// One frame of the code predictor: its stack, one head and (1.7B) the input projection per pass, G-1 passes
// (the 2-position start reads the weights once), plus the G-1 embedding rows.
inline int64_t predictor_frame_bytes(const ModelConfig& m, int64_t weight_bytes) {
    const auto& c = m.predictor.stack;
    const int64_t passes = m.talker.num_code_groups - 1, E = m.talker.stack.n_embd;
    const int64_t projection = m.has_mtp_projection() ? c.n_embd * E + c.n_embd : 0;
    return passes * (stack_params(c) + c.vocab_size * c.n_embd + projection + E) * weight_bytes;
}

}  // namespace qtts
