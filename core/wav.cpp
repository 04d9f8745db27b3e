#include "core/wav.h"

#include <sndfile.h>
#include <unistd.h>

#include <cstdio>
#include <system_error>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;

SampleFormat parse_sample_format(std::string_view name) {
    if (name == "pcm16") return SampleFormat::pcm16;
    if (name == "f32") return SampleFormat::f32;
    throw InputError(fmt::format("unknown sample format '{}'", name), "use --sample-format pcm16 or f32");
}

void write_wav(const fs::path& path, std::span<const float> samples, int sample_rate, SampleFormat format) {
    const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
    const fs::path tmp = dir / fmt::format(".{}.part-{}", path.filename().string(), ::getpid());
    const auto fail = [&](const std::string& why) {
        std::error_code ec;
        fs::remove(tmp, ec);
        throw OutputError(fmt::format("cannot write {}: {}", path.string(), why),
                          "check that the directory exists, is writable and has free space");
    };
    if (fs::is_directory(path)) fail("it is a directory");
    SF_INFO info{};
    info.samplerate = sample_rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | (format == SampleFormat::pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT);
    SNDFILE* f = sf_open(tmp.c_str(), SFM_WRITE, &info);
    if (!f) fail(sf_strerror(nullptr));
    // Clip before conversion: libsndfile would otherwise wrap out-of-range floats in PCM16.
    sf_command(f, SFC_SET_CLIPPING, nullptr, SF_TRUE);
    const sf_count_t written = sf_write_float(f, samples.data(), sf_count_t(samples.size()));
    const std::string write_error = written == sf_count_t(samples.size()) ? "" : sf_strerror(f);
    if (sf_close(f) != 0 && write_error.empty()) fail("closing the file failed (disk full?)");
    if (!write_error.empty()) fail(write_error);
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) fail(ec.message());
}

AudioData read_audio(const fs::path& path) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f)
        throw InputError(fmt::format("cannot read audio {}: {}", path.string(), sf_strerror(nullptr)),
                         "give a WAV, FLAC or OGG file");
    AudioData out;
    out.sample_rate = info.samplerate;
    out.channels = info.channels;
    out.samples.resize(size_t(info.frames) * size_t(info.channels));
    const sf_count_t got = sf_readf_float(f, out.samples.data(), info.frames);
    sf_close(f);
    out.samples.resize(size_t(got) * size_t(info.channels));
    return out;
}

}  // namespace qtts
