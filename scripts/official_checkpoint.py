"""Loads a checkpoint in the official layout into the official `qwen_tts` talker model (shared by the
reference scripts in this folder; `qwen_tts` must be importable first)."""
import json, os, sys


def load_official_model(model_dir, device, dtype):
    """Qwen3TTSForConditionalGeneration with model_dir's config and weights, in eval mode on device/dtype.
    Exits naming the first missing tensors when the checkpoint lacks some."""
    from safetensors.torch import load_file
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration

    cfg_json = json.load(open(os.path.join(model_dir, "config.json")))
    for k in ("architectures", "dtype", "torch_dtype", "transformers_version", "model_type"):
        cfg_json.pop(k, None)
    cfg_json.get("speaker_encoder_config", {}).pop("model_type", None)
    model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**cfg_json)).eval()
    res = model.load_state_dict(load_file(os.path.join(model_dir, "model.safetensors")), strict=False)
    if res.missing_keys:
        sys.exit(f"missing tensors: {res.missing_keys[:5]}")
    return model.to(device, dtype)
