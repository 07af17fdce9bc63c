#!/usr/bin/env python3
"""Writes test/fixtures/golden/: what transformers computes for the tiny Rex-Omni checkpoint.

Usage (device machine, see test/golden/README.md):
  python3 test/golden/make_golden.py --checkpoint /tmp/tiny --images <dir with cafe.jpg ...> \
      --fixtures test/fixtures/images --out test/fixtures/golden
  python3 test/golden/make_golden.py --preprocess-only --images ... --fixtures ... --out ...

--preprocess-only needs only Pillow + numpy (no torch / transformers import).
Layout of the output: test/golden/FORMAT.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import PIL  # noqa: E402

import golden_pre as gp  # noqa: E402

IMAGE_PAD_TEXT = "<|image_pad|>"
SYSTEM_PROMPT = "You are a helpful assistant"
IM_END_ID = 151645
PAD_ID = 151643
MAX_NEW_TOKENS = 32
REPETITION_PENALTY = 1.05
FULL_VISION_MAX_TOKENS = 400
P = 28 * 28

DETECT = "Detect {}. Output the bounding box coordinates in [x0, y0, x1, y1] format."

SHARED_IMAGES = ["animal.png", "boxes.jpg", "boys.jpg", "cafe.jpg", "cup.png", "gui.png", "layout.jpg",
                 "ocr.png", "person.png", "pigeons.jpeg"]

# name, image spec, exif_transpose, min_pixels, max_pixels
PREPROCESS_CASES: list[tuple[str, str, bool, int, int]] = [
    *[(f"shared_{n.replace('.', '_')}", f"shared:{n}", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT)
      for n in SHARED_IMAGES],
    ("syn_10x10_min", "synthetic:10x10:1", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("syn_4000x3000_max", "synthetic:4000x3000:2", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("syn_3000x40_wide", "synthetic:3000x40:3", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    # 50x3500 at the default budget: width grows 50->56, height stays 3500 (horizontal pass only).
    ("syn_50x3500_tall", "synthetic:50x3500:4", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    # The same image with a smaller budget, so that both width and height shrink (28x2632).
    ("syn_50x3500_tall_shrink", "synthetic:50x3500:4", False, gp.MIN_PIXELS_DEFAULT, 128 * P),
    ("syn_280x280_exact", "synthetic:280x280:5", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("syn_301x199_round", "synthetic:301x199:6", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("syn_1000x1000_max256", "synthetic:1000x1000:7", False, gp.MIN_PIXELS_DEFAULT, 256 * P),
    ("syn_57x43_min64", "synthetic:57x43:8", False, 64 * P, gp.MAX_PIXELS_DEFAULT),
    ("fixture_exif_rot6_transposed", "fixture:exif_rot6.jpg", True, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("fixture_exif_rot6_raw", "fixture:exif_rot6.jpg", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("fixture_rgba", "fixture:rgba.png", False, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
    ("fixture_rgba_transposed", "fixture:rgba.png", True, gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT),
]

# name, image spec, task, prompt, min_pixels, max_pixels, store full vision tensor
MODEL_CASES: list[tuple[str, str, str, str, int, int, bool]] = [
    ("cafe_detect", "shared:cafe.jpg", "detection", DETECT.format("person, cup"),
     gp.MIN_PIXELS_DEFAULT, 64 * P, True),
    ("boys_point", "shared:boys.jpg", "pointing", "Point to boy.", gp.MIN_PIXELS_DEFAULT, 100 * P, True),
    ("gui_grounding", "shared:gui.png", "gui_grounding", 'Detect element "search bar"" in the image.',
     gp.MIN_PIXELS_DEFAULT, 160 * P, True),
    ("syn_20x20_min", "synthetic:20x20:11", "detection", DETECT.format("objects"),
     gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT, True),
    ("syn_224x224_window_multiple", "synthetic:224x224:12", "detection", DETECT.format("objects"),
     gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT, True),
    ("syn_308x196_window_partial", "synthetic:308x196:13", "pointing", "Point to objects.",
     gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT, True),
    ("syn_60x700_tall", "synthetic:60x700:14", "detection", DETECT.format("objects"),
     gp.MIN_PIXELS_DEFAULT, 200 * P, True),
    ("layout_ocr_default", "shared:layout.jpg", "ocr_box", "Detect all text line and recognize them.",
     gp.MIN_PIXELS_DEFAULT, gp.MAX_PIXELS_DEFAULT, False),
]

WARNINGS: list[str] = []


def log(msg: str) -> None:
    print(msg, flush=True)


def warn(msg: str) -> None:
    WARNINGS.append(msg)
    print(f"\n!!!!! WARNING: {msg}\n", flush=True)


def chat_text(prompt: str) -> str:
    return (f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|>{IMAGE_PAD_TEXT}<|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n")


_SKIPPED = object()


def attempt_case(kind: str, name: str, skipped: dict, fn):
    """Runs one case; a missing image or any failure is logged, recorded in
    `skipped` and returns _SKIPPED, so the other cases still run."""
    try:
        return fn()
    except FileNotFoundError as e:
        warn(f"{kind} case {name}: image missing ({e}); skipped")
        skipped[name] = f"missing: {e}"
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        warn(f"{kind} case {name} failed: {type(e).__name__}: {e}")
        skipped[name] = f"{type(e).__name__}: {e}"
    return _SKIPPED


# ---------------------------------------------------------------------------
# Preprocess cases
# ---------------------------------------------------------------------------

def run_preprocess_cases(args, checker) -> tuple[list[str], dict]:
    done, skipped = [], {}
    for name, spec, exif, mn, mx in PREPROCESS_CASES:
        t0 = time.time()
        pre = attempt_case("preprocess", name, skipped,
                           lambda: gp.preprocess(spec, args.images, args.fixtures, exif, mn, mx))
        if pre is _SKIPPED:
            continue
        for w in pre.warnings:
            warn(w)
        rec = {"case": name, **pre.record}
        if checker is not None:
            res = checker.check(pre, mn, mx)
            rec["processor_max_abs_diff"] = res["max_abs_diff"]
            rec["pixel_values"]["processor_max_abs_diff"] = res["max_abs_diff"]
            rec["processor"] = res
            check_processor_diff(name, res)
        n = gp.write_json(os.path.join(args.out, "preprocess", f"{name}.json"), rec)
        log(f"[preprocess] {name:32s} {spec:26s} src {rec['source_size']} -> {rec['resized_size']} "
            f"grid {rec['grid_thw']}  proc_diff {rec['processor_max_abs_diff']}  {n/1024:.0f} KiB "
            f"{time.time()-t0:.2f}s")
        done.append(name)
    return done, skipped


def check_processor_diff(name: str, res: dict) -> None:
    d = res.get("max_abs_diff")
    if d is None:
        warn(f"{name}: no transformers image processor could be run: {json.dumps(res.get('per_class'))[:500]}")
    elif d > 1e-5:
        warn(f"{name}: transformers image processor ({res['primary']}) differs from the numpy path by {d:g} "
             f"(> 1e-5) — the stored values are the numpy path; investigate before trusting the goldens")


# ---------------------------------------------------------------------------
# Model cases
# ---------------------------------------------------------------------------

def load_model(ckpt: str):
    import torch
    import transformers

    cls = getattr(transformers, "Qwen2_5_VLForConditionalGeneration")
    info = None
    model = None
    errors = []
    for dtype_kw in ("dtype", "torch_dtype"):
        try:
            res = cls.from_pretrained(ckpt, **{dtype_kw: torch.float32}, attn_implementation="eager",
                                      output_loading_info=True)
            model, info = res if isinstance(res, tuple) else (res, None)
            log(f"[model] loaded with {dtype_kw}=float32, attn_implementation=eager")
            break
        except TypeError as e:
            errors.append(f"{dtype_kw}: {e}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{dtype_kw}: {type(e).__name__}: {e}")
            traceback.print_exc()
    if model is None:
        raise RuntimeError("could not load the model: " + " | ".join(errors))
    model = model.float().eval().to("cpu")
    load_info = {}
    if info:
        for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            v = info.get(k) if isinstance(info, dict) else getattr(info, k, None)
            if v is not None:
                load_info[k] = [str(x) for x in list(v)][:50]
        missing = [k for k in load_info.get("missing_keys", []) if "lm_head" not in k]
        if missing:
            warn(f"from_pretrained reports missing keys (randomly initialised!): {missing[:10]}")
        if load_info.get("unexpected_keys"):
            warn(f"from_pretrained reports unexpected keys (ignored!): {load_info['unexpected_keys'][:10]}")
    attn_impl = getattr(model.config, "_attn_implementation", None)
    load_info["attn_implementation"] = attn_impl
    if attn_impl not in (None, "eager"):
        warn(f"attention implementation is {attn_impl!r}, not eager")
    return model, load_info


def run_model_cases(args, checker, manifest: dict) -> tuple[list[str], dict, list[dict]]:
    import torch
    import golden_model as gm

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        torch.set_float32_matmul_precision("highest")
    except Exception:  # noqa: BLE001
        pass
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)

    ckpt = args.checkpoint
    with open(os.path.join(ckpt, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    text_cfg = cfg.get("text_config") or cfg
    hidden = int(text_cfg.get("hidden_size") or cfg["hidden_size"])
    image_token_id = int(cfg.get("image_token_id", 151655))
    vocab = int(text_cfg.get("vocab_size") or cfg.get("vocab_size"))

    tok = load_tokenizer(ckpt)
    specials = special_ids_from_tokenizer_json(os.path.join(ckpt, "tokenizer.json"))
    manifest["special_token_ids"] = specials
    if specials.get("<|image_pad|>") != image_token_id:
        warn(f"tokenizer.json <|image_pad|> id {specials.get('<|image_pad|>')} != config image_token_id {image_token_id}")
    if specials.get("<|im_end|>") != IM_END_ID:
        warn(f"tokenizer.json <|im_end|> id {specials.get('<|im_end|>')} != {IM_END_ID}")

    t0 = time.time()
    model, load_info = load_model(ckpt)
    log(f"[model] load {time.time()-t0:.1f}s; {sum(p.numel() for p in model.parameters())} parameters")
    parts = gm.find_parts(model)
    weights = gm.verify_weights(model, ckpt)
    log(f"[model] weight check: {json.dumps({k: v for k, v in weights.items() if k != 'file'})[:800]}")
    if weights.get("mismatched") or weights.get("unmatched_file_keys") or weights.get("error"):
        warn("loaded weights differ from model.safetensors (see manifest.model_load.weight_check)")
    not_in_file = [k for k in weights.get("model_keys_not_in_file", []) if "lm_head" not in k]
    if not_in_file:
        warn(f"model parameters/buffers not loaded from the file: {not_in_file[:10]}")
    manifest["model_load"] = {**load_info, "weight_check": weights, "model_class": type(model).__name__,
                              "visual_class": type(parts["visual"]).__name__,
                              "text_class": type(parts["text"]).__name__}

    fwd_has_mm = gm.accepts_kw(model.forward, "mm_token_type_ids")
    manifest["model_load"]["forward_accepts_mm_token_type_ids"] = fwd_has_mm
    log(f"[model] forward accepts mm_token_type_ids: {fwd_has_mm}")

    done, skipped, summary = [], {}, []
    hooks = gm.Hooks(parts)
    try:
        for case in MODEL_CASES:
            name = case[0]
            t0 = time.time()
            result = attempt_case("model", name, skipped,
                                  lambda: run_one_model_case(args, case, model, parts, hooks, tok, checker, hidden,
                                                             image_token_id, vocab, fwd_has_mm))
            if result is _SKIPPED:
                continue
            rec, summ = result
            n = gp.write_json(os.path.join(args.out, "model", f"{name}.json"), rec)
            summ["seconds"] = round(time.time() - t0, 2)
            summ["kib"] = round(n / 1024)
            log(f"[model] {name}: done in {summ['seconds']}s, {summ['kib']} KiB")
            summary.append(summ)
            done.append(name)
    finally:
        hooks.remove()
    return done, skipped, summary


def load_tokenizer(ckpt: str):
    path = os.path.join(ckpt, "tokenizer.json")
    fast = raw = None
    try:
        from transformers import PreTrainedTokenizerFast
        fast = PreTrainedTokenizerFast(tokenizer_file=path)
    except Exception as e:  # noqa: BLE001
        warn(f"PreTrainedTokenizerFast(tokenizer_file=...) failed: {type(e).__name__}: {e}; using tokenizers")
    try:
        from tokenizers import Tokenizer
        raw = Tokenizer.from_file(path)
    except Exception as e:  # noqa: BLE001
        log(f"[tokenizer] tokenizers.Tokenizer unavailable: {e}")
    if fast is None and raw is None:
        raise RuntimeError("no tokenizer could be loaded")

    class Tok:
        def encode(self, text: str) -> list[int]:
            ids_fast = ids_raw = None
            if fast is not None:
                ids_fast = list(fast(text, add_special_tokens=False)["input_ids"])
            if raw is not None:
                ids_raw = list(raw.encode(text, add_special_tokens=False).ids)
            if ids_fast is not None and ids_raw is not None and ids_fast != ids_raw:
                warn("PreTrainedTokenizerFast and tokenizers.Tokenizer disagree; storing PreTrainedTokenizerFast's")
            return ids_fast if ids_fast is not None else ids_raw

        def decode(self, ids: list[int]) -> str:
            if fast is not None:
                return fast.decode(ids, skip_special_tokens=False)
            return raw.decode(ids, skip_special_tokens=False)

    return Tok()


def special_ids_from_tokenizer_json(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        tj = json.load(fh)
    want = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
            "<|box_start|>", "<|box_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"]
    out = {}
    for t in tj.get("added_tokens", []):
        if t.get("content") in want:
            out[t["content"]] = int(t["id"])
    return out


def tensor_record(t, last_position: bool) -> dict:
    a = t.numpy()
    if last_position:
        full_shape = list(a.shape)
        a = a.reshape(-1, a.shape[-1])[-1]
        st = gp.stats(a)
        return {"shape": st["shape"], "full_shape": full_shape, "position": full_shape[-2] - 1 if len(full_shape) >= 2 else 0,
                "sum": st["sum"], "abs_sum": st["abs_sum"], "head": gp.flist(a[:16]), "values": gp.flist(a)}
    st = gp.stats(a)
    return {"shape": st["shape"], "sum": st["sum"], "abs_sum": st["abs_sum"], "max_abs": st["max_abs"],
            "head": gp.flist(a.reshape(-1)[:16])}


def run_one_model_case(args, case, model, parts, hooks, tok, checker, hidden, image_token_id, vocab, fwd_has_mm):
    import torch
    import golden_model as gm

    name, spec, task, prompt, mn, mx, full_vision = case
    pre = gp.preprocess(spec, args.images, args.fixtures, False, mn, mx, pixel_rows=1)
    for w in pre.warnings:
        warn(w)
    rec = {"case": name, **pre.record}
    if checker is not None:
        res = checker.check(pre, mn, mx)
        rec["processor_max_abs_diff"] = res["max_abs_diff"]
        rec["pixel_values"]["processor_max_abs_diff"] = res["max_abs_diff"]
        rec["processor"] = res
        check_processor_diff(name, res)
    _, gh, gw = pre.grid_thw
    n_img = gh * gw // 4
    text = chat_text(prompt)
    ids0 = tok.encode(text)
    pads = [i for i, t in enumerate(ids0) if t == image_token_id]
    if len(pads) != 1:
        raise RuntimeError(f"expected exactly one image pad token in the tokenized chat, found {len(pads)}")
    ids = ids0[:pads[0]] + [image_token_id] * n_img + ids0[pads[0] + 1:]
    n = len(ids)
    rec.update({"task": task, "prompt": prompt, "text": text, "text_ids": ids0, "input_ids": ids,
                "image_token_count": n_img, "image_token_start": pads[0]})
    log(f"[model] {name}: {spec} grid {pre.grid_thw} -> {n_img} image tokens, {n} prompt tokens")

    input_ids = torch.tensor([ids], dtype=torch.long)
    attn = torch.ones_like(input_ids)
    mm_types = (input_ids == image_token_id).to(torch.int32)
    pixel_values = torch.from_numpy(pre.pixel_values.copy()).float()
    grid_thw = torch.tensor([pre.grid_thw], dtype=torch.long)
    extra = {"mm_token_type_ids": mm_types} if fwd_has_mm else {}
    inner = parts["inner"]

    def reset_rope():
        if hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None

    with torch.no_grad():
        # --- vision output --------------------------------------------------------------
        vis, how = gm.vision_features(model, parts, pixel_values, grid_thw, n_img, hidden)
        vis = vis.detach().float().cpu().numpy()
        st = gp.stats(vis)
        vrec = {"shape": st["shape"], "max_abs": st["max_abs"], "sum": st["sum"], "abs_sum": st["abs_sum"],
                "how": how, "rows": {"0": gp.flist(vis[0]), str(n_img - 1): gp.flist(vis[-1])}, "file": None}
        if full_vision and n_img <= FULL_VISION_MAX_TOKENS:
            fn = f"{name}.vision.f32"
            np.asarray(vis, dtype="<f4").tofile(os.path.join(args.out, "model", fn))
            vrec["file"] = fn
        rec["vision_output"] = vrec

        # --- expected positions and transformers' get_rope_index ------------------------
        exp_pos = gp.mrope_positions(ids, image_token_id, gh, gw)
        prec = {"expected_first8": exp_pos[:, :8].tolist(), "expected_last8": exp_pos[:, -8:].tolist(),
                "expected_max": int(exp_pos.max())}
        try:
            reset_rope()
            pos, delta = gm.rope_index(inner, input_ids, mm_types, grid_thw, attn)
            pos = pos.detach().cpu().numpy().reshape(3, -1)
            prec.update({"first8": pos[:, :8].tolist(), "last8": pos[:, -8:].tolist(), "max": int(pos.max()),
                         "rope_delta": None if delta is None else int(np.asarray(delta.cpu()).reshape(-1)[0]),
                         "matches_expected": bool(np.array_equal(pos, exp_pos))})
            if not prec["matches_expected"]:
                warn(f"{name}: get_rope_index positions differ from the REXOMNI.md M-RoPE rule")
        except Exception as e:  # noqa: BLE001
            prec["error"] = f"{type(e).__name__}: {e}"
            warn(f"{name}: get_rope_index failed: {prec['error']}")
        rec["position_ids"] = prec

        # --- one full forward with the hooks on ------------------------------------------
        hooks.store.clear()
        hooks.active = True
        reset_rope()
        try:
            out = model(input_ids=input_ids, attention_mask=attn, pixel_values=pixel_values,
                        image_grid_thw=grid_thw, use_cache=False, **extra)
        finally:
            hooks.active = False
        logits_last = out.logits[0, -1].detach().float().cpu().numpy()

        # same forward with our own explicit M-RoPE position ids (guards against a silent 1D fallback)
        checks = {}
        try:
            reset_rope()
            out2 = model(input_ids=input_ids, attention_mask=attn, pixel_values=pixel_values,
                         image_grid_thw=grid_thw, use_cache=False,
                         position_ids=torch.from_numpy(exp_pos).view(3, 1, n), **extra)
            d = float(np.abs(out2.logits[0, -1].float().numpy() - logits_last).max())
            checks["logits_last_vs_explicit_positions_max_abs_diff"] = d
            if d > 1e-4:
                warn(f"{name}: logits with transformers' own positions differ from logits with explicit "
                     f"REXOMNI.md M-RoPE positions by {d:g} — transformers may be using 1D positions "
                     f"(mm_token_type_ids passed: {fwd_has_mm})")
        except Exception as e:  # noqa: BLE001
            checks["explicit_positions_error"] = f"{type(e).__name__}: {e}"
            warn(f"{name}: forward with explicit position_ids failed: {checks['explicit_positions_error']}")

    top = np.argsort(-logits_last, kind="stable")[:50]
    st = gp.stats(logits_last)
    rec["logits_last"] = {"max_abs": st["max_abs"], "sum": st["sum"],
                          "top": [[int(i), gp.f(logits_last[i])] for i in top],
                          "sample_stride": 97, "sample": gp.flist(logits_last[::97])}

    # --- intermediates ----------------------------------------------------------------------
    inter = {}
    s = hooks.store
    for k in ["vision.patch_embed"] + [f"vision.block.{i}" for i in range(len(parts["visual"].blocks))] + ["vision.merger"]:
        if k in s:
            inter[k] = tensor_record(s[k], last_position=False)
        else:
            warn(f"{name}: hook {k} did not fire")
    for k in ["text.embed"] + [f"text.layer.{i}" for i in range(len(parts["text"].layers))] + ["text.final_norm"]:
        if k in s:
            inter[k] = tensor_record(s[k], last_position=True)
        else:
            warn(f"{name}: hook {k} did not fire")
    if "text.embed" in s:
        emb = s["text.embed"].numpy().reshape(n, -1)
        img_rows = emb[np.array(ids) == image_token_id]
        d = float(np.abs(img_rows - vis).max()) if img_rows.shape == vis.shape else None
        checks["vision_output_vs_embed_rows_max_abs_diff"] = d
        if d is None or d > 0:
            warn(f"{name}: vision_output != image rows of inputs_embeds (diff {d})")
        inter["text.embed.first_image_token"] = {"position": pads[0], "head": gp.flist(emb[pads[0], :16])}
    if "vision.merger" in s:
        widx, wlens = gp.window_index(gh, gw)
        merged = s["vision.merger"].numpy()
        if merged.shape == vis.shape:
            rev = merged[np.argsort(widx)]
            d = float(np.abs(rev - vis).max())
            checks["window_order_reverse_max_abs_diff"] = d
            if d > 0:
                warn(f"{name}: merger output un-permuted with our window index != vision output (diff {d})")
        if n_img <= FULL_VISION_MAX_TOKENS:
            rec["vision_window"] = {"index": [int(v) for v in widx], "valid_tokens_per_window": wlens}
        else:
            rec["vision_window"] = {"index_head": [int(v) for v in widx[:64]], "valid_tokens_per_window": wlens}
    rec["intermediates"] = inter

    # --- greedy generation --------------------------------------------------------------------
    greedy = run_greedy(model, inner, input_ids, attn, pixel_values, grid_thw, mm_types, extra, exp_pos,
                        ids, image_token_id, gh, gw, n, tok, name, checks, fwd_has_mm)
    rec["greedy"] = greedy
    rec["checks"] = checks
    summ = {"case": name, "tokens": n, "image_tokens": n_img, "distinct": greedy["distinct"],
            "min_gap": greedy["min_top2_gap"], "stop": greedy["stop_reason"],
            "n_gen": len(greedy["tokens"]),
            "proc_diff": rec.get("processor_max_abs_diff"),
            "pos_ok": rec["position_ids"].get("matches_expected"),
            "tf_diff": greedy.get("teacher_forced", {}).get("processed_max_abs_diff")}
    return rec, summ


def run_greedy(model, inner, input_ids, attn, pixel_values, grid_thw, mm_types, extra, exp_pos,
               ids, image_token_id, gh, gw, n, tok, name, checks, fwd_has_mm) -> dict:
    import torch
    import golden_model as gm

    base = dict(input_ids=input_ids, attention_mask=attn, pixel_values=pixel_values, image_grid_thw=grid_thw,
                max_new_tokens=MAX_NEW_TOKENS, do_sample=False, repetition_penalty=REPETITION_PENALTY,
                eos_token_id=IM_END_ID, pad_token_id=PAD_ID, output_scores=True, return_dict_in_generate=True,
                temperature=None, top_p=None, top_k=None, **extra)
    gen = None
    errors = []
    used = None
    for variant in ({"output_logits": True}, {}):
        try:
            if hasattr(inner, "rope_deltas"):
                inner.rope_deltas = None
            with torch.no_grad():
                gen = model.generate(**base, **variant)
            used = variant
            break
        except Exception as e:  # noqa: BLE001
            errors.append(f"{variant}: {type(e).__name__}: {e}")
            traceback.print_exc()
    if gen is None and extra:
        warn(f"{name}: generate failed with mm_token_type_ids ({errors}); retrying without (positions may be 1D!)")
        base.pop("mm_token_type_ids", None)
        with torch.no_grad():
            gen = model.generate(**base)
        used = {"without_mm_token_type_ids": True}
    if gen is None:
        raise RuntimeError("generate failed: " + " | ".join(errors))

    seq = gen.sequences[0].tolist()
    if seq[:n] != ids:
        warn(f"{name}: generate's sequences do not start with the prompt")
    toks = seq[n:]
    scores = [s[0].detach().float().cpu().numpy() for s in gen.scores]
    raw = None
    if getattr(gen, "logits", None) is not None:
        raw = [s[0].detach().float().cpu().numpy() for s in gen.logits]
    gaps, argmax_ok = [], True
    for i, sc in enumerate(scores):
        t2 = np.partition(-sc, 1)[:2]
        gaps.append(gp.f(-t2[0] - (-t2[1])))
        if int(np.argmax(sc)) != toks[i]:
            argmax_ok = False
    stop = "eos" if toks and toks[-1] == IM_END_ID else "length"
    distinct = len(set(toks))
    g = {"max_new_tokens": MAX_NEW_TOKENS, "repetition_penalty": REPETITION_PENALTY, "tokens": toks,
         "text": tok.decode(toks), "stop_reason": stop, "distinct": distinct,
         "min_top2_gap": min(gaps) if gaps else None, "gaps": gaps,
         "top1_scores": [gp.f(sc[t]) for sc, t in zip(scores, toks)],
         "generate_kwargs_extra": {k: v for k, v in used.items()},
         "argmax_of_scores_matches_tokens": argmax_ok}
    if not argmax_ok:
        warn(f"{name}: the argmax of generate's scores is not the generated token at some step")
    if distinct < 16:
        warn(f"{name}: greedy output has only {distinct} distinct tokens (< 16)")
    if gaps and min(gaps) < 1e-3:
        warn(f"{name}: min top1-top2 gap {min(gaps):g} < 1e-3 (a near tie; engines may diverge there)")

    # --- teacher-forced check: full forward over prompt + generated[:-1] with explicit positions ----
    tf = {}
    try:
        full = ids + toks[:-1]
        m = len(full)
        pos = gp.mrope_positions(full, image_token_id, gh, gw)
        ti = torch.tensor([full], dtype=torch.long)
        kw = {}
        if fwd_has_mm:
            kw["mm_token_type_ids"] = (ti == image_token_id).to(torch.int32)
        if hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None
        with torch.no_grad():
            o = model(input_ids=ti, attention_mask=torch.ones_like(ti), pixel_values=pixel_values,
                      image_grid_thw=grid_thw, position_ids=torch.from_numpy(pos).view(3, 1, m), use_cache=False, **kw)
        lg = o.logits[0, n - 1:].detach().float().cpu().numpy()  # one row per generated step
        assert lg.shape[0] == len(toks), (lg.shape, len(toks))
        seen = set(ids)
        proc_d, raw_d, am_ok = 0.0, 0.0 if raw is not None else None, True
        for i in range(len(toks)):
            pen = gm.apply_repetition_penalty(lg[i], seen, REPETITION_PENALTY)
            proc_d = max(proc_d, float(np.abs(pen - scores[i]).max()))
            if raw is not None:
                raw_d = max(raw_d, float(np.abs(lg[i] - raw[i]).max()))
            if int(np.argmax(pen)) != toks[i]:
                am_ok = False
            seen.add(toks[i])
        tf = {"processed_max_abs_diff": proc_d, "raw_max_abs_diff": raw_d, "argmax_matches_tokens": am_ok}
        if proc_d > 1e-3 or (raw_d is not None and raw_d > 1e-3) or not am_ok:
            warn(f"{name}: teacher-forced full forward (REXOMNI.md positions + our repetition penalty) "
                 f"disagrees with generate: {tf}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        tf = {"error": f"{type(e).__name__}: {e}"}
        warn(f"{name}: teacher-forced check failed: {tf['error']}")
    g["teacher_forced"] = tf
    return g


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def versions(with_torch: bool) -> dict:
    v = {"python": platform.python_version(), "numpy": np.__version__, "Pillow": PIL.__version__}
    if with_torch:
        for mod in ("torch", "transformers", "tokenizers", "safetensors"):
            try:
                v[mod] = __import__(mod).__version__
            except Exception as e:  # noqa: BLE001
                v[mod] = f"unavailable: {e}"
    return v


def device_info(with_torch: bool) -> dict:
    d = {"platform": platform.platform(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
         "compute": "cpu, float32"}
    if with_torch:
        import torch
        d["torch_threads"] = torch.get_num_threads()
        d["cuda_available"] = bool(torch.cuda.is_available())
        if torch.cuda.is_available():
            d["cuda_device_unused"] = torch.cuda.get_device_name(0)
    return d


def print_summary(summary: list[dict]) -> None:
    if not summary:
        return
    log("\n==== summary ====")
    log(f"{'case':30s} {'tokens':>6s} {'img':>5s} {'gen':>4s} {'distinct':>8s} {'min_gap':>10s} {'stop':>6s} "
        f"{'pos_ok':>6s} {'tf_diff':>9s} {'proc_diff':>9s} {'sec':>6s}")
    for s in summary:
        mg = f"{s['min_gap']:.3g}" if s["min_gap"] is not None else "-"
        tf = f"{s['tf_diff']:.2g}" if isinstance(s.get("tf_diff"), float) else "-"
        pd = f"{s['proc_diff']:.2g}" if isinstance(s.get("proc_diff"), float) else "-"
        log(f"{s['case']:30s} {s['tokens']:6d} {s['image_tokens']:5d} {s['n_gen']:4d} {s['distinct']:8d} {mg:>10s} "
            f"{s['stop']:>6s} {str(s['pos_ok']):>6s} {tf:>9s} {pd:>9s} {s.get('seconds', 0):6.1f}")


def dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="tiny checkpoint dir (config.json, model.safetensors, tokenizer.json, ...)")
    ap.add_argument("--images", required=True, help="dir holding the shared images (cafe.jpg, ...)")
    ap.add_argument("--fixtures", required=True, help="committed fixture images dir (created if absent)")
    ap.add_argument("--out", required=True, help="output dir (e.g. test/fixtures/golden)")
    ap.add_argument("--preprocess-only", action="store_true", help="no model: needs only Pillow + numpy")
    ap.add_argument("--processor-check", choices=["auto", "on", "off"], default="auto",
                    help="cross-check with transformers' image processor (auto: on unless --preprocess-only)")
    ap.add_argument("--only", default=None, help="comma-separated case names to run (debugging)")
    args = ap.parse_args(argv)

    t_start = time.time()
    with_model = not args.preprocess_only
    if with_model and not args.checkpoint:
        ap.error("--checkpoint is required unless --preprocess-only")
    if args.only:
        keep = set(args.only.split(","))
        PREPROCESS_CASES[:] = [c for c in PREPROCESS_CASES if c[0] in keep]
        MODEL_CASES[:] = [c for c in MODEL_CASES if c[0] in keep]

    log(f"[env] python {platform.python_version()}, numpy {np.__version__}, Pillow {PIL.__version__}")
    if not os.path.isdir(args.images):
        warn(f"--images {args.images} is not a directory: shared-image cases will be skipped")
    os.makedirs(os.path.join(args.out, "preprocess"), exist_ok=True)
    if with_model:
        os.makedirs(os.path.join(args.out, "model"), exist_ok=True)
    fixtures = gp.ensure_fixtures(args.fixtures, log)

    checker = None
    proc_mode = args.processor_check
    if proc_mode == "on" or (proc_mode == "auto" and with_model):
        try:
            import golden_model as gm
            checker = gm.ProcessorChecker()
            if not checker.classes:
                warn(f"no transformers image processor class importable: {checker.errors}")
                checker = None
        except Exception as e:  # noqa: BLE001
            warn(f"image processor cross-check unavailable: {type(e).__name__}: {e}")
            checker = None
    else:
        log("[processor] cross-check skipped (processor_max_abs_diff = null)")

    manifest: dict = {
        "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "preprocess-only" if args.preprocess_only else "full",
        "versions": versions(with_model),
        "pillow_version": PIL.__version__,
        "device": device_info(with_model),
        "fixtures": fixtures,
        "constants": {"min_pixels_default": gp.MIN_PIXELS_DEFAULT, "max_pixels_default": gp.MAX_PIXELS_DEFAULT,
                      "image_mean": list(gp.IMAGE_MEAN), "image_std": list(gp.IMAGE_STD),
                      "system_prompt": SYSTEM_PROMPT, "max_new_tokens": MAX_NEW_TOKENS,
                      "repetition_penalty": REPETITION_PENALTY, "eos_token_id": IM_END_ID, "pad_token_id": PAD_ID},
    }
    if args.checkpoint:
        manifest["checkpoint"] = {fn: gp.sha256_file(os.path.join(args.checkpoint, fn))
                                  for fn in ("config.json", "model.safetensors", "tokenizer.json")}

    pre_done, pre_skipped = run_preprocess_cases(args, checker)
    manifest["preprocess_cases"] = pre_done
    manifest["preprocess_skipped"] = pre_skipped

    summary = []
    if with_model:
        try:
            mdone, mskipped, summary = run_model_cases(args, checker, manifest)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            warn(f"model stage failed: {type(e).__name__}: {e}")
            mdone, mskipped = [], {"*": f"{type(e).__name__}: {e}"}
        manifest["model_cases"] = mdone
        manifest["model_skipped"] = mskipped
        manifest["model_summary"] = summary
    else:
        manifest["model_cases"] = []
    if checker is not None:
        manifest["processor"] = {"classes_tried": [k for k, _ in checker.classes], "primary_used": checker.used,
                                 "import_errors": checker.errors}
    else:
        manifest["processor"] = None
    manifest["warnings"] = WARNINGS
    manifest["seconds"] = round(time.time() - t_start, 1)
    gp.write_json(os.path.join(args.out, "manifest.json"), manifest)

    print_summary(summary)
    size = dir_size(args.out)
    log(f"\n[done] {len(pre_done)} preprocess cases, {len(manifest['model_cases'])} model cases, "
        f"{size/1024/1024:.2f} MiB in {args.out}, {manifest['seconds']}s")
    if size > 3 * 1024 * 1024:
        warn(f"output is {size/1024/1024:.2f} MiB (> 3 MiB)")
    if WARNINGS:
        log(f"\n{len(WARNINGS)} WARNING(S):")
        for w in WARNINGS:
            log(f"  - {w}")
    failed = bool(pre_skipped) or (with_model and bool(manifest.get("model_skipped")))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
