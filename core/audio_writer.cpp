#include "core/audio_writer.h"

#include <sndfile.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <system_error>

#include "core/error.h"

namespace qtts {

namespace fs = std::filesystem;

void encode_pcm16(std::span<const float> samples, std::vector<int16_t>& out) {
    out.resize(samples.size());
    for (size_t i = 0; i < samples.size(); ++i) {
        const float v = samples[i] * 32768.0f;
        out[i] = v >= 32767.0f ? int16_t(32767) : v <= -32768.0f ? int16_t(-32768) : int16_t(std::lrintf(v));
    }
}

namespace {

static_assert(std::endian::native == std::endian::little, "raw PCM is written in host byte order");

void put_le(std::vector<uint8_t>& out, uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

// Float output gets the same [-1, 1] range as PCM16; a NaN becomes silence.
void clip(std::span<const float> samples, std::vector<float>& out) {
    out.resize(samples.size());
    for (size_t i = 0; i < samples.size(); ++i) out[i] = std::isnan(samples[i]) ? 0.0f : std::clamp(samples[i], -1.0f, 1.0f);
}

class FileWriter final : public AudioWriter {
public:
    FileWriter(fs::path path, int sample_rate, SampleFormat format, AudioContainer container)
        : path_(std::move(path)), format_(format) {
        const fs::path dir = path_.has_parent_path() ? path_.parent_path() : fs::path(".");
        tmp_ = dir / fmt::format(".{}.part-{}", path_.filename().string(), ::getpid());
        std::error_code ec;
        if (fs::is_directory(path_, ec)) fail("it is a directory");
        SF_INFO info{};
        info.samplerate = sample_rate;
        info.channels = 1;
        info.format = (container == AudioContainer::wav ? SF_FORMAT_WAV : (SF_FORMAT_RAW | SF_ENDIAN_LITTLE)) |
                      (format == SampleFormat::pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT);
        file_ = sf_open(tmp_.c_str(), SFM_WRITE, &info);
        if (!file_) fail(sf_strerror(nullptr));
    }
    ~FileWriter() override {
        if (file_) sf_close(file_);
        if (!finished_) {
            std::error_code ec;
            fs::remove(tmp_, ec);
        }
    }
    bool write(std::span<const float> samples) override {
        sf_count_t written;
        if (format_ == SampleFormat::pcm16) {
            encode_pcm16(samples, pcm16_);
            written = sf_write_short(file_, pcm16_.data(), sf_count_t(pcm16_.size()));
        } else {
            clip(samples, f32_);
            written = sf_write_float(file_, f32_.data(), sf_count_t(f32_.size()));
        }
        if (written != sf_count_t(samples.size())) fail(sf_strerror(file_));
        return true;
    }
    void finish() override {
        const int rc = sf_close(file_);
        file_ = nullptr;
        if (rc != 0) fail("closing the file failed (disk full?)");
        std::error_code ec;
        fs::rename(tmp_, path_, ec);
        if (ec) fail(ec.message());
        finished_ = true;
    }

private:
    [[noreturn]] void fail(const std::string& why) {
        if (file_) sf_close(file_);
        file_ = nullptr;
        std::error_code ec;
        fs::remove(tmp_, ec);
        throw OutputError(fmt::format("cannot write {}: {}", path_.string(), why),
                          "check that the directory exists, is writable and has free space");
    }
    fs::path path_, tmp_;
    SampleFormat format_;
    SNDFILE* file_ = nullptr;
    bool finished_ = false;
    std::vector<int16_t> pcm16_;
    std::vector<float> f32_;
};

class StreamWriter final : public AudioWriter {
public:
    StreamWriter(int fd, int sample_rate, SampleFormat format, AudioContainer container) : fd_(fd), format_(format) {
        if (container == AudioContainer::wav) header_ = streaming_wav_header(sample_rate, format);
    }
    bool write(std::span<const float> samples) override {
        if (closed_) return false;
        if (!header_.empty()) {  // sent with the first audio, so a run that fails early writes nothing
            if (!send(header_.data(), header_.size())) return false;
            header_.clear();
        }
        if (format_ == SampleFormat::pcm16) {
            encode_pcm16(samples, pcm16_);
            return send(pcm16_.data(), pcm16_.size() * sizeof(int16_t));
        }
        clip(samples, f32_);
        return send(f32_.data(), f32_.size() * sizeof(float));
    }
    void finish() override {
        if (!header_.empty()) send(header_.data(), header_.size());  // an empty stream is still a WAV
        header_.clear();
    }

private:
    bool send(const void* data, size_t size) {
        const auto* p = static_cast<const uint8_t*>(data);
        while (size > 0) {
            const ssize_t n = ::write(fd_, p, size);
            if (n < 0 && errno == EINTR) continue;  // a signal's flag is polled by the caller between frames
            if (n < 0 && errno == EPIPE) return !(closed_ = true);
            if (n < 0)
                throw OutputError(fmt::format("cannot write audio to the output stream: {}", std::strerror(errno)),
                                  "check the disk or the program reading qtts's output");
            p += n;
            size -= size_t(n);
        }
        return true;
    }
    int fd_;
    SampleFormat format_;
    std::vector<uint8_t> header_;
    bool closed_ = false;
    std::vector<int16_t> pcm16_;
    std::vector<float> f32_;
};

}  // namespace

std::vector<uint8_t> streaming_wav_header(int sample_rate, SampleFormat format) {
    const uint32_t bytes_per_sample = format == SampleFormat::pcm16 ? 2 : 4;
    std::vector<uint8_t> h;
    const auto tag = [&](const char* s) { h.insert(h.end(), s, s + 4); };
    tag("RIFF");
    put_le(h, 0xFFFFFFFFu, 4);
    tag("WAVE");
    tag("fmt ");
    put_le(h, 16, 4);
    put_le(h, format == SampleFormat::pcm16 ? 1 : 3, 2);  // PCM or IEEE float
    put_le(h, 1, 2);                                      // mono
    put_le(h, uint32_t(sample_rate), 4);
    put_le(h, uint32_t(sample_rate) * bytes_per_sample, 4);
    put_le(h, bytes_per_sample, 2);
    put_le(h, bytes_per_sample * 8, 2);
    tag("data");
    put_le(h, 0xFFFFFFFFu, 4);
    return h;
}

std::unique_ptr<AudioWriter> open_audio_file(const fs::path& path, int sample_rate, SampleFormat format,
                                             AudioContainer container) {
    return std::make_unique<FileWriter>(path, sample_rate, format, container);
}

std::unique_ptr<AudioWriter> open_audio_stream(int fd, int sample_rate, SampleFormat format, AudioContainer container) {
    return std::make_unique<StreamWriter>(fd, sample_rate, format, container);
}

void write_wav(const fs::path& path, std::span<const float> samples, int sample_rate, SampleFormat format) {
    const auto writer = open_audio_file(path, sample_rate, format, AudioContainer::wav);
    writer->write(samples);
    writer->finish();
}

}  // namespace qtts
