// WAV output through libsndfile. Files are written to a temporary name beside the target and renamed
// into place only when complete, so a failed or interrupted run never leaves a partial file.
#pragma once

#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace qtts {

enum class SampleFormat { pcm16, f32 };
SampleFormat parse_sample_format(std::string_view name);  // "pcm16" | "f32"; throws InputError

// Writes mono `samples` in [-1, 1]; throws OutputError naming the path on any failure.
void write_wav(const std::filesystem::path& path, std::span<const float> samples, int sample_rate, SampleFormat format);

// Reads a WAV/FLAC/... file (anything libsndfile reads) as float frames, all channels interleaved.
struct AudioData {
    std::vector<float> samples;
    int sample_rate = 0;
    int channels = 0;
};
AudioData read_audio(const std::filesystem::path& path);

}  // namespace qtts
