// Sampler: HF processor semantics on hand-made logits, and seeded reproducibility.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>

#include "core/sampler.h"

namespace qtts {

TEST_CASE("argmax picks the lowest index on ties, like torch.argmax") {
    std::vector<float> l{1, 3, 3, 2};
    CHECK(argmax(l) == 1);
}

TEST_CASE("repetition penalty divides positive and multiplies negative logits, once per distinct id") {
    std::vector<float> l{2.0f, -2.0f, 1.0f, 0.0f};
    const std::vector<int32_t> history{0, 1, 0, 0, 3};
    apply_repetition_penalty(l, history, 2.0f);
    CHECK(l[0] == 1.0f);   // 2 / 2, not divided three times
    CHECK(l[1] == -4.0f);  // -2 * 2
    CHECK(l[2] == 1.0f);   // not in history
    CHECK(l[3] == 0.0f);   // zero unchanged
}

TEST_CASE("greedy ignores temperature, top-k and top-p") {
    std::vector<float> l{0.1f, 0.5f, 0.4f};
    CHECK(sample_token(l, {.do_sample = false, .temperature = 5.0f, .top_k = 1, .top_p = 0.1f}, 0.99) == 1);
}

TEST_CASE("top-k keeps ties at the k-th value") {
    // k = 2 with values {5, 4, 4, 1}: both 4s survive, 1 never wins.
    std::map<int32_t, int> hits;
    for (int i = 0; i < 1000; ++i) {
        std::vector<float> l{5, 4, 4, 1};
        hits[sample_token(l, {.do_sample = true, .temperature = 1.0f, .top_k = 2}, (i + 0.5) / 1000.0)]++;
    }
    CHECK(hits[1] > 0);
    CHECK(hits[2] > 0);
    CHECK(hits.count(3) == 0);
}

TEST_CASE("top-p removes the tail whose cumulative probability is within 1 - top_p") {
    // probs ≈ {0.665, 0.245, 0.090}: top_p 0.7 keeps tokens 0 and 1 (the ascending cumsum of token 2 is 0.09 <= 0.3).
    const float l0 = std::log(0.665f), l1 = std::log(0.245f), l2 = std::log(0.090f);
    for (double u : {0.0, 0.5, 0.9999}) {
        std::vector<float> l{l0, l1, l2};
        CHECK(sample_token(l, {.do_sample = true, .temperature = 1.0f, .top_k = 0, .top_p = 0.7f}, u) != 2);
    }
    // top_p so small that only the most likely token survives.
    std::vector<float> l{l0, l1, l2};
    CHECK(sample_token(l, {.do_sample = true, .temperature = 1.0f, .top_k = 0, .top_p = 0.01f}, 0.9999) == 0);
}

TEST_CASE("sampling follows the softmax: inverse CDF over ascending ids") {
    std::vector<float> base{0.0f, 0.0f};  // 50/50
    std::vector<float> l = base;
    CHECK(sample_token(l, {.do_sample = true, .temperature = 1.0f, .top_k = 0}, 0.25) == 0);
    l = base;
    CHECK(sample_token(l, {.do_sample = true, .temperature = 1.0f, .top_k = 0}, 0.75) == 1);
}

TEST_CASE("-inf logits are never sampled") {
    const float ninf = -std::numeric_limits<float>::infinity();
    for (double u : {0.0, 0.3, 0.999999}) {
        std::vector<float> l{ninf, 1.0f, ninf};
        CHECK(sample_token(l, {.do_sample = true, .temperature = 0.7f, .top_k = 50}, u) == 1);
    }
}

TEST_CASE("counter RNG is a pure function of (seed, stream, counter)") {
    const CounterRng a(42), b(42), c(43);
    CHECK(a.uniform(1, 7) == b.uniform(1, 7));
    CHECK(a.uniform(1, 7) != c.uniform(1, 7));
    CHECK(a.uniform(1, 7) != a.uniform(2, 7));
    CHECK(a.uniform(1, 7) != a.uniform(1, 8));
    double sum = 0;
    for (int i = 0; i < 10000; ++i) {
        const double u = a.uniform(0, uint64_t(i));
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
        sum += u;
    }
    CHECK(sum / 10000 == doctest::Approx(0.5).epsilon(0.02));
}

}  // namespace qtts
