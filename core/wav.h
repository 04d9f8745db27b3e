// Audio files through libsndfile: the sample formats qtts writes (see core/audio_writer.h for writing)
// and reading any file libsndfile decodes (reference recordings, tests).
#pragma once

#include <filesystem>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qtts {

enum class SampleFormat { pcm16, f32 };
SampleFormat parse_sample_format(std::string_view name);  // "pcm16" | "f32"; throws InputError

// Writes a whole mono WAV at once through open_audio_file (core/audio_writer.h, where it is defined):
// temporary file + rename, OutputError naming the path on any failure.
void write_wav(const std::filesystem::path& path, std::span<const float> samples, int sample_rate, SampleFormat format);

// Reads a WAV/FLAC/... file (anything libsndfile reads) as float frames, all channels interleaved.
struct AudioData {
    std::vector<float> samples;
    int sample_rate = 0;
    int channels = 0;
};
// Throws InputError naming the file when it cannot be decoded. The header's frame count is not trusted:
// samples are read in blocks until the data ends, so memory follows the real data.
AudioData read_audio(const std::filesystem::path& path);
// The same from bytes in memory (tests, fuzzers); `name` appears in error messages.
AudioData read_audio(std::span<const uint8_t> bytes, const std::string& name);

}  // namespace qtts
