#!/usr/bin/python3
"""Writes resize_golden.txt next to this script: what Pillow and numpy say the
native preprocess must produce, as one-line text records (small, diffable).

  smart H W MIN MAX -> OH OW        qwen_vl_utils smart_resize (factor 28); OH=-1: ValueError
  resize W H SEED OW OH SHA256      Pillow Image.resize((OW, OH), BICUBIC) of synthetic:WxH:SEED
  preprocess W H SEED MIN MAX RW RH GT GH GW RGB_SHA PV_SHA PV_SUM PV_ABS_SUM
      the whole path: smart_resize, Pillow BICUBIC, transformers-style
      rescale (float64 * 1/255 -> float32) and normalize (float32), patchify
      (sha256 of the little-endian float32 pixel_values)

Run with Debian's /usr/bin/python3 (python3-pil 9.4, python3-numpy). The
reference pins Pillow 10.4; ImagingResample's 8-bit path (precompute_coeffs,
fixed point, horizontal-then-vertical with the ybox crop) is the same code in
9.4 and 10.4, so 9.4's bytes are 10.4's. Pillow >= 12.2 may do the vertical
pass first for very tall images; do not regenerate with it.
"""
import hashlib
import math
import os
import sys

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def synthetic(w, h, seed):
    """test/golden/FORMAT.md "Synthetic images", uint32 wrapping arithmetic."""
    M = 0xFFFFFFFF
    x = np.arange(w, dtype=np.uint32)[None, :, None]
    y = np.arange(h, dtype=np.uint32)[:, None, None]
    c = np.arange(3, dtype=np.uint32)[None, None, :]
    with np.errstate(over="ignore"):
        n = (x * np.uint32(73856093)) ^ (y * np.uint32(19349663)) ^ \
            ((c + np.uint32(1)) * np.uint32(83492791)) ^ np.uint32((seed * 2654435761) & M)
        n = (n * np.uint32(2246822519)) >> np.uint32(24)
        gx = (x * np.uint32(255)) // np.uint32(max(w - 1, 1))
        gy = (y * np.uint32(255)) // np.uint32(max(h - 1, 1))
        gxy = ((x + y) * np.uint32(255)) // np.uint32(max(w + h - 2, 1))
        g = np.where(c == 0, gx, np.where(c == 1, gy, gxy))
        v = (np.uint32(3) * g + n) // np.uint32(4)
    return np.ascontiguousarray(v.astype(np.uint8))  # (h, w, 3)


def smart_resize(height, width, factor=28, min_pixels=16 * 28 * 28, max_pixels=2560 * 28 * 28):
    """qwen_vl_utils 0.0.14 (with transformers' max(factor, .) guard on the floor branch)."""
    if max(height, width) / min(height, width) > 200:
        raise ValueError("aspect")
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


MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def pixel_values(rgb):
    """transformers 4.51.3 Qwen2VLImageProcessor numpy path on an already resized image."""
    img = rgb.astype(np.float64) * 0.00392156862745098
    img = img.astype(np.float32)
    img = (img - MEAN) / STD  # float32 throughout
    chw = img.transpose(2, 0, 1)[None]  # (1, C, H, W)
    patches = np.concatenate([chw, chw], axis=0)  # still image -> 2 frames
    t, c, H, W = patches.shape
    p, m, tp = 14, 2, 2
    gh, gw = H // p, W // p
    patches = patches.reshape(t // tp, tp, c, gh // m, m, p, gw // m, m, p)
    patches = patches.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(patches.reshape((t // tp) * gh * gw, c * tp * p * p), dtype="<f4"), (t // tp, gh, gw)


def resize(rgb, ow, oh):
    return np.asarray(Image.fromarray(rgb, "RGB").resize((ow, oh), Image.BICUBIC))


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


SMART = [  # (h, w, min, max)
    (28, 28, 12544, 2007040), (42, 42, 12544, 2007040), (70, 70, 12544, 2007040),
    (98, 3000, 12544, 2007040), (126, 126, 12544, 2007040), (1, 1, 12544, 2007040),
    (10, 2000, 12544, 2007040), (2000, 10, 12544, 2007040), (10, 2001, 12544, 2007040),
    (480, 640, 12544, 2007040), (1080, 1920, 12544, 2007040), (3000, 4000, 12544, 2007040),
    (4000, 3000, 12544, 2007040), (1, 200, 12544, 2007040), (1, 201, 12544, 2007040),
    (100, 20000, 12544, 2007040), (7000, 35, 12544, 2007040), (111, 111, 12544, 2007040),
    (112, 112, 12544, 2007040), (113, 113, 12544, 2007040), (1414, 1414, 12544, 2007040),
    (1418, 1418, 12544, 2007040), (1500, 1500, 12544, 2007040), (6000, 8000, 12544, 2007040),
    (40, 3000, 12544, 2007040), (3000, 40, 12544, 2007040), (99, 101, 12544, 2007040),
    (250, 350, 12544, 2007040), (14, 5000, 12544, 2007040), (560, 560, 3136, 3136 * 4),
    (1000, 1000, 3136, 200704), (50, 60, 3136 * 64, 3136 * 100), (333, 777, 12544, 2007040),
    (1366, 768, 12544, 2007040), (768, 1366, 12544, 2007040), (2160, 3840, 12544, 2007040),
    # exact halves: 4.5 -> 4, 5.5 -> 6, 2.5 -> 2, 3.5 -> 4 (Python rounds halves to even)
    (126, 700, 12544, 2007040), (154, 700, 12544, 2007040), (700, 70, 12544, 2007040), (700, 98, 12544, 2007040),
]

RESIZE = [  # (w, h, seed, ow, oh)
    (1, 1, 1, 28, 28), (2, 3, 2, 28, 56), (5, 5, 3, 28, 28), (28, 28, 4, 28, 28),
    (100, 100, 5, 37, 37), (100, 100, 6, 250, 250), (100, 80, 7, 100, 56), (80, 100, 8, 56, 100),
    (64, 64, 9, 64, 160), (64, 64, 10, 160, 64), (3000, 40, 11, 2996, 28), (40, 3000, 12, 28, 2996),
    (3000, 40, 13, 28, 28), (40, 3000, 14, 28, 28), (640, 480, 15, 644, 476), (640, 480, 16, 237, 178),
    (1920, 1080, 17, 1932, 1092), (300, 200, 18, 111, 74), (300, 200, 19, 750, 500), (97, 61, 20, 224, 140),
    (97, 61, 21, 36, 23), (1000, 10, 22, 10, 1000), (10, 1000, 23, 1000, 10), (256, 256, 24, 255, 257),
    (256, 256, 25, 257, 255), (123, 457, 26, 56, 168), (457, 123, 27, 168, 56), (17, 19, 28, 84, 84),
    (500, 500, 29, 3, 3), (500, 500, 30, 1, 1), (3, 500, 31, 1, 499), (1000, 750, 32, 370, 277),
    (801, 601, 33, 2000, 1500), (640, 640, 34, 392, 392), (2048, 1536, 35, 1624, 1204), (33, 900, 36, 28, 644),
    (900, 33, 37, 644, 28), (1200, 1200, 38, 1200, 448), (1200, 1200, 39, 448, 1200), (7, 1, 40, 28, 28),
]

PREPROCESS = [  # (w, h, seed, min, max)
    (1, 1, 1, 12544, 2007040), (64, 48, 2, 12544, 2007040), (640, 480, 3, 12544, 2007040),
    (3000, 40, 4, 12544, 2007040), (40, 3000, 5, 12544, 2007040), (1000, 750, 6, 12544, 200704),
    (333, 777, 7, 12544, 2007040), (2048, 1536, 8, 12544, 2007040),
]


def main():
    out = [
        "# Generated by make_resize_golden.py; do not edit by hand.",
        "# Pillow %s, numpy %s, python %s" % (PIL.__version__, np.__version__, sys.version.split()[0]),
    ]
    for h, w, mn, mx in SMART:
        try:
            oh, ow = smart_resize(h, w, 28, mn, mx)
        except ValueError:
            oh, ow = -1, -1
        out.append("smart %d %d %d %d %d %d" % (h, w, mn, mx, oh, ow))
    for w, h, seed, ow, oh in RESIZE:
        out.append("resize %d %d %d %d %d %s" % (w, h, seed, ow, oh, sha(resize(synthetic(w, h, seed), ow, oh))))
    for w, h, seed, mn, mx in PREPROCESS:
        rh, rw = smart_resize(h, w, 28, mn, mx)
        resized = resize(synthetic(w, h, seed), rw, rh)
        pv, (gt, gh, gw) = pixel_values(resized)
        out.append("preprocess %d %d %d %d %d %d %d %d %d %d %s %s %.17g %.17g" % (
            w, h, seed, mn, mx, rw, rh, gt, gh, gw, sha(resized), sha(pv),
            float(pv.astype(np.float64).sum()), float(np.abs(pv.astype(np.float64)).sum())))
    # One synthetic image hashed directly, so a formula mismatch is caught on its own.
    for w, h, seed in [(1, 1, 0), (7, 5, 123), (300, 200, 4294967295)]:
        out.append("synthetic %d %d %d %s" % (w, h, seed, sha(synthetic(w, h, seed))))
    with open(os.path.join(HERE, "resize_golden.txt"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
