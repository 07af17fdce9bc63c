"""torch / transformers side of the golden generator (imported only for model cases
and the image-processor cross-check). Written defensively for transformers 5.x,
with fallbacks for 4.5x APIs; every fallback taken is reported."""

from __future__ import annotations

import inspect
import json
import os
import struct
import time
import traceback
from typing import Any, Callable

import numpy as np

import golden_pre as gp


def _log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------
# Image processor cross-check (needs transformers; torch only for the torchvision class)
# ---------------------------------------------------------------------------

_PROCESSOR_CANDIDATES = [
    ("transformers", "Qwen2VLImageProcessorPil"),
    ("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl", "Qwen2VLImageProcessorPil"),
    ("transformers", "Qwen2VLImageProcessor"),
    ("transformers.models.qwen2_vl.image_processing_qwen2_vl", "Qwen2VLImageProcessor"),
    ("transformers", "Qwen2VLImageProcessorFast"),
]


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if hasattr(x, "float") and str(getattr(x, "dtype", "")) not in ("torch.int64", "torch.int32"):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


class ProcessorChecker:
    """Runs transformers' Qwen2-VL image processor on the already-resized image."""

    def __init__(self) -> None:
        self.classes: list[tuple[str, type]] = []
        self.errors: list[str] = []
        seen = set()
        for mod_name, cls_name in _PROCESSOR_CANDIDATES:
            try:
                mod = __import__(mod_name, fromlist=[cls_name])
                cls = getattr(mod, cls_name)
            except Exception as e:  # noqa: BLE001
                self.errors.append(f"{mod_name}.{cls_name}: {type(e).__name__}: {e}")
                continue
            key = f"{cls.__module__}.{cls.__qualname__}"
            if key in seen:
                continue
            seen.add(key)
            self.classes.append((key, cls))
        self.used: dict[str, int] = {}
        _log(f"[processor] candidate classes: {[k for k, _ in self.classes]}")

    def _run_one(self, cls: type, pil_img, min_pixels: int, max_pixels: int):
        try:
            proc = cls(min_pixels=min_pixels, max_pixels=max_pixels)
        except Exception:  # noqa: BLE001
            proc = cls()
        attempts = [
            dict(do_resize=False, return_tensors="np"),
            dict(do_resize=False, return_tensors="pt"),
            dict(do_resize=False),
            dict(min_pixels=pil_img.size[0] * pil_img.size[1], max_pixels=pil_img.size[0] * pil_img.size[1],
                 return_tensors="pt"),
        ]
        last = None
        for kw in attempts:
            try:
                out = proc(images=[pil_img], **kw)
                pv = _to_numpy(out["pixel_values"]).astype(np.float32)
                grid = _to_numpy(out["image_grid_thw"]).astype(np.int64).reshape(-1).tolist()
                return pv, grid, kw
            except Exception as e:  # noqa: BLE001
                last = e
        raise RuntimeError(f"all call forms failed; last: {type(last).__name__}: {last}")

    def check(self, pre: "gp.Preprocessed", min_pixels: int, max_pixels: int) -> dict:
        """Returns {"primary": class, "max_abs_diff": float|None, "per_class": {...}}."""
        per = {}
        primary = None
        primary_diff = None
        for key, cls in self.classes:
            try:
                pv, grid, kw = self._run_one(cls, pre.resized_pil, min_pixels, max_pixels)
                if list(grid) != list(pre.grid_thw) or pv.shape != pre.pixel_values.shape:
                    per[key] = {"error": f"shape/grid mismatch: {pv.shape} {grid} vs "
                                         f"{pre.pixel_values.shape} {pre.grid_thw}"}
                    continue
                d = float(np.abs(pv.astype(np.float64) - pre.pixel_values.astype(np.float64)).max())
                per[key] = {"max_abs_diff": d, "call": {k: v for k, v in kw.items()}}
                if primary is None:
                    primary, primary_diff = key, d
            except Exception as e:  # noqa: BLE001
                per[key] = {"error": f"{type(e).__name__}: {e}"}
        if primary is not None:
            self.used[primary] = self.used.get(primary, 0) + 1
        return {"primary": primary, "max_abs_diff": primary_diff, "per_class": per}


# ---------------------------------------------------------------------------
# safetensors reader without the safetensors package (bf16/f16/f32)
# ---------------------------------------------------------------------------

def read_safetensors(path: str) -> dict[str, np.ndarray]:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
        base = 8 + n
        out = {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            a, b = meta["data_offsets"]
            fh.seek(base + a)
            raw = fh.read(b - a)
            dt = meta["dtype"]
            if dt == "BF16":
                u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                arr = u.view(np.float32)
            elif dt == "F16":
                arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
            elif dt == "F32":
                arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
            else:
                continue
            out[name] = arr.reshape(meta["shape"])
    return out


def _name_candidates(file_key: str) -> list[str]:
    c = [file_key]
    if file_key.startswith("visual."):
        c += ["model." + file_key]
    elif file_key.startswith("model.visual."):
        c += [file_key[len("model."):]]
    elif file_key.startswith("model.language_model."):
        c += ["model." + file_key[len("model.language_model."):]]
    elif file_key.startswith("model."):
        c += ["model.language_model." + file_key[len("model."):]]
    return c


def verify_weights(model, ckpt_dir: str) -> dict:
    """Compares every tensor of model.safetensors with the loaded fp32 parameters."""
    path = os.path.join(ckpt_dir, "model.safetensors")
    res: dict[str, Any] = {"file": path}
    try:
        tensors = read_safetensors(path)
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
        return res
    sd = {k: v for k, v in model.state_dict().items()}
    matched, unmatched, mismatched = 0, [], []
    covered = set()
    for k, arr in tensors.items():
        hit = next((c for c in _name_candidates(k) if c in sd), None)
        if hit is None:
            unmatched.append(k)
            continue
        covered.add(hit)
        p = sd[hit].detach().float().cpu().numpy()
        if p.shape != arr.shape or not np.array_equal(p, arr):
            d = None if p.shape != arr.shape else float(np.abs(p - arr).max())
            mismatched.append({"key": k, "model_key": hit, "shape": list(p.shape),
                               "file_shape": list(arr.shape), "max_abs_diff": d})
        else:
            matched += 1
    not_from_file = [k for k in sd if k not in covered]
    res.update({"file_tensors": len(tensors), "matched_exactly": matched, "unmatched_file_keys": unmatched[:50],
                "mismatched": mismatched[:50], "model_keys_not_in_file": not_from_file[:50]})
    # Tied embeddings: lm_head must equal embed_tokens.
    emb = next((sd[k] for k in ("model.language_model.embed_tokens.weight", "model.embed_tokens.weight") if k in sd), None)
    if emb is not None and "lm_head.weight" in sd:
        res["lm_head_equals_embed"] = bool(np.array_equal(sd["lm_head.weight"].float().numpy(), emb.float().numpy()))
    return res


# ---------------------------------------------------------------------------
# Model helpers
# ---------------------------------------------------------------------------

def _unwrap(x: Any) -> Any:
    """Tensor out of a hook output / module result (tuple, list, ModelOutput)."""
    import torch
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x:
        return _unwrap(x[0])
    if hasattr(x, "last_hidden_state") and x.last_hidden_state is not None:
        return x.last_hidden_state
    if hasattr(x, "to_tuple"):
        return _unwrap(x.to_tuple())
    return x


def find_parts(model) -> dict:
    """visual, text model (with .layers, .norm, .embed_tokens) wherever this version keeps them."""
    inner = getattr(model, "model", None)
    visual = None
    for cand in (getattr(inner, "visual", None), getattr(model, "visual", None)):
        if cand is not None:
            visual = cand
            break
    text = None
    for cand in (getattr(inner, "language_model", None), inner, getattr(model, "language_model", None)):
        if cand is not None and hasattr(cand, "layers") and hasattr(cand, "norm"):
            text = cand
            break
    if visual is None or text is None:
        raise RuntimeError(f"could not find visual/text modules (visual={visual is not None}, text={text is not None})")
    return {"inner": inner if inner is not None else model, "visual": visual, "text": text}


def vision_features(model, parts, pixel_values, grid_thw, n_tokens: int, hidden: int) -> tuple[Any, str]:
    """Merged image features [n_tokens, hidden] via get_image_features, else visual()."""
    import torch
    errors = []

    def pick(out: Any, how: str):
        cands = []
        if isinstance(out, torch.Tensor):
            cands.append(out)
        if hasattr(out, "pooler_output") and out.pooler_output is not None:
            po = out.pooler_output
            cands.append(torch.cat(list(po), 0) if isinstance(po, (tuple, list)) else po)
        if isinstance(out, (tuple, list)) and out:
            if all(isinstance(t, torch.Tensor) for t in out):
                try:
                    cands.append(torch.cat(list(out), 0))
                except Exception:  # noqa: BLE001
                    pass
            cands.append(out[0] if isinstance(out[0], torch.Tensor) else None)
        if hasattr(out, "last_hidden_state") and out.last_hidden_state is not None:
            cands.append(out.last_hidden_state)
        for c in cands:
            if isinstance(c, torch.Tensor) and tuple(c.shape) == (n_tokens, hidden):
                return c
        shapes = [tuple(c.shape) for c in cands if isinstance(c, torch.Tensor)]
        errors.append(f"{how}: no candidate of shape {(n_tokens, hidden)} in {type(out).__name__} {shapes}")
        return None

    inner = parts["inner"]
    if hasattr(inner, "get_image_features"):
        for kw in ({}, {"return_dict": True}):
            try:
                out = inner.get_image_features(pixel_values, grid_thw, **kw)
                t = pick(out, f"get_image_features{kw or ''}")
                if t is not None:
                    return t, f"model.model.get_image_features -> {type(out).__name__}"
            except Exception as e:  # noqa: BLE001
                errors.append(f"get_image_features{kw}: {type(e).__name__}: {e}")
    for kw in ({"grid_thw": grid_thw}, {"grid_thw": grid_thw, "return_dict": True}):
        try:
            out = parts["visual"](pixel_values, **kw)
            t = pick(out, "visual()")
            if t is not None:
                return t, f"visual() -> {type(out).__name__}"
        except Exception as e:  # noqa: BLE001
            errors.append(f"visual{list(kw)}: {type(e).__name__}: {e}")
    raise RuntimeError("could not get vision features: " + " | ".join(errors))


class Hooks:
    """Forward hooks that record the intermediates while `active`."""

    def __init__(self, parts) -> None:
        self.active = False
        self.store: dict[str, Any] = {}
        self.handles = []
        vis, txt = parts["visual"], parts["text"]

        def save(name: str) -> Callable:
            def hook(_m, _inp, out):
                if self.active:
                    self.store[name] = _unwrap(out).detach().float().cpu()
            return hook

        self.handles.append(vis.patch_embed.register_forward_hook(save("vision.patch_embed")))
        for i, blk in enumerate(vis.blocks):
            self.handles.append(blk.register_forward_hook(save(f"vision.block.{i}")))
        self.handles.append(vis.merger.register_forward_hook(save("vision.merger")))

        def pre0(_m, args, kwargs):
            if self.active:
                hs = args[0] if args else kwargs.get("hidden_states")
                self.store["text.embed"] = _unwrap(hs).detach().float().cpu()
        try:
            self.handles.append(txt.layers[0].register_forward_pre_hook(pre0, with_kwargs=True))
        except TypeError:  # very old torch
            self.handles.append(txt.layers[0].register_forward_pre_hook(lambda m, a: pre0(m, a, {})))
        for i, layer in enumerate(txt.layers):
            self.handles.append(layer.register_forward_hook(save(f"text.layer.{i}")))
        self.handles.append(txt.norm.register_forward_hook(save("text.final_norm")))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def accepts_kw(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def rope_index(inner, input_ids, mm_types, grid_thw, attn):
    fn = getattr(inner, "get_rope_index", None)
    if fn is None:
        raise RuntimeError("no get_rope_index")
    if accepts_kw(fn, "mm_token_type_ids"):
        out = fn(input_ids=input_ids, mm_token_type_ids=mm_types, image_grid_thw=grid_thw, attention_mask=attn)
    else:
        out = fn(input_ids=input_ids, image_grid_thw=grid_thw, attention_mask=attn)
    pos = out[0] if isinstance(out, (tuple, list)) else out
    delta = out[1] if isinstance(out, (tuple, list)) and len(out) > 1 else None
    return pos, delta


def apply_repetition_penalty(logits: np.ndarray, seen: set[int], penalty: float) -> np.ndarray:
    out = logits.astype(np.float32).copy()
    ids = np.fromiter(seen, dtype=np.int64)
    v = out[ids]
    out[ids] = np.where(v > 0, v / np.float32(penalty), v * np.float32(penalty)).astype(np.float32)
    return out
