// Summary statistics of repeated measurements (bench, warmup-profile).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace qtts {

struct Summary {
    double min = 0, median = 0, p90 = 0, p99 = 0, max = 0, mean = 0, stddev = 0;
    size_t n = 0;
};

inline Summary summarize(std::vector<double> v) {
    Summary s;
    s.n = v.size();
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    const auto quantile = [&](double q) {  // linear interpolation between order statistics
        const double pos = q * double(v.size() - 1);
        const size_t lo = size_t(pos);
        const size_t hi = std::min(lo + 1, v.size() - 1);
        return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
    };
    s.min = v.front();
    s.median = quantile(0.5);
    s.p90 = quantile(0.9);
    s.p99 = quantile(0.99);
    s.max = v.back();
    double sum = 0;
    for (double x : v) sum += x;
    s.mean = sum / double(v.size());
    double var = 0;
    for (double x : v) var += (x - s.mean) * (x - s.mean);
    s.stddev = v.size() > 1 ? std::sqrt(var / double(v.size() - 1)) : 0.0;
    return s;
}

}  // namespace qtts
