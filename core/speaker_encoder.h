// Speaker encoder of the Base checkpoints (spec §8): a mono recording at the encoder's rate (24 kHz) → log-mel
// [frames, mel_dim] → ECAPA-TDNN → x-vector [enc_dim], which the prompt inserts raw into the codec track after
// think_eos (spec §5.1). fp32 weights and math; the front-end constants are fixed by the official code, the
// network's sizes come from SpeakerEncoderConfig. Also the x-vector file format (save/load).
//
//   std::vector<float> audio = qtts::load_reference_audio("me.flac", 24000);     // core/audio_input.h
//   std::vector<float> xvec = model->speaker_encoder()->embed(audio);             // Base models only
//   qtts::save_speaker_embedding("me.json", xvec);                                 // reuse without the recording
//   request.speaker_embedding = qtts::load_speaker_embedding("me.json");
#pragma once

#include <filesystem>
#include <optional>
#include <span>
#include <vector>

#include "core/model_config.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "core/vocoder_ops.h"

namespace qtts {

class Model;

// The official front-end (extract_speaker_embedding / mel_spectrogram) hard-codes these, not the config.
inline constexpr int64_t kMelFft = 1024;      // FFT size = window length (periodic Hann)
inline constexpr int64_t kMelHop = 256;
inline constexpr float kMelFloor = 1e-5f;     // log(max(mel, floor))
inline constexpr double kMagnitudeEps = 1e-9; // |X| = sqrt(re^2 + im^2 + eps)

// librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) with its defaults (Slaney mel scale, Slaney area
// normalization), rounded to fp32 as librosa stores it: [n_mels, n_fft / 2 + 1].
Tensor slaney_mel_filterbank(int64_t sample_rate, int64_t n_fft, int64_t n_mels, double fmin, double fmax);

// log(max(M · |STFT(x)|, 1e-5)) for a filterbank M [n_mels, kMelFft / 2 + 1], with reflect padding of
// (kMelFft - kMelHop) / 2 on both sides and no centering: [frames, n_mels], frames = 1 + (N - hop) / hop.
// Throws InputError when `audio` is shorter than kMelFft.
Tensor log_mel_spectrogram(std::span<const float> audio, const Tensor& filterbank);

class SpeakerEncoder {
public:
    // Binds `speaker_encoder.*` from the main checkpoint (any float dtype, converted to fp32 and packed).
    static SpeakerEncoder load(const TensorStore& store, const SpeakerEncoderConfig& config);

    const SpeakerEncoderConfig& config() const { return config_; }
    int64_t dim() const { return config_.enc_dim; }
    int64_t sample_rate() const { return config_.sample_rate; }
    // x-vector of a mono recording at sample_rate() (load_reference_audio makes one from any file).
    std::vector<float> embed(std::span<const float> audio) const;
    // The ECAPA-TDNN alone, on a log-mel [frames, mel_dim].
    std::vector<float> encode(const Tensor& log_mel) const;

    // A conv with "same" reflect padding; TDNN blocks add a ReLU.
    struct Conv {
        vocoder_ops::PackedWeight w;  // taps = kernel size, [n_in] -> [n_out], with bias
        int64_t dilation = 1;
    };
    struct Res2NetBlock {
        Conv tdnn1;                 // [C] -> [C], k 1
        std::vector<Conv> res2net;  // scale - 1 convs [C / scale] -> [C / scale], k and dilation of the block
        Conv tdnn2;                 // [C] -> [C], k 1
        Conv se1, se2;              // [C] -> [se_channels] -> [C], k 1, on the time mean
    };

private:
    SpeakerEncoderConfig config_;
    Tensor mel_filterbank_;             // [mel_dim, kMelFft / 2 + 1]
    Conv block0_;                       // [mel_dim] -> [channels[0]]
    std::vector<Res2NetBlock> blocks_;  // channels[1 .. n-2]
    Conv mfa_;                          // [sum of the blocks' channels] -> [channels.back()]
    // Attentive statistics pooling. Its TDNN reads [x, mean, std] (3 C channels); the statistics are the same
    // at every time step, so their columns fold into a per-recording bias and only the x columns run per step.
    vocoder_ops::PackedWeight asp_tdnn_x_;  // [C] -> [attention_channels], no bias
    Tensor asp_tdnn_stats_;                 // [attention_channels, 2 C]: the mean and std columns
    std::vector<float> asp_tdnn_bias_;      // [attention_channels]
    Conv asp_conv_;                         // [attention_channels] -> [C]
    Conv fc_;                               // [2 C] -> [enc_dim]
};

// Where a request's x-vector comes from (the CLI's --speaker-ref, --speaker-embedding, --speaker-embedding-out).
struct SpeakerSource {
    std::filesystem::path recording{};       // computed by the model's speaker encoder
    std::filesystem::path embedding_file{};  // or read from a saved file
    std::filesystem::path save_to{};         // write the x-vector computed from `recording` here
};
// The x-vector for `model`, or nullopt when `source` names neither a recording nor a file. Throws InputError
// for a model without speaker encoder (not Base), both sources at once, save_to without a recording, or an
// x-vector whose size is not the model's.
std::optional<std::vector<float>> resolve_speaker_embedding(const Model& model, const SpeakerSource& source);

// x-vector files: JSON {"format": "qtts-speaker-embedding", "version": 1, "dim": N, "values": [N numbers]}.
// Values are written as the shortest decimal of the fp32 value widened to double, so any JSON reader gets the
// exact fp32 back. Saving is atomic (temporary file + rename); throws OutputError.
void save_speaker_embedding(const std::filesystem::path& path, std::span<const float> embedding);
// Throws InputError naming the file for anything else than that format with finite fp32 values.
std::vector<float> load_speaker_embedding(const std::filesystem::path& path);

}  // namespace qtts
