#!/usr/bin/env python3
"""Reference runs of the official Qwen3-TTS implementation, in the format `qtts parity --reference` reads.

Runs the official `qwen_tts` code (pip install qwen-tts, which pins transformers 4.57.3; or a source tree via
--qwen-tts-src) on a checkpoint in the official layout, greedy talker and code predictor, repetition penalty
1.0, and writes per text: input_ids, codes [frames][16], talker logits (raw codec_head output) at every step or
the first --keep-logits, and the official decoder's waveform for those codes.

  python3 scripts/make_reference.py --model DIR --texts "Hello there." --language english --frames 32 --out ref.json

--teacher-force-logits dumps the logits of every step (parity's teacher-forced comparison then covers all of them).
--dtype bf16 runs PyTorch's bf16 path (rounds activations; do not expect exact codes against an fp32 engine).
"""
import argparse, json, os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_checkpoint import load_official_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json, model.safetensors, speech_tokenizer/)")
    ap.add_argument("--texts", nargs="+", required=True)
    ap.add_argument("--language", default="auto")
    ap.add_argument("--frames", type=int, default=32, help="max_new_tokens (yields at most frames-1 frames)")
    ap.add_argument("--keep-logits", type=int, default=3, help="logit rows to keep per item (-1: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--non-streaming-text", action="store_true")
    ap.add_argument("--qwen-tts-src", default="", help="folder holding qwen_tts/ (default: the installed package)")
    ap.add_argument("--stubs", default="", help="folder of stub modules for unused audio imports (e.g. torchaudio)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    for p in (a.stubs, a.qwen_tts_src):
        if p:
            sys.path.insert(0, p)

    import torch
    from safetensors.torch import load_file
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2DecoderConfig
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import Qwen3TTSTokenizerV2Decoder
    from transformers import AutoTokenizer

    dt = torch.float32 if a.dtype == "fp32" else torch.bfloat16
    model = load_official_model(a.model, a.device, dt)

    st = json.load(open(os.path.join(a.model, "speech_tokenizer", "config.json")))
    dec = Qwen3TTSTokenizerV2Decoder(Qwen3TTSTokenizerV2DecoderConfig(**st["decoder_config"])).eval()
    sd = {k[len("decoder."):]: v for k, v in load_file(os.path.join(a.model, "speech_tokenizer", "model.safetensors")).items()
          if k.startswith("decoder.")}
    dec.load_state_dict(sd)
    dec = dec.to(a.device, torch.float32)
    tok = AutoTokenizer.from_pretrained(a.model)

    out = {"model": os.path.abspath(a.model), "dtype": a.dtype, "frames": a.frames, "torch": torch.__version__,
           "transformers": __import__("transformers").__version__, "device_name": a.device, "items": []}
    for text in a.texts:
        ids = tok(f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")["input_ids"].to(a.device)
        captured = []
        keep = a.keep_logits if a.keep_logits >= 0 else 1 << 30
        hook = model.talker.codec_head.register_forward_hook(
            lambda m, i, o: captured.append(o[0, -1].float().cpu()) if len(captured) < keep else None)
        t0 = time.time()
        with torch.inference_mode():
            codes, _ = model.generate(input_ids=[ids], languages=[a.language], max_new_tokens=a.frames, do_sample=False,
                                      subtalker_dosample=False, repetition_penalty=1.0, non_streaming_mode=a.non_streaming_text)
            c = codes[0]
            wav = dec.chunked_decode(c.transpose(0, 1).unsqueeze(0).clamp(min=0)).squeeze().float().cpu()
        hook.remove()
        out["items"].append({"text": text, "language": a.language, "non_streaming_text": a.non_streaming_text,
                             "input_ids": ids[0].tolist(), "codes": c.tolist(), "n_frames": int(c.shape[0]),
                             "talker_logits": [l.tolist() for l in captured[: int(c.shape[0])]],
                             "wav": wav.tolist(), "wav_len": int(wav.numel()), "wav_rms": float(wav.pow(2).mean().sqrt()),
                             "seconds": time.time() - t0})
        print(f"{text[:40]!r}: {int(c.shape[0])} frames", file=sys.stderr)
    json.dump(out, open(a.out, "w"))


if __name__ == "__main__":
    main()
