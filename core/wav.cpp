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
