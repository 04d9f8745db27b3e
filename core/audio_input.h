// Reference recordings for voice cloning: any file libsndfile decodes (WAV, FLAC, OGG/Vorbis, Opus, AIFF, ...),
// checked for a usable length and level, downmixed to mono (the channel mean, as the official loader does) and
// resampled with libsamplerate (best sinc) to the speaker encoder's rate. Every problem is an InputError naming
// the file, with a hint.
//
//   std::vector<float> mono_24k = qtts::load_reference_audio("me.flac", 24000);
#pragma once

#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "core/wav.h"

namespace qtts {

// Shorter references give unstable x-vectors; longer ones add nothing the pooled statistics need and cost
// time and memory (the README suggests 3-10 s).
inline constexpr double kMinReferenceSeconds = 1.0;
inline constexpr double kMaxReferenceSeconds = 60.0;
// Below this RMS (-60 dBFS) a recording holds no usable speech: at best hum and hiss.
inline constexpr double kMinReferenceRmsDbfs = -60.0;

std::vector<float> load_reference_audio(const std::filesystem::path& path, int sample_rate);
// The checks and conversions of load_reference_audio on decoded audio; `name` names it in errors.
std::vector<float> prepare_reference_audio(const AudioData& audio, int sample_rate, const std::string& name);

// Channel mean of interleaved frames.
std::vector<float> downmix_to_mono(std::span<const float> interleaved, int channels);
// Band-limited resampling (libsamplerate SRC_SINC_BEST_QUALITY); returns the input when the rates are equal.
std::vector<float> resample_audio(std::span<const float> mono, int from_rate, int to_rate);

}  // namespace qtts
