// Speech-tokenizer decoder, CPU reference (fp32), following Qwen3TTSTokenizerV2Decoder.forward: dequantize,
// causal pre-conv, sliding-window transformer, 2 x (transposed conv + ConvNeXt), conv, 4 decoder blocks
// (SnakeBeta, causal transposed conv, 3 residual units), SnakeBeta, conv, clamp. Everything is causal, so a
// stream carries per-op input histories and per-layer K/V windows between pushes (see VocoderState).
#include "core/vocoder.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/vocoder_ops.h"
#include "core/vocoder_weights.h"

namespace qtts {

using namespace voc;

namespace {

// The last `rows` input rows of one causal op, oldest first: zeros at the stream start, which is exactly the
// causal zero padding of a full pass.
struct History {
    int64_t rows = 0;
    int64_t width = 0;
    std::vector<float> data;  // [rows, width]

    History() = default;
    History(int64_t r, int64_t w) : rows(r), width(w), data(size_t(r * w), 0.0f) {}
};

// One layer's keys (after RoPE) and values for the last positions a future query can still see.
struct KvWindow {
    int64_t rows = 0;      // <= sliding_window - 1
    std::vector<float> k;  // [rows, n_kv_head * head_dim]
    std::vector<float> v;  // [rows, n_kv_head * head_dim]
};

struct BlockState {
    History up;                    // [1, in] SnakeBeta output before the transposed conv
    std::array<History, 3> units;  // [6 * dilation, out] conv1 inputs
};

}  // namespace

struct VocoderState {
    int64_t frames_done = 0;
    History pre_conv;                   // [2, codebook_dim]
    std::vector<KvWindow> kv;           // [n_layer]
    std::vector<History> upsample_up;   // [stages] [0, latent]: kernel == stride needs no history
    std::vector<History> upsample_dw;   // [stages] [6, latent] dwconv inputs
    History decoder_in;                 // [6, latent]
    std::vector<BlockState> blocks;
    History final_conv;                 // [6, decoder_dim >> n_blocks]

    explicit VocoderState(const VocoderWeights& w) {
        const VocoderConfig& c = w.config;
        pre_conv = History(w.pre_conv.history(), c.codebook_dim);
        kv.resize(size_t(c.n_layer));
        for (const UpsampleStage& s : w.upsample) {
            upsample_up.emplace_back(s.up.history(), c.latent_dim);
            upsample_dw.emplace_back(kConvNeXtKernel - 1, c.latent_dim);
        }
        decoder_in = History(w.decoder_in.history(), c.latent_dim);
        for (const DecoderBlock& b : w.blocks) {
            BlockState s;
            s.up = History(b.up.history(), b.up.phases.front().n_in);
            for (size_t u = 0; u < b.units.size(); ++u)
                s.units[u] = History(b.units[u].conv1.history(), b.units[u].conv1.w.n_in);
            blocks.push_back(std::move(s));
        }
        final_conv = History(w.final_conv.history(), w.final_conv.w.n_in);
    }
};

namespace {

// ---- loading -------------------------------------------------------------------------------------------

std::vector<float> load_vec(const TensorStore& store, const std::string& name, int64_t n) {
    return store.load(name, {n}).data;
}

Snake load_snake(const TensorStore& store, const std::string& prefix, int64_t ch) {
    Snake s;
    s.alpha = load_vec(store, prefix + ".alpha", ch);
    s.inv_beta = load_vec(store, prefix + ".beta", ch);
    for (float& a : s.alpha) a = std::exp(a);
    for (float& b : s.inv_beta) b = 1.0f / (std::exp(b) + 1e-9f);
    return s;
}

CausalConv load_conv(const TensorStore& store, const std::string& prefix, int64_t n_in, int64_t n_out, int64_t k,
                     int64_t dilation = 1) {
    const Tensor w = store.load(prefix + ".conv.weight", {n_out, n_in, k});
    const Tensor b = store.load(prefix + ".conv.bias", {n_out});
    return CausalConv{vocoder_ops::pack_conv(w, &b), dilation};
}

TransposedConv load_transposed_conv(const TensorStore& store, const std::string& prefix, int64_t n_in,
                                    int64_t n_out, int64_t k, int64_t stride) {
    const Tensor w = store.load(prefix + ".conv.weight", {n_in, n_out, k});
    const Tensor b = store.load(prefix + ".conv.bias", {n_out});
    return TransposedConv{vocoder_ops::pack_transposed_conv(w, b, stride), stride};
}

PackedWeight load_linear(const TensorStore& store, const std::string& prefix, int64_t n_in, int64_t n_out,
                         bool has_bias) {
    const Tensor w = store.load(prefix + ".weight", {n_out, n_in});
    if (!has_bias) return vocoder_ops::pack_linear(w, nullptr);
    const Tensor b = store.load(prefix + ".bias", {n_out});
    return vocoder_ops::pack_linear(w, &b);
}

// A 1x1 Conv1d without bias used as a linear layer: weight [out, in, 1].
PackedWeight load_pointwise(const TensorStore& store, const std::string& name, int64_t n_in, int64_t n_out) {
    Tensor w = store.load(name, {n_out, n_in, 1});
    w.shape = {n_out, n_in};
    return vocoder_ops::pack_linear(w, nullptr);
}

// Appends codebook `prefix` normalized as the official EuclideanCodebook.decode does (a division, in fp32).
void load_codebook(const TensorStore& store, const std::string& prefix, int64_t size, int64_t dim,
                   std::vector<float>& out) {
    const Tensor sum = store.load(prefix + "._codebook.embedding_sum", {size, dim});
    const Tensor usage = store.load(prefix + "._codebook.cluster_usage", {size});
    for (int64_t i = 0; i < size; ++i) {
        const float u = std::max(usage.data[size_t(i)], kCodebookEps);
        for (int64_t d = 0; d < dim; ++d) out.push_back(sum.data[size_t(i * dim + d)] / u);
    }
}

// ---- the stages of one chunk ----------------------------------------------------------------------------

// Returns [hist; x] ([hist.rows + n, width]) and keeps its last hist.rows rows as the new history.
std::vector<float> take_history(History& hist, const float* x, int64_t n) {
    std::vector<float> buf(size_t((hist.rows + n) * hist.width));
    std::copy(hist.data.begin(), hist.data.end(), buf.begin());
    std::copy(x, x + n * hist.width, buf.begin() + ptrdiff_t(hist.data.size()));
    std::copy(buf.end() - ptrdiff_t(hist.data.size()), buf.end(), hist.data.begin());
    return buf;
}

std::vector<float> linear(const PackedWeight& w, const float* x, int64_t n) {
    std::vector<float> y(size_t(n * w.n_out));
    vocoder_ops::conv_rows(w, x, w.n_in, 1, n, y.data(), w.n_out);
    return y;
}

std::vector<float> causal_conv(const CausalConv& conv, History& hist, const float* x, int64_t n) {
    const std::vector<float> buf = take_history(hist, x, n);
    std::vector<float> y(size_t(n * conv.w.n_out));
    vocoder_ops::conv_rows(conv.w, buf.data(), conv.w.n_in, conv.dilation, n, y.data(), conv.w.n_out);
    return y;
}

std::vector<float> transposed_conv(const TransposedConv& tc, History& hist, const float* x, int64_t n) {
    const std::vector<float> buf = take_history(hist, x, n);
    const int64_t n_in = tc.phases.front().n_in, n_out = tc.phases.front().n_out;
    std::vector<float> y(size_t(n * tc.stride * n_out));
    for (int64_t j = 0; j < tc.stride; ++j)
        vocoder_ops::conv_rows(tc.phases[size_t(j)], buf.data(), n_in, 1, n, y.data() + j * n_out,
                               tc.stride * n_out);
    return y;
}

void snake(const Snake& s, std::vector<float>& x) {
    const int64_t ch = int64_t(s.alpha.size());
    vocoder_ops::snake_beta(x.data(), int64_t(x.size()) / ch, ch, s.alpha.data(), s.inv_beta.data());
}

// x [n, codebook_dim] from codes [n, num_quantizers].
std::vector<float> dequantize(const VocoderWeights& w, const int32_t* codes, int64_t n) {
    const VocoderConfig& c = w.config;
    const int64_t dim = c.vq_dim();
    std::vector<float> semantic(size_t(n * dim)), acoustic(size_t(n * dim), 0.0f);
    for (int64_t f = 0; f < n; ++f) {
        const int32_t* fc = codes + f * c.num_quantizers;
        const float* row0 = &w.codebooks[size_t(int64_t(fc[0]) * dim)];
        std::copy(row0, row0 + dim, &semantic[size_t(f * dim)]);
        // The official sums the acoustic lookups in vq_dim, in codebook order, before projecting once.
        float* acc = &acoustic[size_t(f * dim)];
        for (int64_t q = 1; q < c.num_quantizers; ++q) {
            const float* row = &w.codebooks[size_t((q * c.codebook_size + fc[q]) * dim)];
            for (int64_t d = 0; d < dim; ++d) acc[d] += row[d];
        }
    }
    std::vector<float> x = linear(w.semantic_proj, semantic.data(), n);
    const std::vector<float> rest = linear(w.acoustic_proj, acoustic.data(), n);
    for (size_t i = 0; i < x.size(); ++i) x[i] += rest[i];
    return x;
}

// Rotate-half RoPE on x [n, n_heads * head_dim] for absolute positions pos0 .. pos0 + n - 1.
void apply_rope(const VocoderWeights& w, float* x, int64_t n, int64_t n_heads, int64_t pos0) {
    const int64_t head_dim = w.config.head_dim, half = head_dim / 2;
    for (int64_t i = 0; i < n; ++i) {
        // fp32 angle, as the official rotary embedding computes inv_freq @ position in fp32.
        const float pos = float(pos0 + i);
        for (int64_t d = 0; d < half; ++d) {
            const float angle = pos * w.inv_freq[size_t(d)];
            const float cos_a = std::cos(angle), sin_a = std::sin(angle);
            for (int64_t h = 0; h < n_heads; ++h) {
                float* v = x + i * n_heads * head_dim + h * head_dim;
                const float x1 = v[d], x2 = v[d + half];
                v[d] = x1 * cos_a - x2 * sin_a;
                v[d + half] = x2 * cos_a + x1 * sin_a;
            }
        }
    }
}

// One pre-norm transformer layer over h [n, hidden] (in place) at positions pos0.., continuing `kv`.
void transformer_layer(const VocoderWeights& w, const TransformerLayer& layer, KvWindow& kv, std::vector<float>& h,
                       int64_t n, int64_t pos0) {
    const VocoderConfig& c = w.config;
    const int64_t hidden = c.hidden_size, head_dim = c.head_dim;
    const int64_t q_dim = c.n_head * head_dim, kv_dim = c.n_kv_head * head_dim;
    const int64_t group = c.n_head / c.n_kv_head;
    const float scale = 1.0f / std::sqrt(float(head_dim));

    std::vector<float> xn(h.size());
    vocoder_ops::rms_norm(h.data(), n, hidden, layer.attn_norm.data(), float(c.rms_eps), xn.data());
    std::vector<float> q = linear(layer.q, xn.data(), n);
    const std::vector<float> k_new = linear(layer.k, xn.data(), n);
    const std::vector<float> v_new = linear(layer.v, xn.data(), n);
    apply_rope(w, q.data(), n, c.n_head, pos0);

    // Keys/values of the window rows first, then the new ones: key row j is at position pos0 - kv.rows + j.
    const int64_t n_keys = kv.rows + n;
    std::vector<float> keys(kv.k), values(kv.v);
    keys.insert(keys.end(), k_new.begin(), k_new.end());
    values.insert(values.end(), v_new.begin(), v_new.end());
    apply_rope(w, keys.data() + kv.rows * kv_dim, n, c.n_kv_head, pos0);

    // Query i (position pos0 + i) sees keys j with i + rows - window < j <= i + rows (official sliding mask
    // kv_idx > q_idx - sliding_window, plus causality).
    std::vector<float> attn(size_t(n * q_dim));
#pragma omp parallel for schedule(static) if (n * c.n_head >= 64)
    for (int64_t task = 0; task < n * c.n_head; ++task) {
        const int64_t i = task / c.n_head, head = task % c.n_head;
        const int64_t kv_head = head / group;  // repeat_kv: query head h uses kv head h / group
        const int64_t j_hi = i + kv.rows;
        const int64_t j_lo = std::max<int64_t>(0, j_hi - c.sliding_window + 1);
        const float* qv = &q[size_t(i * q_dim + head * head_dim)];
        std::vector<float> p(size_t(j_hi - j_lo + 1));
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = j_lo; j <= j_hi; ++j) {
            const float* kr = &keys[size_t(j * kv_dim + kv_head * head_dim)];
            float dot = 0.0f;
            for (int64_t d = 0; d < head_dim; ++d) dot += qv[d] * kr[d];
            p[size_t(j - j_lo)] = dot * scale;
            max_score = std::max(max_score, dot * scale);
        }
        float sum = 0.0f;
        for (float& s : p) {
            s = std::exp(s - max_score);
            sum += s;
        }
        float* out = &attn[size_t(i * q_dim + head * head_dim)];
        for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
        for (int64_t j = j_lo; j <= j_hi; ++j) {
            const float pj = p[size_t(j - j_lo)] / sum;
            const float* vr = &values[size_t(j * kv_dim + kv_head * head_dim)];
            for (int64_t d = 0; d < head_dim; ++d) out[d] += pj * vr[d];
        }
    }
    const std::vector<float> o = linear(layer.o, attn.data(), n);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < hidden; ++d)
            h[size_t(t * hidden + d)] += layer.attn_scale[size_t(d)] * o[size_t(t * hidden + d)];

    vocoder_ops::rms_norm(h.data(), n, hidden, layer.mlp_norm.data(), float(c.rms_eps), xn.data());
    std::vector<float> gate = linear(layer.gate, xn.data(), n);
    const std::vector<float> up = linear(layer.up, xn.data(), n);
    vocoder_ops::silu(gate.data(), int64_t(gate.size()));
    for (size_t i = 0; i < gate.size(); ++i) gate[i] *= up[i];
    const std::vector<float> down = linear(layer.down, gate.data(), n);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < hidden; ++d)
            h[size_t(t * hidden + d)] += layer.mlp_scale[size_t(d)] * down[size_t(t * hidden + d)];

    // Keep what the next queries can still see: the last sliding_window - 1 positions.
    const int64_t keep = std::min(n_keys, c.sliding_window - 1);
    kv.k.assign(keys.end() - ptrdiff_t(keep * kv_dim), keys.end());
    kv.v.assign(values.end() - ptrdiff_t(keep * kv_dim), values.end());
    kv.rows = keep;
}

// ConvNeXt block over x [n, latent] in place.
void convnext(const ConvNeXt& b, History& hist, std::vector<float>& x, int64_t n) {
    const int64_t ch = int64_t(b.gamma.size());
    const std::vector<float> buf = take_history(hist, x.data(), n);
    std::vector<float> y(size_t(n * ch));
    vocoder_ops::depthwise_conv(buf.data(), n, ch, b.dw_weight.data(), kConvNeXtKernel, b.dw_bias.data(), y.data());
    vocoder_ops::layer_norm(y.data(), n, ch, b.norm_w.data(), b.norm_b.data(), kConvNeXtEps, y.data());
    std::vector<float> h = linear(b.pw1, y.data(), n);
    vocoder_ops::gelu(h.data(), int64_t(h.size()));
    const std::vector<float> z = linear(b.pw2, h.data(), n);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t d = 0; d < ch; ++d) x[size_t(t * ch + d)] += b.gamma[size_t(d)] * z[size_t(t * ch + d)];
}

// Decodes n frames (codes already validated) and appends n * samples_per_frame samples.
void decode_chunk(const VocoderWeights& w, VocoderState& st, const int32_t* codes, int64_t n, std::vector<float>& out) {
    const VocoderConfig& c = w.config;
    std::vector<float> x = dequantize(w, codes, n);
    x = causal_conv(w.pre_conv, st.pre_conv, x.data(), n);
    std::vector<float> h = linear(w.input_proj, x.data(), n);
    for (size_t l = 0; l < w.layers.size(); ++l) transformer_layer(w, w.layers[l], st.kv[l], h, n, st.frames_done);
    std::vector<float> hn(h.size());
    vocoder_ops::rms_norm(h.data(), n, c.hidden_size, w.final_norm.data(), float(c.rms_eps), hn.data());
    x = linear(w.output_proj, hn.data(), n);

    int64_t rows = n;
    for (size_t s = 0; s < w.upsample.size(); ++s) {
        x = transposed_conv(w.upsample[s].up, st.upsample_up[s], x.data(), rows);
        rows *= w.upsample[s].up.stride;
        convnext(w.upsample[s].block, st.upsample_dw[s], x, rows);
    }
    x = causal_conv(w.decoder_in, st.decoder_in, x.data(), rows);

    for (size_t b = 0; b < w.blocks.size(); ++b) {
        const DecoderBlock& block = w.blocks[b];
        snake(block.act, x);
        x = transposed_conv(block.up, st.blocks[b].up, x.data(), rows);
        rows *= block.up.stride;
        for (size_t u = 0; u < block.units.size(); ++u) {
            const ResidualUnit& unit = block.units[u];
            std::vector<float> y = x;
            snake(unit.act1, y);
            y = causal_conv(unit.conv1, st.blocks[b].units[u], y.data(), rows);
            snake(unit.act2, y);
            y = linear(unit.conv2.w, y.data(), rows);  // k = 1: no history
            for (size_t i = 0; i < x.size(); ++i) x[i] = y[i] + x[i];
        }
    }
    snake(w.final_act, x);
    x = causal_conv(w.final_conv, st.final_conv, x.data(), rows);
    QTTS_CHECK(rows == n * c.samples_per_frame, "decoded {} samples for {} frames", rows, n);
    for (float v : x) out.push_back(std::clamp(v, -1.0f, 1.0f));
    st.frames_done += n;
}

void check_codes_impl(const VocoderConfig& c, std::span<const int32_t> codes, int64_t first_frame) {
    if (int64_t(codes.size()) % c.num_quantizers != 0)
        throw InputError(fmt::format("vocoder: {} codes is not a whole number of {}-code frames", codes.size(),
                                     c.num_quantizers));
    for (size_t i = 0; i < codes.size(); ++i)
        if (codes[i] < 0 || codes[i] >= c.codebook_size)
            throw InputError(fmt::format("vocoder: code {} at frame {}, codebook {} is outside [0, {})", codes[i],
                                         first_frame + int64_t(i) / c.num_quantizers,
                                         int64_t(i) % c.num_quantizers, c.codebook_size));
}

}  // namespace

void check_vocoder_codes(const VocoderConfig& config, std::span<const int32_t> codes, int64_t first_frame) {
    check_codes_impl(config, codes, first_frame);
}

// ---- Vocoder --------------------------------------------------------------------------------------------

Vocoder::Vocoder(std::shared_ptr<const VocoderWeights> weights) : weights_(std::move(weights)) {}

Vocoder Vocoder::load(const TensorStore& store, const VocoderConfig& config) {
    validate(config, "speech_tokenizer config");
    const VocoderConfig& c = config;
    if (c.num_quantizers < 2)
        throw ModelError(fmt::format("speech_tokenizer config: num_quantizers is {}; the decoder needs a semantic "
                                     "and at least one acoustic codebook", c.num_quantizers));
    if (c.sliding_window < 1)
        throw ModelError(fmt::format("speech_tokenizer config: sliding_window is {}", c.sliding_window));
    auto w = std::make_shared<VocoderWeights>();
    w->config = c;
    const std::string p = "decoder.";
    const int64_t vq = c.vq_dim(), latent = c.latent_dim, hidden = c.hidden_size;

    // Quantizer: codebook 0 is rvq_first's only layer, codebooks 1.. are rvq_rest's layers 0...
    load_codebook(store, p + "quantizer.rvq_first.vq.layers.0", c.codebook_size, vq, w->codebooks);
    for (int64_t q = 1; q < c.num_quantizers; ++q)
        load_codebook(store, fmt::format("{}quantizer.rvq_rest.vq.layers.{}", p, q - 1), c.codebook_size, vq,
                      w->codebooks);
    w->semantic_proj = load_pointwise(store, p + "quantizer.rvq_first.output_proj.weight", vq, c.codebook_dim);
    w->acoustic_proj = load_pointwise(store, p + "quantizer.rvq_rest.output_proj.weight", vq, c.codebook_dim);

    w->pre_conv = load_conv(store, p + "pre_conv", c.codebook_dim, latent, 3);

    const std::string t = p + "pre_transformer.";
    w->input_proj = load_linear(store, t + "input_proj", latent, hidden, true);
    const int64_t q_dim = c.n_head * c.head_dim, kv_dim = c.n_kv_head * c.head_dim;
    for (int64_t l = 0; l < c.n_layer; ++l) {
        const std::string lp = fmt::format("{}layers.{}.", t, l);
        TransformerLayer layer;
        layer.attn_norm = load_vec(store, lp + "input_layernorm.weight", hidden);
        layer.q = load_linear(store, lp + "self_attn.q_proj", hidden, q_dim, false);
        layer.k = load_linear(store, lp + "self_attn.k_proj", hidden, kv_dim, false);
        layer.v = load_linear(store, lp + "self_attn.v_proj", hidden, kv_dim, false);
        layer.o = load_linear(store, lp + "self_attn.o_proj", q_dim, hidden, false);
        layer.attn_scale = load_vec(store, lp + "self_attn_layer_scale.scale", hidden);
        layer.mlp_norm = load_vec(store, lp + "post_attention_layernorm.weight", hidden);
        layer.gate = load_linear(store, lp + "mlp.gate_proj", hidden, c.n_ff, false);
        layer.up = load_linear(store, lp + "mlp.up_proj", hidden, c.n_ff, false);
        layer.down = load_linear(store, lp + "mlp.down_proj", c.n_ff, hidden, false);
        layer.mlp_scale = load_vec(store, lp + "mlp_layer_scale.scale", hidden);
        w->layers.push_back(std::move(layer));
    }
    w->final_norm = load_vec(store, t + "norm.weight", hidden);
    w->output_proj = load_linear(store, t + "output_proj", hidden, latent, true);
    // Default RoPE as transformers computes it: inv_freq = 1 / theta^(2i / head_dim), all in fp32.
    for (int64_t i = 0; i < c.head_dim / 2; ++i)
        w->inv_freq.push_back(1.0f / std::pow(float(c.rope_theta), float(2 * i) / float(c.head_dim)));

    for (size_t s = 0; s < c.upsampling_ratios.size(); ++s) {
        const std::string sp = fmt::format("{}upsample.{}.", p, s);
        const int64_t ratio = c.upsampling_ratios[s];
        UpsampleStage stage;
        stage.up = load_transposed_conv(store, sp + "0", latent, latent, ratio, ratio);
        ConvNeXt& b = stage.block;
        const Tensor dw = store.load(sp + "1.dwconv.conv.weight", {latent, 1, kConvNeXtKernel});
        b.dw_weight.resize(size_t(kConvNeXtKernel * latent));
        for (int64_t ch = 0; ch < latent; ++ch)
            for (int64_t i = 0; i < kConvNeXtKernel; ++i)
                b.dw_weight[size_t(i * latent + ch)] = dw.data[size_t(ch * kConvNeXtKernel + i)];
        b.dw_bias = load_vec(store, sp + "1.dwconv.conv.bias", latent);
        b.norm_w = load_vec(store, sp + "1.norm.weight", latent);
        b.norm_b = load_vec(store, sp + "1.norm.bias", latent);
        b.pw1 = load_linear(store, sp + "1.pwconv1", latent, 4 * latent, true);
        b.pw2 = load_linear(store, sp + "1.pwconv2", 4 * latent, latent, true);
        b.gamma = load_vec(store, sp + "1.gamma", latent);
        w->upsample.push_back(std::move(stage));
    }

    w->decoder_in = load_conv(store, p + "decoder.0", latent, c.decoder_dim, 7);
    const int64_t n_blocks = int64_t(c.upsample_rates.size());
    for (int64_t b = 0; b < n_blocks; ++b) {
        const std::string bp = fmt::format("{}decoder.{}.block.", p, b + 1);
        const int64_t in = c.decoder_dim >> b, out = c.decoder_dim >> (b + 1), rate = c.upsample_rates[size_t(b)];
        DecoderBlock block;
        block.act = load_snake(store, bp + "0", in);
        block.up = load_transposed_conv(store, bp + "1", in, out, 2 * rate, rate);
        for (size_t u = 0; u < kUnitDilations.size(); ++u) {
            const std::string up = fmt::format("{}{}.", bp, u + 2);
            ResidualUnit& unit = block.units[u];
            unit.act1 = load_snake(store, up + "act1", out);
            unit.conv1 = load_conv(store, up + "conv1", out, out, 7, kUnitDilations[u]);
            unit.act2 = load_snake(store, up + "act2", out);
            unit.conv2 = load_conv(store, up + "conv2", out, out, 1);
        }
        w->blocks.push_back(std::move(block));
    }
    const int64_t out_dim = c.decoder_dim >> n_blocks;
    w->final_act = load_snake(store, fmt::format("{}decoder.{}", p, n_blocks + 1), out_dim);
    w->final_conv = load_conv(store, fmt::format("{}decoder.{}", p, n_blocks + 2), out_dim, 1, 7);
    return Vocoder(std::move(w));
}

const VocoderConfig& Vocoder::config() const { return weights_->config; }

std::vector<float> Vocoder::decode(std::span<const int32_t> codes) const {
    VocoderStream stream(*this);
    std::vector<float> out;
    out.reserve(codes.size() / size_t(config().num_quantizers) * size_t(config().samples_per_frame));
    stream.push(codes, out);
    return out;
}

// ---- VocoderStream --------------------------------------------------------------------------------------

VocoderStream::VocoderStream(const Vocoder& vocoder, int64_t max_chunk_frames)
    : weights_(vocoder.weights_),
      state_(std::make_unique<VocoderState>(*weights_)),
      max_chunk_frames_(std::max<int64_t>(1, max_chunk_frames)) {}

VocoderStream::~VocoderStream() = default;
VocoderStream::VocoderStream(VocoderStream&&) noexcept = default;
VocoderStream& VocoderStream::operator=(VocoderStream&&) noexcept = default;

void VocoderStream::push(std::span<const int32_t> codes, std::vector<float>& out) {
    const VocoderConfig& c = weights_->config;
    check_vocoder_codes(c, codes, state_->frames_done);
    const int64_t n_frames = int64_t(codes.size()) / c.num_quantizers;
    for (int64_t f = 0; f < n_frames; f += max_chunk_frames_) {
        const int64_t n = std::min(max_chunk_frames_, n_frames - f);
        decode_chunk(*weights_, *state_, codes.data() + f * c.num_quantizers, n, out);
    }
}

void VocoderStream::reset() { state_ = std::make_unique<VocoderState>(*weights_); }

int64_t VocoderStream::frames_done() const { return state_->frames_done; }

}  // namespace qtts
