#!/usr/bin/env python3
"""Speaker-encoder fixture: a synthetic reference recording, the official log-mel front-end and x-vector of it,
and the official greedy codes in x-vector-only voice-clone mode with that x-vector.

Writes into --out-dir (tests/data/fixtures by default):
  speaker_ref_24k.flac       2 s, 24 kHz mono, 16-bit: a voiced harmonic chirp with vibrato, syllable-like
                             amplitude envelope and breath noise, all below 7 kHz so a 16 kHz copy loses nothing
  speaker_ref_16k_stereo.flac the same recording resampled to 16 kHz by scipy's polyphase filter, left channel
                             0.7 x and right 1.3 x (their mean is the recording, as a correct downmix must find)
  speaker_fixture.json       mel checksums and sampled values, the x-vector, the official x-vector of the
                             16 kHz copy (official wrapper path: librosa mono load + soxr resample), and codes

Runs the official `qwen_tts` package (pip install qwen-tts) in fp32 on the CPU, greedy talker and code predictor,
repetition penalty 1.0, max_new_tokens 32 (at most 31 frames), like the other tiny fixtures:

  PYTHONPATH=STUBS python3 scripts/make_speaker_fixture.py --model tests/data/tiny

STUBS is a folder with empty torchaudio/__init__.py, torchaudio/compliance/{__init__,kaldi}.py: qwen_tts imports
torchaudio, which is not needed here and may not load.
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_checkpoint import load_official_model  # noqa: E402

import numpy as np

SAMPLE_RATE = 24000
SECONDS = 2.0
BREATH = 0.05  # breath noise level against the voiced part
MEL_SAMPLES = 512  # sampled log-mel values kept in the fixture (the whole matrix would be ~300 KB)


def synthetic_voice(seed):
    """A deterministic voiced signal in [-1, 1] with nothing above 6.5 kHz."""
    rng = np.random.default_rng(seed)
    n = int(SAMPLE_RATE * SECONDS)
    t = np.arange(n) / SAMPLE_RATE
    # f0 glides 110 -> 190 Hz with 5.5 Hz vibrato of +-3 %; the phase is the integral of f0.
    f0 = (110 + 80 * t / SECONDS) * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = np.zeros(n)
    for k in range(1, 64):
        # Two formant-like bumps (700 Hz, 1800 Hz) on a 1/k roll-off, faded out smoothly between 5.5 and 6 kHz
        # (a hard cut would click as the glide crosses it).
        fk = k * f0
        gain = (1 / k) * (1 + 2 * np.exp(-((fk - 700) / 300) ** 2) + 1.5 * np.exp(-((fk - 1800) / 400) ** 2))
        voiced += gain * np.clip((6000 - fk) / 500, 0, 1) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    # Syllables: a 4 Hz amplitude envelope with short fades at both ends.
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t - np.pi / 2)
    fade = np.minimum(1, np.minimum(t, SECONDS - t) / 0.05)
    # Breath noise band-limited exactly: white noise with every FFT bin above 6 kHz zeroed.
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / SAMPLE_RATE) > 6000] = 0
    breath = np.fft.irfft(spectrum, n)
    x = (voiced * envelope + BREATH * breath / breath.std()) * fade
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tests/data/tiny", help="Base checkpoint directory (with speaker_encoder.*)")
    ap.add_argument("--out-dir", default="tests/data/fixtures")
    ap.add_argument("--seed", type=int, default=20240611)
    ap.add_argument("--frames", type=int, default=32, help="max_new_tokens (at most frames-1 frames)")
    ap.add_argument("--texts", nargs="+", default=["Hello, this is my voice.", "A second sentence, said the same way."])
    ap.add_argument("--languages", nargs="+", default=["english", "auto"])
    a = ap.parse_args()

    import librosa
    import soundfile as sf
    import torch
    from scipy.signal import resample_poly
    from transformers import AutoTokenizer
    from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

    torch.manual_seed(0)
    os.makedirs(a.out_dir, exist_ok=True)
    ref_path = os.path.join(a.out_dir, "speaker_ref_24k.flac")
    sf.write(ref_path, synthetic_voice(a.seed), SAMPLE_RATE, subtype="PCM_16")
    # Read back: both engines must see the 16-bit samples, not the float ones they came from.
    audio, sr = sf.read(ref_path, dtype="float32")
    assert sr == SAMPLE_RATE and audio.ndim == 1

    stereo_path = os.path.join(a.out_dir, "speaker_ref_16k_stereo.flac")
    x16 = resample_poly(audio.astype(np.float64), 2, 3)
    sf.write(stereo_path, np.stack([0.7 * x16, 1.3 * x16], axis=1), 16000, subtype="PCM_16")

    model = load_official_model(a.model, "cpu", torch.float32)
    assert model.speaker_encoder is not None, "the checkpoint has no speaker encoder (not a Base model)"

    # The front-end exactly as extract_speaker_embedding calls it.
    mel = mel_spectrogram(torch.from_numpy(audio).unsqueeze(0), n_fft=1024, num_mels=128, sampling_rate=24000,
                          hop_size=256, win_size=1024, fmin=0, fmax=12000)[0].numpy()  # [128, frames]
    n_mels, n_frames = mel.shape
    picks = [((i * 37) % n_frames, (i * 11) % n_mels) for i in range(MEL_SAMPLES)]
    embedding = model.extract_speaker_embedding(audio, SAMPLE_RATE).float().numpy()

    # The official wrapper's path for a file at another rate: librosa mono load, librosa (soxr) resample.
    y16, sr16 = librosa.load(stereo_path, sr=None, mono=True)
    y24 = librosa.resample(y=y16.astype(np.float32), orig_sr=sr16, target_sr=SAMPLE_RATE)
    embedding_16k = model.extract_speaker_embedding(y24.astype(np.float32), SAMPLE_RATE).float().numpy()

    tok = AutoTokenizer.from_pretrained(a.model)
    prompt = {"ref_spk_embedding": [torch.from_numpy(embedding)], "x_vector_only_mode": [True],
              "icl_mode": [False], "ref_code": [None]}
    items = []
    for text, language in zip(a.texts, a.languages):
        ids = tok(f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            codes, _ = model.generate(input_ids=[ids], languages=[language], voice_clone_prompt=prompt,
                                      max_new_tokens=a.frames, do_sample=False, subtalker_dosample=False,
                                      repetition_penalty=1.0)
        items.append({"text": text, "language": language, "input_ids": ids[0].tolist(), "codes": codes[0].tolist(),
                      "n_frames": int(codes[0].shape[0])})
        print(f"{text!r} ({language}): {items[-1]['n_frames']} frames", file=sys.stderr)

    out = {
        "model": a.model, "max_new_tokens": a.frames, "torch": torch.__version__, "librosa": librosa.__version__,
        "recording": os.path.basename(ref_path), "recording_16k_stereo": os.path.basename(stereo_path),
        "n_samples": int(audio.shape[0]), "sample_rate": SAMPLE_RATE,
        "mel": {"n_mels": n_mels, "n_frames": n_frames, "sum": float(mel.astype(np.float64).sum()),
                "abs_sum": float(np.abs(mel.astype(np.float64)).sum()), "min": float(mel.min()),
                "max": float(mel.max()), "picks": [[f, m, float(mel[m, f])] for f, m in picks]},
        "embedding": [float(v) for v in embedding],
        "embedding_16k_stereo": [float(v) for v in embedding_16k],
        "items": items,
    }
    with open(os.path.join(a.out_dir, "speaker_fixture.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"mel {n_mels}x{n_frames}, |embedding| max {np.abs(embedding).max():.4g}, 16k-path max diff "
          f"{np.abs(embedding - embedding_16k).max():.3g}", file=sys.stderr)


if __name__ == "__main__":
    main()
