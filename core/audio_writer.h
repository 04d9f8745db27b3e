// Audio output that starts before the utterance ends. Two destinations, one sample encoding:
//  - a file: written under a temporary name beside the target and renamed into place by finish(), so an
//    error, Ctrl-C or a full disk never leaves a partial file at the target path;
//  - a byte stream (stdout into a pipe): a WAV header for unknown length (or none: raw PCM), then every
//    write() is delivered completely before it returns, so a player hears each chunk as soon as it exists.
// Both encode samples identically (see encode_pcm16), so a streamed WAV's data equals the file's bytes.
//
//   auto out = qtts::open_audio_file("out.wav", 24000, qtts::SampleFormat::pcm16, qtts::AudioContainer::wav);
//   out->write(chunk);  ...  out->finish();
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <vector>

#include "core/wav.h"

namespace qtts {

enum class AudioContainer { wav, raw };  // raw: headerless little-endian PCM (s16le or f32le)

class AudioWriter {
public:
    virtual ~AudioWriter() = default;
    // Appends mono samples in [-1, 1] (clipped). Returns false once the reader of a stream went away (a
    // closed pipe); nothing more is written then. Throws OutputError on any other failure.
    virtual bool write(std::span<const float> samples) = 0;
    // Completes the output (a file is renamed into place). Without it, a file writer removes its
    // temporary file when destroyed and leaves the target path untouched.
    virtual void finish() = 0;
};

std::unique_ptr<AudioWriter> open_audio_file(const std::filesystem::path& path, int sample_rate, SampleFormat format,
                                             AudioContainer container);
// Writes to an open descriptor (e.g. STDOUT_FILENO) that may be a pipe; never seeks.
std::unique_ptr<AudioWriter> open_audio_stream(int fd, int sample_rate, SampleFormat format, AudioContainer container);

// Float to 16-bit PCM: scale by 32768, round to nearest even, clip to [-32768, 32767].
void encode_pcm16(std::span<const float> samples, std::vector<int16_t>& out);

// The 44-byte header of a mono WAV whose length is unknown when it is written (sizes 0xFFFFFFFF, as
// streaming encoders do; players read until the stream ends).
std::vector<uint8_t> streaming_wav_header(int sample_rate, SampleFormat format);

}  // namespace qtts
