// Token sampling in HF `generate` order: repetition penalty → (caller's bans/suppression) → temperature →
// top-k (ties kept) → top-p → softmax → one draw. Greedy = arg-max with the lowest index winning ties
// (torch.argmax). Randomness comes from a counter-based generator so that a (seed, frame, codebook)
// triple always gives the same number, on the CPU and on the GPU alike.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace qtts {

struct SamplerSettings {
    bool do_sample = true;
    float temperature = 0.9f;
    int64_t top_k = 50;        // 0 = off
    float top_p = 1.0f;        // 1 = off
    float repetition_penalty = 1.0f;  // 1 = off
};

// splitmix64-based counter RNG: uniform(stream, counter) is a pure function of (seed, stream, counter).
class CounterRng {
public:
    explicit CounterRng(uint64_t seed = 0) : seed_(seed) {}
    // Uniform double in [0, 1) with 53 random bits.
    double uniform(uint64_t stream, uint64_t counter) const;
    uint64_t seed() const { return seed_; }

private:
    uint64_t seed_;
};

// HF RepetitionPenaltyLogitsProcessor over the distinct ids in `history`: l/p if l > 0 else l·p.
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty);

// Applies temperature, top-k and top-p (when do_sample) and picks a token; `u` in [0, 1) is the draw.
// `logits` is scratch and is modified. -inf entries are never chosen (unless all are -inf: returns 0).
int32_t sample_token(std::span<float> logits, const SamplerSettings& settings, double u);

int32_t argmax(std::span<const float> logits);

}  // namespace qtts
