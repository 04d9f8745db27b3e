#include "core/wav.h"

#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <system_error>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;

SampleFormat parse_sample_format(std::string_view name) {
    if (name == "pcm16") return SampleFormat::pcm16;
    if (name == "f32") return SampleFormat::f32;
    throw InputError(fmt::format("unknown sample format '{}'", name), "use --sample-format pcm16 or f32");
}

namespace {

// Decodes an opened file and closes it; shared by the path and the in-memory readers.
AudioData read_all(SNDFILE* opened, const SF_INFO& info, const std::string& name) {
    const std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> f(opened, sf_close);
    AudioData out;
    out.sample_rate = info.samplerate;
    out.channels = info.channels;
    if (info.channels < 1 || info.samplerate < 1)
        throw InputError(fmt::format("cannot read audio {}: {} channels at {} Hz", name, info.channels, info.samplerate),
                         "give a WAV, FLAC or OGG file");
    // Blocks of 64k frames until the data ends: a header claiming 2^60 frames allocates nothing up front.
    constexpr sf_count_t kBlock = 1 << 16;
    std::vector<float> block(size_t(kBlock) * size_t(info.channels));
    for (;;) {
        const sf_count_t got = sf_readf_float(f.get(), block.data(), kBlock);
        if (got <= 0) break;
        out.samples.insert(out.samples.end(), block.begin(), block.begin() + got * info.channels);
    }
    return out;
}

struct MemoryFile {
    std::span<const uint8_t> bytes;
    sf_count_t pos = 0;
};

SF_VIRTUAL_IO memory_io() {
    SF_VIRTUAL_IO io{};
    io.get_filelen = [](void* user) { return sf_count_t(static_cast<MemoryFile*>(user)->bytes.size()); };
    io.seek = [](sf_count_t offset, int whence, void* user) {
        auto* m = static_cast<MemoryFile*>(user);
        const sf_count_t size = sf_count_t(m->bytes.size());
        sf_count_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? size : 0;
        if (offset < -base || offset > size - base) return sf_count_t(-1);
        m->pos = base + offset;
        return m->pos;
    };
    io.read = [](void* ptr, sf_count_t count, void* user) {
        auto* m = static_cast<MemoryFile*>(user);
        const sf_count_t n = std::clamp<sf_count_t>(count, 0, sf_count_t(m->bytes.size()) - m->pos);
        if (n > 0) std::memcpy(ptr, m->bytes.data() + m->pos, size_t(n));
        m->pos += n;
        return n;
    };
    io.write = [](const void*, sf_count_t, void*) { return sf_count_t(0); };
    io.tell = [](void* user) { return static_cast<MemoryFile*>(user)->pos; };
    return io;
}

}  // namespace

AudioData read_audio(const fs::path& path) {
    SF_INFO info{};
    SNDFILE* f = sf_open(path.c_str(), SFM_READ, &info);
    if (!f)
        throw InputError(fmt::format("cannot read audio {}: {}", path.string(), sf_strerror(nullptr)),
                         "give a WAV, FLAC or OGG file");
    return read_all(f, info, path.string());
}

AudioData read_audio(std::span<const uint8_t> bytes, const std::string& name) {
    MemoryFile file{bytes};
    SF_VIRTUAL_IO io = memory_io();
    SF_INFO info{};
    SNDFILE* f = sf_open_virtual(&io, SFM_READ, &info, &file);
    if (!f)
        throw InputError(fmt::format("cannot read audio {}: {}", name, sf_strerror(nullptr)),
                         "give a WAV, FLAC or OGG file");
    return read_all(f, info, name);
}

}  // namespace qtts
