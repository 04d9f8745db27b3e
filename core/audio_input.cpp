// Reference recordings: decode (core/wav), check, downmix, resample. See audio_input.h.
#include "core/audio_input.h"

#include <samplerate.h>

#include <cmath>

#include "core/error.h"

namespace qtts {

namespace {
constexpr const char* kReferenceHint = "give 3-10 s of one person speaking clearly (WAV, FLAC, OGG, ...)";
}

std::vector<float> downmix_to_mono(std::span<const float> interleaved, int channels) {
    QTTS_CHECK(channels >= 1 && interleaved.size() % size_t(channels) == 0, "{} samples in {} channels",
               interleaved.size(), channels);
    if (channels == 1) return {interleaved.begin(), interleaved.end()};
    const size_t frames = interleaved.size() / size_t(channels);
    std::vector<float> mono(frames);
    for (size_t f = 0; f < frames; ++f) {
        double sum = 0;
        for (int c = 0; c < channels; ++c) sum += interleaved[f * size_t(channels) + size_t(c)];
        mono[f] = float(sum / channels);
    }
    return mono;
}

std::vector<float> resample_audio(std::span<const float> mono, int from_rate, int to_rate) {
    if (from_rate == to_rate) return {mono.begin(), mono.end()};
    const double ratio = double(to_rate) / double(from_rate);
    if (!src_is_valid_ratio(ratio))
        throw InputError(fmt::format("cannot resample audio from {} Hz to {} Hz", from_rate, to_rate),
                         "convert the recording to a common rate such as 16, 24 or 48 kHz");
    std::vector<float> out(size_t(std::ceil(double(mono.size()) * ratio)) + 16);
    SRC_DATA data{};
    data.data_in = mono.data();
    data.input_frames = long(mono.size());
    data.data_out = out.data();
    data.output_frames = long(out.size());
    data.src_ratio = ratio;
    data.end_of_input = 1;
    if (const int err = src_simple(&data, SRC_SINC_BEST_QUALITY, 1))
        throw Error(fmt::format("resampling from {} Hz to {} Hz failed: {}", from_rate, to_rate, src_strerror(err)));
    out.resize(size_t(data.output_frames_gen));
    return out;
}

std::vector<float> prepare_reference_audio(const AudioData& audio, int sample_rate, const std::string& name) {
    const auto bad = [&](const std::string& why) {
        return InputError(fmt::format("reference recording {} {}", name, why), kReferenceHint);
    };
    if (audio.channels < 1 || audio.sample_rate < 1)
        throw bad(fmt::format("has {} channels at {} Hz", audio.channels, audio.sample_rate));
    if (audio.samples.empty()) throw bad("is empty");
    const double seconds = double(audio.samples.size() / size_t(audio.channels)) / audio.sample_rate;
    if (seconds < kMinReferenceSeconds)
        throw bad(fmt::format("is {:.2f} s long; it must be at least {:g} s", seconds, kMinReferenceSeconds));
    if (seconds > kMaxReferenceSeconds)
        throw bad(fmt::format("is {:.1f} s long; at most {:g} s is accepted (trim it)", seconds, kMaxReferenceSeconds));
    std::vector<float> mono = downmix_to_mono(audio.samples, audio.channels);
    double sum_sq = 0;
    bool all_zero = true;
    for (float x : mono) {
        if (!std::isfinite(x)) throw bad("holds NaN or infinite samples");
        sum_sq += double(x) * double(x);
        all_zero = all_zero && x == 0.0f;
    }
    if (all_zero) throw bad("is digital silence");
    const double rms_dbfs = 10.0 * std::log10(sum_sq / double(mono.size()));
    if (rms_dbfs < kMinReferenceRmsDbfs)
        throw bad(fmt::format("is nearly silent (RMS {:.1f} dBFS; at least {:g} dBFS is needed)", rms_dbfs,
                              kMinReferenceRmsDbfs));
    return resample_audio(mono, audio.sample_rate, sample_rate);
}

std::vector<float> load_reference_audio(const std::filesystem::path& path, int sample_rate) {
    return prepare_reference_audio(read_audio(path), sample_rate, path.string());
}

}  // namespace qtts
