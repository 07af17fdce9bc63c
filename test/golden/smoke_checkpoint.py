#!/usr/bin/env python3
"""Makes a random tiny Qwen2.5-VL checkpoint with torch + tokenizers, laid out like the one
test/fixtures/tiny-checkpoint.ts generates (flat 4.x config.json, 4.x tensor names, bf16
model.safetensors, tied embeddings, byte-level tokenizer.json with the Qwen special tokens at
their real ids). Only for smoke-testing make_golden.py where the TS generator isn't built;
the real goldens come from the TS checkpoint.

  python3 test/golden/smoke_checkpoint.py /tmp/smoke-ckpt
"""

from __future__ import annotations

import json
import os
import sys

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
            "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
    "tie_word_embeddings": True, "hidden_act": "silu", "attention_dropout": 0.0,
    "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
    "vision_end_token_id": 151653, "vision_token_id": 151654, "bos_token_id": 151643, "eos_token_id": 151645,
    "torch_dtype": "bfloat16", "use_cache": True, "sliding_window": 32768, "use_sliding_window": False,
    "vision_config": {"depth": 4, "hidden_size": 64, "num_heads": 4, "intermediate_size": 128, "hidden_act": "silu",
                      "fullatt_block_indexes": [1, 3], "patch_size": 14, "spatial_merge_size": 2,
                      "temporal_patch_size": 2, "window_size": 112, "out_hidden_size": 128, "in_chans": 3,
                      "in_channels": 3, "tokens_per_second": 2, "model_type": "qwen2_5_vl"},
}


def make_tokenizer(path: str) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for i in range(len(vocab), 151643):
        vocab[f"filler{i}"] = i
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    tok.save(path)
    got = {s: tok.token_to_id(s) for s in SPECIALS}
    assert got["<|image_pad|>"] == 151655 and got["<|im_end|>"] == 151645, got


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/smoke-ckpt"
    os.makedirs(out, exist_ok=True)
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(CONFIG, fh, indent=2)
    torch.manual_seed(1234)
    cfg = AutoConfig.from_pretrained(out)
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.float32) \
        if hasattr(Qwen2_5_VLForConditionalGeneration, "_from_config") else Qwen2_5_VLForConditionalGeneration(cfg)
    sd = {}
    g = torch.Generator().manual_seed(99)
    for k, v in model.state_dict().items():
        if k == "lm_head.weight":
            continue
        name = k
        if name.startswith("model.language_model."):
            name = "model." + name[len("model.language_model."):]
        elif name.startswith("model.visual."):
            name = name[len("model."):]
        if v.ndim == 1 and "norm" in k or k.endswith("ln_q.weight"):
            t = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            fan_in = v.shape[-1] if v.ndim >= 2 else 64
            if v.ndim == 5:
                fan_in = v[0].numel()
            t = torch.randn(v.shape, generator=g) * (1.0 / fan_in ** 0.5)
            if "embed_tokens" in k:
                t = torch.randn(v.shape, generator=g)
        sd[name] = t.to(torch.bfloat16).contiguous()
    save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    make_tokenizer(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as fh:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "model_max_length": 32768}, fh)
    with open(os.path.join(out, "preprocessor_config.json"), "w") as fh:
        json.dump({"image_processor_type": "Qwen2VLImageProcessor", "min_pixels": 3136, "max_pixels": 12845056,
                   "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
                   "image_mean": [0.48145466, 0.4578275, 0.40821073],
                   "image_std": [0.26862954, 0.26130258, 0.27577711]}, fh)
    print(f"smoke checkpoint in {out}: {len(sd)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
