#include "core/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace qtts {

namespace {
uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace

double CounterRng::uniform(uint64_t stream, uint64_t counter) const {
    const uint64_t bits = splitmix64(splitmix64(splitmix64(seed_) ^ stream) ^ counter);
    return double(bits >> 11) * 0x1.0p-53;
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> history, float penalty) {
    if (penalty == 1.0f) return;
    std::vector<int32_t> ids(history.begin(), history.end());
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (int32_t id : ids) {
        if (id < 0 || size_t(id) >= logits.size()) continue;
        float& l = logits[size_t(id)];
        l = l < 0 ? l * penalty : l / penalty;
    }
}

int32_t argmax(std::span<const float> logits) {
    int32_t best = 0;
    for (size_t i = 1; i < logits.size(); ++i)
        if (logits[i] > logits[size_t(best)]) best = int32_t(i);
    return best;
}

int32_t sample_token(std::span<float> logits, const SamplerSettings& s, double u) {
    if (!s.do_sample) return argmax(logits);
    const size_t n = logits.size();
    for (float& l : logits) l /= s.temperature;
    if (s.top_k > 0 && size_t(s.top_k) < n) {
        std::vector<float> sorted(logits.begin(), logits.end());
        std::nth_element(sorted.begin(), sorted.begin() + (s.top_k - 1), sorted.end(), std::greater<float>());
        const float kth = sorted[size_t(s.top_k - 1)];
        for (float& l : logits)
            if (l < kth) l = kNegInf;  // HF keeps every logit equal to the k-th (ties kept)
    }
    if (s.top_p < 1.0f) {
        // HF TopPLogitsWarper: sort ascending, drop tokens whose cumulative probability <= 1 - top_p,
        // always keep the most likely one.
        std::vector<int32_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[size_t(a)] < logits[size_t(b)]; });
        std::vector<float> probs(logits.begin(), logits.end());
        const float mx = *std::max_element(probs.begin(), probs.end());
        double total = 0;
        for (float& p : probs) total += (p = std::isinf(p) ? 0.0f : std::exp(p - mx));
        double cum = 0;
        for (size_t r = 0; r + 1 < n; ++r) {
            cum += probs[size_t(order[r])] / total;
            if (cum <= 1.0 - double(s.top_p)) logits[size_t(order[r])] = kNegInf;
        }
    }
    const float mx = *std::max_element(logits.begin(), logits.end());
    if (std::isinf(mx) && mx < 0) return 0;
    std::vector<double> probs(n);
    double total = 0;
    // Masked logits (-inf) give exactly 0 without the exp call: after top-k 50 of 3072 that is 98 % of them
    // (the GPU sampler does the same).
    for (size_t i = 0; i < n; ++i)
        total += (probs[i] = logits[i] == kNegInf ? 0.0 : std::exp(double(logits[i] - mx)));
    // Inverse CDF over token ids in ascending order.
    const double target = u * total;
    double cum = 0;
    int32_t last_valid = 0;
    for (size_t i = 0; i < n; ++i) {
        if (probs[i] <= 0) continue;
        last_valid = int32_t(i);
        cum += probs[i];
        if (target < cum) return int32_t(i);
    }
    return last_valid;
}

}  // namespace qtts
