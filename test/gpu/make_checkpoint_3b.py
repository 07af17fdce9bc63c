#!/usr/bin/env python3
"""Writes a random checkpoint with the exact Qwen2.5-VL-3B (Rex-Omni) shapes.

  python3 test/gpu/make_checkpoint_3b.py /tmp/rex-omni-3b

No downloads: the published 3B config.json (transformers 4.x flat layout) is
written out, transformers builds the model from it with random weights
(`_from_config`, bf16, torch.manual_seed(0), the config's initializer_range)
and `save_pretrained` writes config.json, generation_config.json and the
safetensors (about 7.5 GB). The tokenizer is not written here: the TS side
(test/fixtures/gpu-harness.ts ensure3bCheckpoint) adds the Rex-Omni-style
tokenizer.json, since the Python side is only ever fed token ids.

When <dir>/.rex-omni-3b-complete exists with the current CHECKPOINT_VERSION
the script does nothing. Otherwise it builds into <dir>.staging-<pid> and
renames that to <dir> at the end, so an interrupted run never leaves a
half-written checkpoint that looks complete.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import struct
import sys
import time
import traceback

CHECKPOINT_VERSION = 1
MARKER = ".rex-omni-3b-complete"

# Qwen2.5-VL-3B-Instruct's config.json (the layout of the published Rex-Omni checkpoint).
CONFIG = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "sliding_window": 32768,
    "use_sliding_window": False,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 151936,
    "vision_config": {
        "model_type": "qwen2_5_vl",
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "in_channels": 3,
        "out_hidden_size": 2048,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "initializer_range": 0.02,
    },
}

PREPROCESSOR_CONFIG = {
    "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
    "image_processor_type": "Qwen2VLImageProcessor", "max_pixels": 2007040, "min_pixels": 12544,
    "merge_size": 2, "patch_size": 14, "temporal_patch_size": 2, "resample": 3, "rescale_factor": 0.00392156862745098,
}

# Files a checkpoint folder may hold; anything else there and we refuse to delete the folder.
KNOWN_FILES = {"config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json",
               "tokenizer_config.json", "model.safetensors.index.json", MARKER, "chat_template.json",
               "chat_template.jinja", "special_tokens_map.json"}

# Expected (file-name) shapes, both tensor-name layouts accepted.
EXPECTED = {
    "patch_embed": ([1280, 3, 2, 14, 14], ["visual.patch_embed.proj.weight", "model.visual.patch_embed.proj.weight"]),
    "embed": ([151936, 2048], ["model.embed_tokens.weight", "model.language_model.embed_tokens.weight"]),
    "q35": ([2048, 2048], ["model.layers.35.self_attn.q_proj.weight",
                           "model.language_model.layers.35.self_attn.q_proj.weight"]),
    "k35_bias": ([256], ["model.layers.35.self_attn.k_proj.bias", "model.language_model.layers.35.self_attn.k_proj.bias"]),
    "down35": ([2048, 11008], ["model.layers.35.mlp.down_proj.weight",
                               "model.language_model.layers.35.mlp.down_proj.weight"]),
    "vis_qkv31": ([3840, 1280], ["visual.blocks.31.attn.qkv.weight", "model.visual.blocks.31.attn.qkv.weight"]),
    "vis_gate31": ([3420, 1280], ["visual.blocks.31.mlp.gate_proj.weight", "model.visual.blocks.31.mlp.gate_proj.weight"]),
    "merger0": ([5120, 5120], ["visual.merger.mlp.0.weight", "model.visual.merger.mlp.0.weight"]),
    "merger2": ([2048, 5120], ["visual.merger.mlp.2.weight", "model.visual.merger.mlp.2.weight"]),
}


def log(msg: str) -> None:
    print(f"[make_checkpoint_3b {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_header(path: str) -> dict:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return header


def marker_ok(out: str) -> bool:
    path = os.path.join(out, MARKER)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            m = json.load(fh)
    except Exception as e:  # noqa: BLE001
        log(f"marker {path} unreadable ({e}); regenerating")
        return False
    if m.get("version") != CHECKPOINT_VERSION:
        log(f"marker version {m.get('version')} != {CHECKPOINT_VERSION}; regenerating")
        return False
    for fn in m.get("files", []):
        if not os.path.isfile(os.path.join(out, fn)):
            log(f"marker lists {fn} but it is missing; regenerating")
            return False
    return True


def safe_to_delete(path: str) -> bool:
    if not os.path.isdir(path):
        return True
    for name in os.listdir(path):
        if name in KNOWN_FILES or name.endswith(".safetensors"):
            continue
        log(f"refusing to delete {path}: it holds {name!r}, which is not a checkpoint file")
        return False
    return True


def build(staging: str) -> dict:
    import torch
    import transformers
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    log(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(CONFIG, fh, indent=2)
    cfg = AutoConfig.from_pretrained(staging)
    text = getattr(cfg, "text_config", None) or cfg
    vis = cfg.vision_config
    got = {
        "text.num_hidden_layers": text.num_hidden_layers, "text.hidden_size": text.hidden_size,
        "text.num_attention_heads": text.num_attention_heads, "text.num_key_value_heads": text.num_key_value_heads,
        "text.intermediate_size": text.intermediate_size, "text.vocab_size": text.vocab_size,
        "vision.depth": vis.depth, "vision.hidden_size": vis.hidden_size, "vision.num_heads": vis.num_heads,
        "vision.intermediate_size": vis.intermediate_size, "vision.out_hidden_size": vis.out_hidden_size,
        "vision.fullatt_block_indexes": list(vis.fullatt_block_indexes),
        "tie_word_embeddings": getattr(cfg, "tie_word_embeddings", None),
        "text.tie_word_embeddings": getattr(text, "tie_word_embeddings", None),
    }
    log(f"config as transformers reads it: {json.dumps(got)}")
    want = {"text.num_hidden_layers": 36, "text.hidden_size": 2048, "text.num_attention_heads": 16,
            "text.num_key_value_heads": 2, "text.intermediate_size": 11008, "text.vocab_size": 151936,
            "vision.depth": 32, "vision.hidden_size": 1280, "vision.num_heads": 16, "vision.intermediate_size": 3420,
            "vision.out_hidden_size": 2048, "vision.fullatt_block_indexes": [7, 15, 23, 31]}
    bad = {k: (got[k], v) for k, v in want.items() if got[k] != v}
    if bad:
        raise RuntimeError(f"transformers read the config differently (got, want): {bad}")
    rope = getattr(text, "rope_parameters", None) or getattr(text, "rope_scaling", None)
    log(f"rope settings as read: {rope}")

    torch.manual_seed(0)
    t0 = time.time()
    model = None
    errors = []
    for kw in ("dtype", "torch_dtype"):
        try:
            model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, **{kw: torch.bfloat16})
            log(f"_from_config({kw}=bfloat16) in {time.time() - t0:.1f}s")
            break
        except TypeError as e:
            errors.append(f"{kw}: {e}")
    if model is None:
        raise RuntimeError("Qwen2_5_VLForConditionalGeneration._from_config failed: " + " | ".join(errors))
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    log(f"{n_params / 1e9:.3f}B parameters, dtypes {dtypes}")
    if dtypes != ["torch.bfloat16"]:
        log(f"WARNING: _from_config gave {dtypes}; casting to bfloat16")
        model = model.to(torch.bfloat16)
    if not (3.6e9 < n_params < 3.9e9):
        raise RuntimeError(f"expected about 3.75B parameters but got {n_params}")
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = emb.data_ptr() == head.data_ptr()
    log(f"lm_head tied to embed_tokens: {tied}; embed std {emb.float().std().item():.5f}")
    if not tied:
        raise RuntimeError("lm_head is not tied to embed_tokens (tie_word_embeddings true was expected)")

    t1 = time.time()
    model.save_pretrained(staging)
    log(f"save_pretrained in {time.time() - t1:.1f}s")
    del model

    with open(os.path.join(staging, "preprocessor_config.json"), "w", encoding="utf-8") as fh:
        json.dump(PREPROCESSOR_CONFIG, fh, indent=2)

    # --- what was written -------------------------------------------------------------
    files = sorted(os.listdir(staging))
    log(f"files: {[(f, os.path.getsize(os.path.join(staging, f))) for f in files]}")
    st_files = [f for f in files if f.endswith(".safetensors")]
    if not st_files:
        raise RuntimeError("save_pretrained wrote no .safetensors file")
    tensors = {}
    for f in st_files:
        for k, v in read_header(os.path.join(staging, f)).items():
            tensors[k] = v
    n_bytes = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in tensors.values())
    st_dtypes = sorted({v["dtype"] for v in tensors.values()})
    names = sorted(tensors)
    log(f"{len(tensors)} tensors, {n_bytes / 1e9:.3f} GB, dtypes {st_dtypes}; first names {names[:3]}, last {names[-3:]}")
    for what, (shape, cands) in EXPECTED.items():
        hit = next((c for c in cands if c in tensors), None)
        if hit is None:
            raise RuntimeError(f"tensor {what} not found under any of {cands}")
        if tensors[hit]["shape"] != shape:
            raise RuntimeError(f"tensor {hit} has shape {tensors[hit]['shape']}, expected {shape}")
    layout = "flat (visual.*, model.layers.*)" if "model.embed_tokens.weight" in tensors else "nested (model.language_model.*)"
    log(f"tensor-name layout: {layout}; lm_head stored: {'lm_head.weight' in tensors}")
    with open(os.path.join(staging, "config.json"), encoding="utf-8") as fh:
        saved = json.load(fh)
    log(f"saved config.json: top-level keys {sorted(saved)}")
    if "text_config" in saved:
        tc = saved["text_config"]
        log(f"  nested text_config keys {sorted(tc)}")
        log(f"  text_config rope: rope_scaling={tc.get('rope_scaling')} rope_parameters={tc.get('rope_parameters')} "
            f"rope_theta={tc.get('rope_theta')}")
    log(f"  tie_word_embeddings top={saved.get('tie_word_embeddings')} "
        f"text={saved.get('text_config', {}).get('tie_word_embeddings')}; dtype={saved.get('dtype')} "
        f"torch_dtype={saved.get('torch_dtype')}; vision_config keys {sorted(saved.get('vision_config', {}))}")
    return {"version": CHECKPOINT_VERSION, "parameters": n_params, "tensors": len(tensors), "bytes": n_bytes,
            "tensor_layout": layout, "config_layout": "nested" if "text_config" in saved else "flat",
            "files": [f for f in sorted(os.listdir(staging)) if f != MARKER],
            "seed": 0, "torch": torch.__version__, "transformers": transformers.__version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__)
        return 2
    out = os.path.abspath(argv[1])
    if marker_ok(out):
        log(f"{out} is complete (marker {MARKER}, version {CHECKPOINT_VERSION}): nothing to do")
        return 0
    if not safe_to_delete(out):
        return 2
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    free = shutil.disk_usage(parent).free
    log(f"building the 3B checkpoint into {out} ({free / 2**30:.1f} GiB free at {parent})")
    if free < 16 * 2**30:
        log("WARNING: less than 16 GiB free; the checkpoint needs about 7.5 GB")
    staging = f"{out}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    t0 = time.time()
    try:
        info = build(staging)
        info["seconds"] = round(time.time() - t0, 1)
        with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.rename(staging, out)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        log(f"FAILED: {type(e).__name__}: {e}")
        shutil.rmtree(staging, ignore_errors=True)
        return 1
    log(f"done in {time.time() - t0:.1f}s: {out} ({info['bytes'] / 1e9:.2f} GB, {info['tensors']} tensors, "
        f"config {info['config_layout']}, tensors {info['tensor_layout']})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
