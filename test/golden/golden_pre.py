"""Reference preprocessing for the Rex-Omni golden files (numpy + Pillow only).

Nothing in this module imports torch or transformers: `make_golden.py
--preprocess-only` and `test_golden_pre.py` run with just Pillow and numpy.

What it reproduces (see test/golden/FORMAT.md):
  qwen_vl_utils 0.0.14 `fetch_image` + the Rex-Omni wrapper, i.e.
  decode -> (optional EXIF transpose) -> to_rgb (alpha onto white) ->
  smart_resize(factor 28) -> Pillow BICUBIC resize (horizontal pass first, as
  Pillow 10.4 does) -> x/255 -> (x-mean)/std -> patchify (2 frames, merge-block
  row order, row = channel, frame, 14, 14).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageOps

try:  # Pillow >= 9.1
    BICUBIC = Image.Resampling.BICUBIC
except AttributeError:  # pragma: no cover - very old Pillow
    BICUBIC = Image.BICUBIC

PATCH = 14
MERGE = 2
TEMPORAL = 2
FACTOR = PATCH * MERGE  # 28
MIN_PIXELS_DEFAULT = 16 * 28 * 28  # 12544
MAX_PIXELS_DEFAULT = 2560 * 28 * 28  # 2007040
MAX_RATIO = 200
WINDOW_SIZE = 112  # vision window in pixels -> 112 / 14 / 2 = 4 merged tokens
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
ROW_LEN = 3 * TEMPORAL * PATCH * PATCH  # 1176

U32 = 0xFFFFFFFF


# ---------------------------------------------------------------------------
# JSON helpers: floats are written as repr(float(x)) (exact float32 -> double)
# ---------------------------------------------------------------------------

def f(x: Any) -> float:
    """One number as a Python float (exact for float32/float64 inputs)."""
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"non-finite value {v!r} cannot go into a golden file")
    return v


def flist(a: Any) -> list[float]:
    arr = np.asarray(a)
    return [f(v) for v in arr.astype(np.float64).ravel().tolist()]


def stats(a: np.ndarray) -> dict:
    """shape / sum / abs_sum / max_abs, accumulated in float64."""
    a64 = np.asarray(a, dtype=np.float64)
    return {
        "shape": [int(s) for s in np.shape(a)],
        "sum": f(a64.sum()),
        "abs_sum": f(np.abs(a64).sum()),
        "max_abs": f(np.abs(a64).max()) if a64.size else 0.0,
    }


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def sha256_file(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), allow_nan=False, ensure_ascii=True)


def dumps(obj: Any) -> str:
    """Top-level and second-level keys one per line, everything below compact."""
    if not isinstance(obj, dict):
        return _compact(obj)
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict) and v and any(isinstance(x, (dict, list)) for x in v.values()):
            inner = ",\n".join(f"  {_compact(k2)}: {_compact(v2)}" for k2, v2 in v.items())
            lines.append(f" {_compact(k)}: {{\n{inner}\n }}")
        else:
            lines.append(f" {_compact(k)}: {_compact(v)}")
    return "{\n" + ",\n".join(lines) + "\n}"


def write_json(path: str, obj: Any) -> int:
    """Writes compact-ish JSON (one key per line at the top level). Returns bytes."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    text = dumps(obj)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.write("\n")
    return len(text) + 1


# ---------------------------------------------------------------------------
# Synthetic images (formula in FORMAT.md)
# ---------------------------------------------------------------------------

def synthetic_rgb(w: int, h: int, seed: int) -> np.ndarray:
    """[h, w, 3] uint8, vectorised; all uint32 products wrap mod 2^32."""
    if w <= 0 or h <= 0:
        raise ValueError(f"bad synthetic size {w}x{h}")
    m = np.uint64(U32)
    xs = np.arange(w, dtype=np.uint64)
    ys = np.arange(h, dtype=np.uint64)
    xt = ((xs * np.uint64(73856093)) & m).astype(np.uint32)  # [w]
    yt = ((ys * np.uint64(19349663)) & m).astype(np.uint32)  # [h]
    st = (int(seed) * 2654435761) & U32
    xi = np.arange(w, dtype=np.int64)
    yi = np.arange(h, dtype=np.int64)
    out = np.empty((h, w, 3), dtype=np.uint8)
    for c in range(3):
        ct = ((c + 1) * 83492791) & U32
        n = yt[:, None] ^ xt[None, :] ^ np.uint32(ct ^ st)  # [h, w] uint32
        n = ((n.astype(np.uint64) * np.uint64(2246822519)) & m) >> np.uint64(24)
        n = n.astype(np.int64)
        if c == 0:
            g = ((xi * 255) // max(w - 1, 1))[None, :]
        elif c == 1:
            g = ((yi * 255) // max(h - 1, 1))[:, None]
        else:
            g = ((xi[None, :] + yi[:, None]) * 255) // max(w + h - 2, 1)
        out[:, :, c] = ((3 * g + n) // 4).astype(np.uint8)
    return out


def synthetic_rgb_scalar(w: int, h: int, seed: int) -> np.ndarray:
    """Slow pure-Python version of the same formula (for tests)."""
    out = np.empty((h, w, 3), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                n = ((x * 73856093) & U32) ^ ((y * 19349663) & U32) ^ (((c + 1) * 83492791) & U32) \
                    ^ ((seed * 2654435761) & U32)
                n = ((n * 2246822519) & U32) >> 24
                if c == 0:
                    g = (x * 255) // max(w - 1, 1)
                elif c == 1:
                    g = (y * 255) // max(h - 1, 1)
                else:
                    g = ((x + y) * 255) // max(w + h - 2, 1)
                out[y, x, c] = (3 * g + n) // 4
    return out


def parse_synthetic(spec: str) -> tuple[int, int, int]:
    """'synthetic:WxH:SEED' -> (w, h, seed)."""
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != "synthetic":
        raise ValueError(f"bad synthetic spec {spec!r}")
    w_s, h_s = parts[1].lower().split("x")
    return int(w_s), int(h_s), int(parts[2])


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

EXIF_FIXTURE = "exif_rot6.jpg"
RGBA_FIXTURE = "rgba.png"
EXIF_FIXTURE_SPEC = (160, 96, 61)  # synthetic 160x96, seed 61
RGBA_FIXTURE_SPEC = (90, 70, 71)  # synthetic 90x70, seed 71


def rgba_fixture_array() -> np.ndarray:
    """[70, 90, 4]: synthetic RGB plus an alpha that covers 0..255 (incl. 0 and 255)."""
    w, h, seed = RGBA_FIXTURE_SPEC
    rgb = synthetic_rgb(w, h, seed)
    x = np.arange(w, dtype=np.int64)[None, :]
    y = np.arange(h, dtype=np.int64)[:, None]
    ramp = (x * 255) // (w - 1)  # 0 at the left edge, 255 at the right
    alpha = np.where(y < 10, 0, np.where(y >= h - 10, 255, (ramp + 37 * (y % 7)) % 256))
    return np.concatenate([rgb, alpha.astype(np.uint8)[:, :, None]], axis=2)


def ensure_fixtures(fixtures_dir: str, log=print) -> dict:
    """Creates the committed fixture images if absent. Returns {name: sha256}."""
    os.makedirs(fixtures_dir, exist_ok=True)
    exif_path = os.path.join(fixtures_dir, EXIF_FIXTURE)
    if not os.path.exists(exif_path):
        w, h, seed = EXIF_FIXTURE_SPEC
        img = Image.fromarray(synthetic_rgb(w, h, seed), "RGB")
        exif = Image.Exif()
        exif[0x0112] = 6  # Orientation: rotate 90 CW to display
        # 4:4:4 chroma so that decoders need no chroma upsampling to agree.
        img.save(exif_path, "JPEG", quality=95, subsampling=0, exif=exif.tobytes())
        log(f"[fixtures] created {exif_path}")
    rgba_path = os.path.join(fixtures_dir, RGBA_FIXTURE)
    if not os.path.exists(rgba_path):
        Image.fromarray(rgba_fixture_array(), "RGBA").save(rgba_path, "PNG")
        log(f"[fixtures] created {rgba_path}")
    return {n: sha256_file(os.path.join(fixtures_dir, n)) for n in (EXIF_FIXTURE, RGBA_FIXTURE)}


# ---------------------------------------------------------------------------
# Decoding (qwen_vl_utils to_rgb, optional EXIF transpose)
# ---------------------------------------------------------------------------

@dataclass
class Decoded:
    rgb: np.ndarray  # [h, w, 3] uint8
    pil: Image.Image  # RGB
    mode: str  # mode as opened
    format: str | None
    exif_orientation: int | None
    alpha_composited: bool
    rgb_no_composite_sha256: str | None = None  # plain convert("RGB"), only for alpha images


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in ("RGBA", "LA", "PA"):
        return True
    if im.mode == "P" and "transparency" in im.info:
        return True
    if im.mode in ("RGB", "L") and "transparency" in im.info:
        return True
    return False


def resolve_image(spec: str, images_dir: str | None, fixtures_dir: str | None) -> tuple[str, Image.Image | None, np.ndarray | None]:
    """Returns (kind, PIL image or None, synthetic array or None)."""
    if spec.startswith("synthetic:"):
        w, h, seed = parse_synthetic(spec)
        return "synthetic", None, synthetic_rgb(w, h, seed)
    if spec.startswith("shared:"):
        if not images_dir:
            raise FileNotFoundError("--images not given")
        path = os.path.join(images_dir, spec[len("shared:"):])
    elif spec.startswith("fixture:"):
        if not fixtures_dir:
            raise FileNotFoundError("--fixtures not given")
        path = os.path.join(fixtures_dir, spec[len("fixture:"):])
    else:
        raise ValueError(f"unknown image spec {spec!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(path)
    im = Image.open(path)
    im.load()
    return "file", im, None


def decode(spec: str, images_dir: str | None, fixtures_dir: str | None, exif_transpose: bool) -> Decoded:
    kind, im, arr = resolve_image(spec, images_dir, fixtures_dir)
    if kind == "synthetic":
        pil = Image.fromarray(arr, "RGB")
        return Decoded(rgb=arr, pil=pil, mode="RGB", format=None, exif_orientation=None, alpha_composited=False)
    fmt = im.format
    orientation = None
    try:
        orientation = im.getexif().get(0x0112)
    except Exception:  # pragma: no cover
        orientation = None
    if exif_transpose:
        im = ImageOps.exif_transpose(im)
    mode = im.mode
    no_comp = None
    if _has_alpha(im):
        # qwen_vl_utils.to_rgb: white background, paste with the alpha channel as mask.
        # (qwen_vl_utils itself only does this for mode RGBA; LA / P+transparency are
        # converted to RGBA first here so that they are treated the same way.)
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.split()[3])
        no_comp = sha256_bytes(np.asarray(im.convert("RGB"), dtype=np.uint8).tobytes())
        composited = True
    else:
        out = im.convert("RGB")
        composited = False
    rgb = np.asarray(out, dtype=np.uint8).copy()
    return Decoded(rgb=rgb, pil=out, mode=mode, format=fmt, exif_orientation=orientation,
                   alpha_composited=composited, rgb_no_composite_sha256=no_comp)


# ---------------------------------------------------------------------------
# smart_resize (qwen_vl_utils 0.0.14)
# ---------------------------------------------------------------------------

def smart_resize(height: int, width: int, factor: int = FACTOR,
                 min_pixels: int = MIN_PIXELS_DEFAULT, max_pixels: int = MAX_PIXELS_DEFAULT) -> tuple[int, int]:
    """Returns (h', w'). Same float operations, in the same order, as qwen_vl_utils."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio above {MAX_RATIO}: {width}x{height}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


# ---------------------------------------------------------------------------
# Resize: Pillow BICUBIC, horizontal pass first (Pillow 10.4 order)
# ---------------------------------------------------------------------------

def resize_bicubic(pil: Image.Image, w2: int, h2: int) -> tuple[np.ndarray, dict]:
    """Returns ([h2, w2, 3] uint8, info).

    The stored result is made explicitly horizontal-then-vertical: a resize that
    changes only the width (Pillow then runs only the horizontal pass), followed
    by one that changes only the height. For Pillow 10.4 that is bit-identical to
    one `resize((w2, h2), BICUBIC)` call; newer Pillow may do the vertical pass
    first for some shapes, and `direct_matches` records whether this Pillow's
    one-call result agrees.
    """
    w, h = pil.size
    step = pil.resize((w2, h), BICUBIC) if w2 != w else pil.copy()
    hfirst = step.resize((w2, h2), BICUBIC) if h2 != h else step
    direct = pil.resize((w2, h2), BICUBIC)
    a = np.asarray(hfirst, dtype=np.uint8).copy()
    b = np.asarray(direct, dtype=np.uint8)
    same = bool(a.shape == b.shape and np.array_equal(a, b))
    info = {"direct_matches": same}
    if not same:
        info["direct_max_abs_diff"] = int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max())
        info["direct_rgb_sha256"] = sha256_bytes(b.tobytes())
    return a, info


# ---------------------------------------------------------------------------
# Normalize + patchify
# ---------------------------------------------------------------------------

def normalize(rgb: np.ndarray) -> np.ndarray:
    """[h, w, 3] uint8 -> [3, h, w] float32, in the reference's arithmetic:
    rescale in float64 then cast to float32 (transformers' `rescale`), then
    (x - mean) / std in float32 with float32 mean/std (transformers' `normalize`)."""
    x = (rgb.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)
    std = np.asarray(IMAGE_STD, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))  # CHW float32


def patchify(chw: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """[3, H, W] float32 -> ([gh*gw, 1176] float32, [1, gh, gw]).

    The still image is repeated to 2 frames. Rows go block-row, block-column,
    then the 2x2 patches of the block in row-major order; each row is
    channel (3), frame (2), pixel row (14), pixel column (14).
    """
    c, H, W = chw.shape
    assert c == 3 and H % FACTOR == 0 and W % FACTOR == 0, (c, H, W)
    gh, gw = H // PATCH, W // PATCH
    frames = np.stack([chw, chw], axis=0)  # [T=2, C, H, W]
    x = frames.reshape(TEMPORAL, 3, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    # axes: 0 T, 1 C, 2 bh, 3 mh, 4 ph, 5 bw, 6 mw, 7 pw
    x = x.transpose(2, 5, 3, 6, 1, 0, 4, 7)  # bh, bw, mh, mw, C, T, ph, pw
    return np.ascontiguousarray(x.reshape(gh * gw, ROW_LEN)), [1, gh, gw]


def patchify_naive(chw: np.ndarray) -> np.ndarray:
    """Loop version of patchify (tests only)."""
    _, H, W = chw.shape
    gh, gw = H // PATCH, W // PATCH
    rows = []
    for bh in range(gh // 2):
        for bw in range(gw // 2):
            for mh in range(2):
                for mw in range(2):
                    py, px = bh * 2 + mh, bw * 2 + mw
                    blk = chw[:, py * PATCH:(py + 1) * PATCH, px * PATCH:(px + 1) * PATCH]  # C,14,14
                    rows.append(np.stack([blk, blk], axis=1).reshape(-1))  # C, T, 14, 14
    return np.stack(rows).astype(np.float32)


# ---------------------------------------------------------------------------
# Vision window permutation and M-RoPE positions (pure numpy, for cross-checks)
# ---------------------------------------------------------------------------

def window_index(gh: int, gw: int, window_size: int = WINDOW_SIZE) -> tuple[np.ndarray, list[int]]:
    """Merged-token permutation used by the vision blocks, and the valid tokens per window.

    Merged grid (gh/2, gw/2) is padded bottom/right to a multiple of the window
    (4 merged tokens); a full extra window is added when already a multiple, as
    transformers does. Windows in raster order, tokens raster inside, padding dropped.
    """
    lh, lw = gh // MERGE, gw // MERGE
    win = window_size // MERGE // PATCH  # 4
    pad_h = win - lh % win
    pad_w = win - lw % win
    nh, nw = (lh + pad_h) // win, (lw + pad_w) // win
    idx = np.full((lh + pad_h, lw + pad_w), -100, dtype=np.int64)
    idx[:lh, :lw] = np.arange(lh * lw, dtype=np.int64).reshape(lh, lw)
    idx = idx.reshape(nh, win, nw, win).transpose(0, 2, 1, 3).reshape(nh * nw, win * win)
    counts = (idx != -100).sum(axis=1)
    flat = idx.reshape(-1)
    return flat[flat != -100], [int(c) for c in counts if c > 0]


def mrope_positions(input_ids: list[int], image_token_id: int, gh: int, gw: int) -> np.ndarray:
    """[3, N] int64 positions per REXOMNI.md (one image block of (gh/2)*(gw/2) pads)."""
    lh, lw = gh // MERGE, gw // MERGE
    n = len(input_ids)
    pos = np.zeros((3, n), dtype=np.int64)
    i = 0
    nxt = 0
    while i < n:
        if input_ids[i] == image_token_id:
            cnt = lh * lw
            block = input_ids[i:i + cnt]
            if len(block) != cnt or any(t != image_token_id for t in block):
                raise ValueError("image pad run does not match the grid")
            s = nxt
            r = np.repeat(np.arange(lh), lw)
            c = np.tile(np.arange(lw), lh)
            pos[0, i:i + cnt] = s
            pos[1, i:i + cnt] = s + r
            pos[2, i:i + cnt] = s + c
            nxt = int(pos[:, i:i + cnt].max()) + 1
            i += cnt
        else:
            pos[:, i] = nxt
            nxt += 1
            i += 1
    return pos


# ---------------------------------------------------------------------------
# One preprocess record
# ---------------------------------------------------------------------------

def sample_indices(n: int, k: int) -> list[int]:
    if n <= 0:
        return []
    if n <= k:
        return list(range(n))
    idx = sorted({(i * (n - 1)) // (k - 1) for i in range(k)})
    # plus a few scattered ones (deterministic LCG) so that patterns don't alias
    s = 12345
    extra = set()
    while len(extra) < k // 4:
        s = (s * 1103515245 + 12345) & 0x7FFFFFFF
        extra.add(s % n)
    return sorted(set(idx) | extra)


@dataclass
class Preprocessed:
    record: dict
    pixel_values: np.ndarray  # [rows, 1176] float32
    grid_thw: list[int]
    resized_rgb: np.ndarray
    resized_pil: Image.Image
    warnings: list[str] = field(default_factory=list)


def preprocess(spec: str, images_dir: str | None, fixtures_dir: str | None, exif_transpose: bool = False,
               min_pixels: int = MIN_PIXELS_DEFAULT, max_pixels: int = MAX_PIXELS_DEFAULT,
               pixel_rows: int = 2) -> Preprocessed:
    dec = decode(spec, images_dir, fixtures_dir, exif_transpose)
    h, w = dec.rgb.shape[:2]
    h2, w2 = smart_resize(h, w, FACTOR, min_pixels, max_pixels)
    resized, rinfo = resize_bicubic(dec.pil, w2, h2)
    warnings = []
    if not rinfo["direct_matches"]:
        warnings.append(f"{spec}: Pillow's one-call resize differs from horizontal-then-vertical "
                        f"(max diff {rinfo.get('direct_max_abs_diff')}); stored the horizontal-first result")
    pv, grid = patchify(normalize(resized))
    nrows = pv.shape[0]
    rows = sorted({0, nrows // 2, nrows - 1} if pixel_rows >= 3 else {0, nrows - 1} if pixel_rows == 2 else {0})
    src_bytes = dec.rgb.tobytes()
    res_bytes = resized.tobytes()
    rs_idx = sample_indices(len(res_bytes), 64)
    ss_idx = sample_indices(len(src_bytes), 32)
    res_flat = np.frombuffer(res_bytes, dtype=np.uint8)
    src_flat = np.frombuffer(src_bytes, dtype=np.uint8)
    st = stats(pv)
    rec = {
        "image": spec,
        "exif_transpose": bool(exif_transpose),
        "min_pixels": int(min_pixels),
        "max_pixels": int(max_pixels),
        "source_mode": dec.mode,
        "source_format": dec.format,
        "exif_orientation": dec.exif_orientation,
        "alpha_composited": dec.alpha_composited,
        "source_size": [int(w), int(h)],
        "source_rgb_sha256": sha256_bytes(src_bytes),
        "source_rgb_sample": {"indices": ss_idx, "values": [int(src_flat[i]) for i in ss_idx]},
        "resized_size": [int(w2), int(h2)],
        "resized_rgb_sha256": sha256_bytes(res_bytes),
        "resized_rgb_sample": {"indices": rs_idx, "values": [int(res_flat[i]) for i in rs_idx]},
        "resize_pass_order": "horizontal-first",
        "pillow_one_call_matches": rinfo["direct_matches"],
        "grid_thw": grid,
        "pixel_values": {
            "shape": st["shape"],
            "sum": st["sum"],
            "abs_sum": st["abs_sum"],
            "max_abs": st["max_abs"],
            "sha256_f32le": sha256_bytes(np.ascontiguousarray(pv, dtype="<f4").tobytes()),
            "rows": {str(r): flist(pv[r]) for r in rows},
            "processor_max_abs_diff": None,
        },
        "processor_max_abs_diff": None,
    }
    if dec.rgb_no_composite_sha256 is not None:
        rec["source_rgb_no_composite_sha256"] = dec.rgb_no_composite_sha256
    if not rinfo["direct_matches"]:
        rec["pillow_one_call_rgb_sha256"] = rinfo.get("direct_rgb_sha256")
    return Preprocessed(record=rec, pixel_values=pv, grid_thw=grid, resized_rgb=resized,
                        resized_pil=Image.fromarray(resized, "RGB"), warnings=warnings)
