#!/usr/bin/env python3
"""Self-tests of the numpy/Pillow half of the golden generator (no torch needed).

  /usr/bin/python3 test/golden/test_golden_pre.py
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import golden_pre as gp  # noqa: E402


def test_synthetic_matches_scalar():
    for w, h, seed in [(1, 1, 0), (7, 5, 1), (13, 11, 12345), (4, 9, 2**31 + 7), (20, 3, 4294967295)]:
        a = gp.synthetic_rgb(w, h, seed)
        b = gp.synthetic_rgb_scalar(w, h, seed)
        assert a.shape == (h, w, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b), (w, h, seed)


def test_synthetic_known_value():
    # x=0,y=0,c=0, seed 0: n = 83492791 ; (n*2246822519 mod 2^32) >> 24 ; g = 0
    n = 83492791
    n = ((n * 2246822519) & 0xFFFFFFFF) >> 24
    assert gp.synthetic_rgb(3, 3, 0)[0, 0, 0] == n // 4


def test_smart_resize():
    sr = gp.smart_resize
    assert sr(10, 10) == (112, 112)  # min_pixels: beta = sqrt(12544/100) = 11.2
    assert sr(280, 280) == (280, 280)
    assert sr(199, 301) == (196, 308)
    assert sr(810, 1440, 28, gp.MIN_PIXELS_DEFAULT, 64 * 784) == (168, 280)
    h, w = sr(3000, 4000)
    assert h * w <= gp.MAX_PIXELS_DEFAULT and h % 28 == 0 and w % 28 == 0
    assert sr(40, 3000) == (28, 2996)
    assert sr(3500, 50) == (3500, 56)
    assert sr(1000, 1000, 28, gp.MIN_PIXELS_DEFAULT, 256 * 784) == (448, 448)
    h, w = sr(43, 57, 28, 64 * 784, gp.MAX_PIXELS_DEFAULT)
    assert h * w >= 64 * 784
    assert sr(14, 14) == (112, 112)
    # halves round to even (Python round): 42/28 = 1.5 -> 2 ; 70/28 = 2.5 -> 2
    assert sr(42, 280 * 2)[0] == 56 and sr(70, 280 * 2)[0] == 56
    try:
        sr(10, 2100)
    except ValueError:
        pass
    else:
        raise AssertionError("aspect > 200 must raise")


def test_patchify_matches_naive_and_processor_layout():
    rgb = gp.synthetic_rgb(84, 56, 3)
    chw = gp.normalize(rgb)
    pv, grid = gp.patchify(chw)
    assert grid == [1, 4, 6] and pv.shape == (24, 1176) and pv.dtype == np.float32
    assert np.array_equal(pv, gp.patchify_naive(chw))
    # transformers' reshape/transpose, written out independently
    x = np.stack([chw, chw])[None]  # [1, T, C, H, W]
    x = x.reshape(1, 2, 3, 2, 2, 14, 3, 2, 14)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(24, 1176)
    assert np.array_equal(pv, x)


def test_normalize_order():
    rgb = np.arange(256, dtype=np.uint8).reshape(16, 16)[:, :, None].repeat(3, axis=2)
    out = gp.normalize(rgb)
    x = np.float32(np.float64(200) * (1.0 / 255.0))
    exp = (x - np.float32(gp.IMAGE_MEAN[1])) / np.float32(gp.IMAGE_STD[1])
    assert out[1, 12, 8] == exp  # value 200 at row 12, col 8


def test_resize_two_pass_equals_one_call():
    for (w, h, w2, h2) in [(301, 199, 308, 196), (160, 96, 112, 84), (50, 350, 56, 280), (400, 30, 280, 28),
                           (33, 47, 112, 140)]:
        img = Image.fromarray(gp.synthetic_rgb(w, h, 9), "RGB")
        a, info = gp.resize_bicubic(img, w2, h2)
        assert a.shape == (h2, w2, 3)
        assert info["direct_matches"], (w, h, w2, h2, info)


def test_window_index():
    # merged grid 2x2 (gh=gw=4) -> one window, identity
    idx, lens = gp.window_index(4, 4)
    assert idx.tolist() == [0, 1, 2, 3] and lens == [4]
    # merged 8x8: exact multiple -> 4 windows of 16 (the extra padded windows are empty)
    idx, lens = gp.window_index(16, 16)
    assert lens == [16, 16, 16, 16]
    assert idx[:5].tolist() == [0, 1, 2, 3, 8]
    assert sorted(idx.tolist()) == list(range(64))
    # merged 7x11 (gh=14, gw=22): windows 2x3
    idx, lens = gp.window_index(14, 22)
    assert lens == [16, 16, 12, 12, 12, 9], lens
    assert sorted(idx.tolist()) == list(range(77))


def test_mrope_positions():
    it = 9
    ids = [1, 2, it, it, it, it, it, it, 3, 4]  # grid gh=4, gw=6 -> merged 2x3
    pos = gp.mrope_positions(ids, it, 4, 6)
    assert pos[:, :2].tolist() == [[0, 1]] * 3
    assert pos[0, 2:8].tolist() == [2] * 6
    assert pos[1, 2:8].tolist() == [2, 2, 2, 3, 3, 3]
    assert pos[2, 2:8].tolist() == [2, 3, 4, 2, 3, 4]
    assert pos[:, 8].tolist() == [5, 5, 5] and pos[:, 9].tolist() == [6, 6, 6]


def test_fixtures_and_decode():
    with tempfile.TemporaryDirectory() as d:
        sh = gp.ensure_fixtures(d, log=lambda *_: None)
        assert all(sh.values())
        again = gp.ensure_fixtures(d, log=lambda *_: None)
        assert again == sh  # not rewritten
        t = gp.decode("fixture:exif_rot6.jpg", None, d, True)
        r = gp.decode("fixture:exif_rot6.jpg", None, d, False)
        assert r.rgb.shape == (96, 160, 3) and t.rgb.shape == (160, 96, 3)
        assert r.exif_orientation == 6
        # orientation 6: displayed = stored rotated 90 degrees clockwise
        assert np.array_equal(t.rgb, np.rot90(r.rgb, k=-1))
        a = gp.decode("fixture:rgba.png", None, d, False)
        assert a.alpha_composited and a.mode == "RGBA"
        src = gp.rgba_fixture_array()
        alpha = src[:, :, 3]
        assert alpha.min() == 0 and alpha.max() == 255
        assert np.all(a.rgb[alpha == 0] == 255)  # fully transparent -> white
        assert np.array_equal(a.rgb[alpha == 255], src[:, :, :3][alpha == 255])


def main():
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_") and callable(v)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print(f"FAIL {name}: {e}")
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
