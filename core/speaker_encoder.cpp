// Speaker encoder, CPU (fp32), following the official mel_spectrogram + Qwen3TTSSpeakerEncoder: reflect-padded
// STFT magnitude → Slaney mel → log; ECAPA-TDNN (TDNN, SE-Res2Net blocks, multi-layer aggregation, attentive
// statistics pooling, fc). Activations are time-major [T, C] as in core/vocoder_ops, whose packed GEMM runs
// every conv; the FFT and the statistics accumulate in double.
#include "core/speaker_encoder.h"


#include <algorithm>
#include <cfloat>
#include <cmath>
#include <complex>
#include <fstream>
#include <numbers>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/audio_input.h"
#include "core/engine.h"
#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;
using vocoder_ops::conv_rows;

namespace {

constexpr float kStatsEps = 1e-12f;  // AttentiveStatisticsPooling: std = sqrt(max(var, eps))

// Index into [0, n) of position i of a reflect-padded sequence (mirrored at the ends without repeating them,
// as torch's "reflect"); valid for -n < i < 2n - 1.
int64_t reflect_index(int64_t i, int64_t n) {
    if (i < 0) i = -i;
    return i >= n ? 2 * (n - 1) - i : i;
}

// ---- front-end ----------------------------------------------------------------------------------------------

// librosa's Slaney mel scale: linear below 1 kHz, logarithmic above.
constexpr double kMelLinearHz = 200.0 / 3, kMelLogStartHz = 1000.0, kMelLogStart = kMelLogStartHz / kMelLinearHz;
const double kMelLogStep = std::log(6.4) / 27.0;

double hz_to_slaney_mel(double hz) {
    return hz >= kMelLogStartHz ? kMelLogStart + std::log(hz / kMelLogStartHz) / kMelLogStep : hz / kMelLinearHz;
}
double slaney_mel_to_hz(double mel) {
    return mel >= kMelLogStart ? kMelLogStartHz * std::exp(kMelLogStep * (mel - kMelLogStart)) : kMelLinearHz * mel;
}

// In-place iterative radix-2 complex FFT of a power-of-two length, twiddles computed once per length.
class Fft {
public:
    explicit Fft(int64_t n) : n_(n), twiddle_(size_t(n / 2)) {
        QTTS_CHECK(n >= 2 && (n & (n - 1)) == 0, "FFT length {} is not a power of two", n);
        for (int64_t k = 0; k < n / 2; ++k)
            twiddle_[size_t(k)] = std::polar(1.0, -2.0 * std::numbers::pi * double(k) / double(n));
    }
    void operator()(std::complex<double>* x) const {
        for (int64_t i = 1, j = 0; i < n_; ++i) {  // bit-reversal permutation
            int64_t bit = n_ >> 1;
            for (; j & bit; bit >>= 1) j ^= bit;
            j |= bit;
            if (i < j) std::swap(x[i], x[j]);
        }
        for (int64_t len = 2; len <= n_; len <<= 1) {
            const int64_t half = len / 2, stride = n_ / len;
            for (int64_t start = 0; start < n_; start += len)
                for (int64_t k = 0; k < half; ++k) {
                    const std::complex<double> t = twiddle_[size_t(k * stride)] * x[start + k + half];
                    x[start + k + half] = x[start + k] - t;
                    x[start + k] += t;
                }
        }
    }

private:
    int64_t n_;
    std::vector<std::complex<double>> twiddle_;
};

// The non-zero span [begin, end) of each filterbank row, so the mel product skips the zeros.
struct SparseRows {
    std::vector<int64_t> begin, end;
};
SparseRows nonzero_spans(const Tensor& fb) {
    SparseRows s;
    const int64_t cols = fb.dim(1);
    for (int64_t m = 0; m < fb.dim(0); ++m) {
        int64_t b = 0, e = cols;
        while (b < cols && fb.row(m)[b] == 0.0f) ++b;
        while (e > b && fb.row(m)[e - 1] == 0.0f) --e;
        s.begin.push_back(b);
        s.end.push_back(e);
    }
    return s;
}

// ---- ECAPA-TDNN pieces ------------------------------------------------------------------------------------------

SpeakerEncoder::Conv load_conv(const TensorStore& store, const std::string& prefix, int64_t n_out, int64_t n_in,
                               int64_t kernel, int64_t dilation) {
    const Tensor w = store.load(prefix + ".weight", {n_out, n_in, kernel});
    const Tensor b = store.load(prefix + ".bias", {n_out});
    return {vocoder_ops::pack_conv(w, &b), dilation};
}

// y[t] = conv(x)[t] for t < T with PyTorch's padding="same", padding_mode="reflect": (k-1)·d mirrored samples
// (no edge repeat), the left side getting the floor half. `x` and `y` are [T, ·] with row strides ld_x and ld_y.
void conv_same(const SpeakerEncoder::Conv& c, const float* x, int64_t ld_x, int64_t T, float* y, int64_t ld_y,
               std::vector<float>& padded) {
    const int64_t n_in = c.w.n_in, total = (c.w.n_tap - 1) * c.dilation, left = total / 2;
    if (total == 0) {
        conv_rows(c.w, x, ld_x, 0, T, y, ld_y);
        return;
    }
    QTTS_CHECK(T > total - left, "{} frames are too few for a reflect pad of {}", T, total - left);
    padded.resize(size_t((T + total) * n_in));
    for (int64_t i = 0; i < T + total; ++i)
        std::copy_n(x + reflect_index(i - left, T) * ld_x, n_in, &padded[size_t(i * n_in)]);
    conv_rows(c.w, padded.data(), n_in, c.dilation, T, y, ld_y);
}

void relu_rows(float* y, int64_t T, int64_t ch, int64_t ld) {
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < ch; ++c) y[t * ld + c] = std::max(y[t * ld + c], 0.0f);
}

// Time-major TDNN block: ReLU(conv_same(x)).
void tdnn(const SpeakerEncoder::Conv& c, const float* x, int64_t ld_x, int64_t T, float* y, int64_t ld_y,
          std::vector<float>& padded) {
    conv_same(c, x, ld_x, T, y, ld_y, padded);
    relu_rows(y, T, c.w.n_out, ld_y);
}

// Per-channel mean over time of x [T, ch] (stride ld), in double.
std::vector<double> time_mean(const float* x, int64_t T, int64_t ch, int64_t ld) {
    std::vector<double> mean(size_t(ch), 0.0);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < ch; ++c) mean[size_t(c)] += x[t * ld + c];
    for (double& m : mean) m /= double(T);
    return mean;
}

// SE-Res2Net block on x [T, C] (stride ld_x) into y [T, C] (stride ld_y): TDNN, Res2Net, TDNN, squeeze-excite,
// plus the input.
void res2net_block(const SpeakerEncoder::Res2NetBlock& b, const float* x, int64_t ld_x, int64_t T, float* y,
                   int64_t ld_y, std::vector<float>& padded) {
    const int64_t C = b.tdnn1.w.n_out, scale = int64_t(b.res2net.size()) + 1, width = C / scale;
    std::vector<float> h(size_t(T * C)), r(size_t(T * C)), part(size_t(T * width));
    tdnn(b.tdnn1, x, ld_x, T, h.data(), C, padded);
    // Chunk 0 passes through; chunk i > 0 is TDNN_{i-1}(h_i + r_{i-1}), with nothing added for i = 1.
    for (int64_t t = 0; t < T; ++t) std::copy_n(&h[size_t(t * C)], width, &r[size_t(t * C)]);
    for (int64_t i = 1; i < scale; ++i) {
        const float* input = &h[size_t(i * width)];
        int64_t ld_input = C;
        if (i >= 2) {
            for (int64_t t = 0; t < T; ++t)
                for (int64_t c = 0; c < width; ++c)
                    part[size_t(t * width + c)] = h[size_t(t * C + i * width + c)] + r[size_t(t * C + (i - 1) * width + c)];
            input = part.data();
            ld_input = width;
        }
        tdnn(b.res2net[size_t(i - 1)], input, ld_input, T, &r[size_t(i * width)], C, padded);
    }
    tdnn(b.tdnn2, r.data(), C, T, h.data(), C, padded);

    // Squeeze-excite: channel gains from the time mean.
    const std::vector<double> mean = time_mean(h.data(), T, C, C);
    std::vector<float> mean_f(mean.begin(), mean.end()), squeezed(size_t(b.se1.w.n_out)), gain(static_cast<size_t>(C));
    conv_rows(b.se1.w, mean_f.data(), C, 0, 1, squeezed.data(), b.se1.w.n_out);
    relu_rows(squeezed.data(), 1, b.se1.w.n_out, b.se1.w.n_out);
    conv_rows(b.se2.w, squeezed.data(), b.se1.w.n_out, 0, 1, gain.data(), C);
    for (float& g : gain) g = 1.0f / (1.0f + std::exp(-g));
    for (int64_t t = 0; t < T; ++t)
        for (int64_t c = 0; c < C; ++c) y[t * ld_y + c] = h[size_t(t * C + c)] * gain[size_t(c)] + x[t * ld_x + c];
}

// Weighted mean and std over time of x [T, C] per channel with weights w [T, C] (each column sums to 1).
void weighted_stats(const float* x, const float* w, int64_t T, int64_t C, float* mean, float* std_dev) {
    for (int64_t c = 0; c < C; ++c) {
        double m = 0;
        for (int64_t t = 0; t < T; ++t) m += double(w[t * C + c]) * x[t * C + c];
        double v = 0;
        for (int64_t t = 0; t < T; ++t) {
            const double d = x[t * C + c] - m;
            v += double(w[t * C + c]) * d * d;
        }
        mean[c] = float(m);
        std_dev[c] = float(std::sqrt(std::max(v, double(kStatsEps))));
    }
}

}  // namespace

Tensor slaney_mel_filterbank(int64_t sample_rate, int64_t n_fft, int64_t n_mels, double fmin, double fmax) {
    const int64_t n_bins = n_fft / 2 + 1;
    // Band edges: n_mels + 2 points equally spaced in mel (numpy linspace: start + i * step, last = stop).
    const double mel_lo = hz_to_slaney_mel(fmin), mel_hi = hz_to_slaney_mel(fmax);
    const double step = (mel_hi - mel_lo) / double(n_mels + 1);
    std::vector<double> edge_hz(size_t(n_mels + 2));
    for (int64_t i = 0; i < n_mels + 2; ++i)
        edge_hz[size_t(i)] = slaney_mel_to_hz(i == n_mels + 1 ? mel_hi : mel_lo + double(i) * step);
    const double bin_hz = 1.0 / (double(n_fft) * (1.0 / double(sample_rate)));  // numpy rfftfreq
    Tensor fb({n_mels, n_bins});
    for (int64_t m = 0; m < n_mels; ++m) {
        const double lo = edge_hz[size_t(m)], mid = edge_hz[size_t(m + 1)], hi = edge_hz[size_t(m + 2)];
        const double area_norm = 2.0 / (hi - lo);
        for (int64_t k = 0; k < n_bins; ++k) {
            const double f = double(k) * bin_hz;
            const double rising = (f - lo) / (mid - lo), falling = (hi - f) / (hi - mid);
            // librosa stores the triangle in fp32 and then scales it in double.
            const float triangle = float(std::max(0.0, std::min(rising, falling)));
            fb.row(m)[k] = float(double(triangle) * area_norm);
        }
    }
    return fb;
}

Tensor log_mel_spectrogram(std::span<const float> audio, const Tensor& filterbank) {
    const int64_t n = int64_t(audio.size()), pad = (kMelFft - kMelHop) / 2, n_bins = kMelFft / 2 + 1;
    const int64_t n_mels = filterbank.dim(0);
    QTTS_CHECK(filterbank.dim(1) == n_bins, "mel filterbank shape {}", shape_str(filterbank.shape));
    if (n < kMelFft)
        throw InputError(fmt::format("the recording has {} samples; the speaker encoder needs at least {}", n, kMelFft),
                         "give at least a second of speech");
    static const Fft fft(kMelFft);
    const SparseRows spans = nonzero_spans(filterbank);
    // Periodic Hann as torch.hann_window computes it (fp32): 0.5 - 0.5 cos(2 pi i / N).
    std::vector<double> window(static_cast<size_t>(kMelFft));
    for (int64_t i = 0; i < kMelFft; ++i)
        window[size_t(i)] = 0.5f - 0.5f * std::cos(float(i) * float(2.0 * std::numbers::pi / double(kMelFft)));

    const int64_t frames = 1 + (n + 2 * pad - kMelFft) / kMelHop;
    Tensor mel({frames, n_mels});
#pragma omp parallel
    {
        std::vector<std::complex<double>> spectrum(static_cast<size_t>(kMelFft));
        std::vector<double> magnitude(static_cast<size_t>(n_bins));
#pragma omp for schedule(static)
        for (int64_t f = 0; f < frames; ++f) {
            for (int64_t i = 0; i < kMelFft; ++i)
                spectrum[size_t(i)] = audio[size_t(reflect_index(f * kMelHop + i - pad, n))] * window[size_t(i)];
            fft(spectrum.data());
            for (int64_t k = 0; k < n_bins; ++k) magnitude[size_t(k)] = std::sqrt(std::norm(spectrum[size_t(k)]) + kMagnitudeEps);
            for (int64_t m = 0; m < n_mels; ++m) {
                double acc = 0;
                for (int64_t k = spans.begin[size_t(m)]; k < spans.end[size_t(m)]; ++k)
                    acc += double(filterbank.row(m)[k]) * magnitude[size_t(k)];
                mel.row(f)[m] = std::log(std::max(float(acc), kMelFloor));
            }
        }
    }
    return mel;
}

SpeakerEncoder SpeakerEncoder::load(const TensorStore& store, const SpeakerEncoderConfig& config) {
    SpeakerEncoder e;
    e.config_ = config;
    const auto& ch = config.channels;
    const auto& k = config.kernel_sizes;
    const auto& d = config.dilations;
    const int64_t n = int64_t(ch.size()), scale = config.res2net_scale, C = ch.back();
    const std::string p = "speaker_encoder.";
    e.block0_ = load_conv(store, p + "blocks.0.conv", ch[0], config.mel_dim, k[0], d[0]);
    // After block 0 has checked mel_dim against the weights. The official front-end's fmax is fixed at 12 kHz for
    // its fixed 24 kHz input (validate() pins the rate).
    e.mel_filterbank_ = slaney_mel_filterbank(config.sample_rate, kMelFft, config.mel_dim, 0.0, config.sample_rate / 2.0);
    for (int64_t i = 1; i + 1 < n; ++i) {
        const std::string b = fmt::format("{}blocks.{}.", p, i);
        const int64_t c = ch[size_t(i)], width = c / scale;
        Res2NetBlock block;
        block.tdnn1 = load_conv(store, b + "tdnn1.conv", c, ch[size_t(i - 1)], 1, 1);
        for (int64_t j = 0; j + 1 < scale; ++j)
            block.res2net.push_back(load_conv(store, fmt::format("{}res2net_block.blocks.{}.conv", b, j), width, width,
                                              k[size_t(i)], d[size_t(i)]));
        block.tdnn2 = load_conv(store, b + "tdnn2.conv", c, c, 1, 1);
        block.se1 = load_conv(store, b + "se_block.conv1", config.se_channels, c, 1, 1);
        block.se2 = load_conv(store, b + "se_block.conv2", c, config.se_channels, 1, 1);
        e.blocks_.push_back(std::move(block));
    }
    e.mfa_ = load_conv(store, p + "mfa.conv", C, C, k.back(), d.back());

    const int64_t A = config.attention_channels;
    const Tensor w = store.load(p + "asp.tdnn.conv.weight", {A, 3 * C, 1});
    e.asp_tdnn_bias_ = store.load(p + "asp.tdnn.conv.bias", {A}).data;
    std::vector<float> x_part(size_t(C * A));  // pack_dense layout [in, out]
    e.asp_tdnn_stats_ = Tensor({A, 2 * C});
    for (int64_t a = 0; a < A; ++a) {
        const float* row = w.ptr() + a * 3 * C;
        for (int64_t c = 0; c < C; ++c) x_part[size_t(c * A + a)] = row[c];
        std::copy_n(row + C, 2 * C, e.asp_tdnn_stats_.row(a));
    }
    e.asp_tdnn_x_ = vocoder_ops::pack_dense(x_part, 1, C, A, {});
    e.asp_conv_ = load_conv(store, p + "asp.conv", C, A, 1, 1);
    e.fc_ = load_conv(store, p + "fc", config.enc_dim, 2 * C, 1, 1);
    return e;
}

std::vector<float> SpeakerEncoder::embed(std::span<const float> audio) const {
    return encode(log_mel_spectrogram(audio, mel_filterbank_));
}

std::vector<float> SpeakerEncoder::encode(const Tensor& log_mel) const {
    QTTS_CHECK(log_mel.rank() == 2 && log_mel.dim(1) == config_.mel_dim, "log-mel shape {}", shape_str(log_mel.shape));
    const int64_t T = log_mel.dim(0), C = mfa_.w.n_out, A = config_.attention_channels;
    std::vector<float> padded;

    std::vector<float> x0(size_t(T * block0_.w.n_out));
    tdnn(block0_, log_mel.ptr(), config_.mel_dim, T, x0.data(), block0_.w.n_out, padded);
    // The SE-Res2Net blocks write side by side into the multi-layer aggregation input.
    const int64_t cat_width = mfa_.w.n_in;
    std::vector<float> cat(size_t(T * cat_width));
    const float* input = x0.data();
    int64_t ld_input = block0_.w.n_out, offset = 0;
    for (const Res2NetBlock& b : blocks_) {
        res2net_block(b, input, ld_input, T, &cat[size_t(offset)], cat_width, padded);
        input = &cat[size_t(offset)];
        ld_input = cat_width;
        offset += b.tdnn1.w.n_out;
    }
    std::vector<float> h(size_t(T * C));
    tdnn(mfa_, cat.data(), cat_width, T, h.data(), C, padded);

    // Attentive statistics pooling: global statistics (uniform weights 1/T, as the official masked form computes
    // them), attention logits, softmax over time, weighted statistics.
    std::vector<float> uniform(size_t(T * C), 1.0f / float(T)), stats(size_t(2 * C));
    weighted_stats(h.data(), uniform.data(), T, C, stats.data(), stats.data() + C);
    std::vector<float> bias(static_cast<size_t>(A));
    for (int64_t a = 0; a < A; ++a) {
        double acc = asp_tdnn_bias_[size_t(a)];
        for (int64_t c = 0; c < 2 * C; ++c) acc += double(asp_tdnn_stats_.row(a)[c]) * stats[size_t(c)];
        bias[size_t(a)] = float(acc);
    }
    std::vector<float> att(size_t(T * A));
    conv_rows(asp_tdnn_x_, h.data(), C, 0, T, att.data(), A);
    for (int64_t t = 0; t < T; ++t)
        for (int64_t a = 0; a < A; ++a) att[size_t(t * A + a)] = std::tanh(std::max(att[size_t(t * A + a)] + bias[size_t(a)], 0.0f));
    std::vector<float> weights(size_t(T * C));
    conv_rows(asp_conv_.w, att.data(), A, 0, T, weights.data(), C);
    for (int64_t c = 0; c < C; ++c) {
        float peak = -INFINITY;
        for (int64_t t = 0; t < T; ++t) peak = std::max(peak, weights[size_t(t * C + c)]);
        double sum = 0;
        for (int64_t t = 0; t < T; ++t) {
            float& w = weights[size_t(t * C + c)];
            w = std::exp(w - peak);
            sum += w;
        }
        for (int64_t t = 0; t < T; ++t) weights[size_t(t * C + c)] = float(weights[size_t(t * C + c)] / sum);
    }
    std::vector<float> pooled(size_t(2 * C));
    weighted_stats(h.data(), weights.data(), T, C, pooled.data(), pooled.data() + C);

    std::vector<float> out(size_t(config_.enc_dim));
    conv_rows(fc_.w, pooled.data(), 2 * C, 0, 1, out.data(), config_.enc_dim);
    return out;
}

// ---- x-vector source and file format ------------------------------------------------------------------------

namespace {
constexpr const char* kEmbeddingFormat = "qtts-speaker-embedding";
constexpr int64_t kEmbeddingVersion = 1;
constexpr uintmax_t kMaxEmbeddingFileBytes = uintmax_t(16) << 20;  // dim 2048 needs ~50 KB
}  // namespace

void save_speaker_embedding(const fs::path& path, std::span<const float> embedding) {
    std::string text = fmt::format("{{\"format\": \"{}\", \"version\": {}, \"dim\": {}, \"values\": [", kEmbeddingFormat,
                                   kEmbeddingVersion, embedding.size());
    // fp32 widened to double prints its exact binary value in shortest round-trip form; any reader's double
    // parse then narrows back to the same fp32 (a shortest-fp32 string could round twice through double).
    for (size_t i = 0; i < embedding.size(); ++i) {
        std::string number = fmt::format("{}", double(embedding[i]));
        // "-0" would read back as the integer 0 and lose its sign.
        if (number.find_first_of(".e") == std::string::npos) number += ".0";
        text += (i ? ", " : "") + number;
    }
    text += "]}\n";
    write_file_atomically(path, text, "speaker embedding");
}

std::vector<float> load_speaker_embedding(const fs::path& path) {
    const std::string name = path.string();
    const auto bad = [&](const std::string& why) {
        return InputError(fmt::format("speaker embedding {} is not usable: {}", name, why),
                          "give a file written by --speaker-embedding-out, or recompute it with --speaker-ref");
    };
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    std::ifstream in(path, std::ios::binary);
    if (ec || !in || fs::is_directory(path))
        throw InputError(fmt::format("cannot read speaker embedding {}", name), "check the path given to --speaker-embedding");
    if (size > kMaxEmbeddingFileBytes) throw bad(fmt::format("{} bytes is far too large", size));
    const std::string text{std::istreambuf_iterator<char>(in), {}};
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw bad("not valid JSON");
    if (!j.is_object() || !j.contains("format") || j["format"] != kEmbeddingFormat)
        throw bad(fmt::format("\"format\" is not \"{}\"", kEmbeddingFormat));
    if (!j.contains("version") || j["version"] != kEmbeddingVersion)
        throw bad(fmt::format("\"version\" is not {}", kEmbeddingVersion));
    if (!j.contains("dim") || !j["dim"].is_number_integer() || j["dim"].get<int64_t>() <= 0)
        throw bad("\"dim\" is not a positive integer");
    const int64_t dim = j["dim"].get<int64_t>();
    if (!j.contains("values") || !j["values"].is_array() || int64_t(j["values"].size()) != dim)
        throw bad(fmt::format("\"values\" is not a list of {} numbers", dim));
    std::vector<float> values;
    values.reserve(size_t(dim));
    for (const auto& v : j["values"]) {
        if (!v.is_number()) throw bad(fmt::format("value {} is not a number", values.size()));
        const double x = v.get<double>();
        if (!(std::fabs(x) <= FLT_MAX)) throw bad(fmt::format("value {} ({}) is not a finite fp32 number", values.size(), x));
        values.push_back(float(x));
    }
    return values;
}

std::optional<std::vector<float>> resolve_speaker_embedding(const Model& model, const SpeakerSource& source) {
    if (!source.save_to.empty() && source.recording.empty())
        throw InputError("--speaker-embedding-out needs a recording to compute the embedding from",
                         "add --speaker-ref FILE");
    if (source.recording.empty() && source.embedding_file.empty()) return std::nullopt;
    if (!source.recording.empty() && !source.embedding_file.empty())
        throw InputError("give a reference recording or a saved speaker embedding, not both",
                         "use either --speaker-ref or --speaker-embedding");
    const SpeakerEncoder* encoder = model.speaker_encoder();
    if (!encoder)
        throw InputError(fmt::format("this model ({} checkpoint) has no speaker encoder, so it cannot take a voice "
                                     "from a reference", model.config().tts_model_type),
                         "voice cloning needs a Base checkpoint, e.g. Qwen3-TTS-12Hz-0.6B-Base");
    const int64_t dim = model.config().talker.stack.n_embd;
    std::vector<float> embedding;
    if (!source.recording.empty()) {
        embedding = encoder->embed(load_reference_audio(source.recording, int(encoder->sample_rate())));
        if (!source.save_to.empty()) save_speaker_embedding(source.save_to, embedding);
    } else {
        embedding = load_speaker_embedding(source.embedding_file);
    }
    if (int64_t(embedding.size()) != dim)
        throw InputError(fmt::format("speaker embedding {} has {} values; this model needs {}",
                                     source.recording.empty() ? source.embedding_file.string() : source.recording.string(),
                                     embedding.size(), dim),
                         "embeddings are tied to the model size: recompute it with this model and --speaker-ref");
    return embedding;
}

}  // namespace qtts
