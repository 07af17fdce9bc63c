#!/usr/bin/env python3
"""transformers' logits for the full-3B-shape parity test (test/gpu/parity-3b.test.ts).

  python3 test/gpu/reference_logits.py --checkpoint /tmp/rex-omni-3b --cases <dir> [--dtypes fp32,bf16]

<dir> holds one folder per case, each with
  case.json         {input_ids, mm_token_type_ids, image_grid_thw, positions_of_interest: [start, count],
                     pixel_values_shape: [rows, 1176], position_ids?: [[t...], [h...], [w...]], ...}
  pixel_values.f32  raw little-endian float32 [rows, 1176] (our CPU preprocessing)
and gets, for each dtype,
  <dtype>.logits.f32   float32 [count, vocab]: logits rows start .. start+count-1 of one forward pass
  reference.json       per dtype: timings, argmax per row, checks (rope index vs ours, input checks)
plus <dir>/reference_summary.json (versions, device, load times, per-case status).

fp32: loaded in float32, TF32 off (matmul and cuDNN), attention "eager" by default.
bf16: loaded in bfloat16, attention "sdpa" by default. The logits are upcast to float32.
Both run on the GPU, one model at a time (the first is freed before the second loads).
Every forward passes mm_token_type_ids (transformers 5.x needs them for M-RoPE,
REXOMNI.md). Exit code 1 if a model load or a case failed; problems found by the checks
(positions, 1D fallback) are listed in reference_summary.json "problems" (the TS test fails on them).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(os.path.dirname(HERE), "golden")
if GOLDEN not in sys.path:
    sys.path.insert(0, GOLDEN)

import numpy as np  # noqa: E402

PROBLEMS: list[str] = []


def log(msg: str) -> None:
    print(f"[reference_logits {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def problem(msg: str) -> None:
    PROBLEMS.append(msg)
    print(f"\n!!!!! PROBLEM: {msg}\n", flush=True)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def mrope_positions(ids: list[int], image_token_id: int, gh: int, gw: int) -> np.ndarray:
    """[3, N] positions by REXOMNI.md's rule (one image block)."""
    lh, lw = gh // 2, gw // 2
    n = len(ids)
    pos = np.zeros((3, n), dtype=np.int64)
    i = nxt = 0
    while i < n:
        if ids[i] == image_token_id:
            cnt = lh * lw
            if any(t != image_token_id for t in ids[i:i + cnt]) or len(ids[i:i + cnt]) != cnt:
                raise ValueError("the image pad run does not match the grid")
            pos[0, i:i + cnt] = nxt
            pos[1, i:i + cnt] = nxt + np.repeat(np.arange(lh), lw)
            pos[2, i:i + cnt] = nxt + np.tile(np.arange(lw), lh)
            nxt = int(pos[:, i:i + cnt].max()) + 1
            i += cnt
        else:
            pos[:, i] = nxt
            nxt += 1
            i += 1
    return pos


def load_model(ckpt: str, dtype_name: str, attn: str):
    import torch
    import transformers

    cls = transformers.Qwen2_5_VLForConditionalGeneration
    dtype = torch.float32 if dtype_name == "fp32" else torch.bfloat16
    model, info, errors = None, None, []
    for kw in ("dtype", "torch_dtype"):
        try:
            res = cls.from_pretrained(ckpt, **{kw: dtype}, attn_implementation=attn, output_loading_info=True)
            model, info = res if isinstance(res, tuple) else (res, None)
            log(f"[{dtype_name}] from_pretrained({kw}={dtype}, attn_implementation={attn!r})")
            break
        except TypeError as e:
            errors.append(f"{kw}: {e}")
    if model is None:
        raise RuntimeError("from_pretrained failed: " + " | ".join(errors))
    missing = []
    if info:
        get = (lambda k: info.get(k)) if isinstance(info, dict) else (lambda k: getattr(info, k, None))
        missing = [str(k) for k in (get("missing_keys") or []) if "lm_head" not in str(k)]
        unexpected = [str(k) for k in (get("unexpected_keys") or [])]
        mismatched = [str(k) for k in (get("mismatched_keys") or [])]
        log(f"[{dtype_name}] loading info: missing {len(missing)} (lm_head excluded), unexpected {len(unexpected)}, "
            f"mismatched {len(mismatched)}")
        if missing or unexpected or mismatched:
            raise RuntimeError(f"weights did not load cleanly: missing {missing[:8]} unexpected {unexpected[:8]} "
                               f"mismatched {mismatched[:8]} (a randomly initialised reference would be meaningless)")
    model = model.to(dtype).to("cuda").eval()
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    if dtypes != [str(dtype)]:
        raise RuntimeError(f"expected all parameters {dtype}, got {dtypes}")
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    tied = emb.data_ptr() == head.data_ptr() or bool(torch.equal(emb, head))
    log(f"[{dtype_name}] lm_head == embed_tokens: {tied}; attn impl {getattr(model.config, '_attn_implementation', None)}")
    if not tied:
        raise RuntimeError("lm_head differs from embed_tokens; our engine ties them (tie_word_embeddings)")
    return model


def run_case(model, parts, gm, case_dir: str, dtype_name: str, explicit_check: bool) -> dict:
    import torch

    with open(os.path.join(case_dir, "case.json"), encoding="utf-8") as fh:
        case = json.load(fh)
    name = case.get("name", os.path.basename(case_dir))
    ids = [int(t) for t in case["input_ids"]]
    n = len(ids)
    image_token_id = int(case.get("image_token_id", 151655))
    t, gh, gw = [int(v) for v in case["image_grid_thw"]]
    rows, width = [int(v) for v in case["pixel_values_shape"]]
    start, count = [int(v) for v in case["positions_of_interest"]]
    rec: dict = {"case": name, "dtype": dtype_name, "tokens": n, "grid_thw": [t, gh, gw], "start": start, "count": count}

    # --- input checks -------------------------------------------------------------------
    mm = [int(v) for v in case["mm_token_type_ids"]]
    if len(mm) != n:
        raise ValueError(f"mm_token_type_ids has {len(mm)} entries, input_ids {n}")
    if mm != [1 if x == image_token_id else 0 for x in ids]:
        raise ValueError("mm_token_type_ids is not 1 exactly at the image pad tokens")
    n_img = sum(mm)
    if n_img * 4 != t * gh * gw or rows != t * gh * gw or width != 1176:
        raise ValueError(f"{n_img} image pads, pixel_values {rows}x{width}, grid {t}x{gh}x{gw} do not agree")
    if not (0 <= start and start + count <= n and count > 0):
        raise ValueError(f"positions_of_interest {start}+{count} outside 0..{n}")
    pv_np = np.fromfile(os.path.join(case_dir, case.get("pixel_values_file", "pixel_values.f32")), dtype="<f4")
    if pv_np.size != rows * width:
        raise ValueError(f"pixel_values.f32 holds {pv_np.size} floats, expected {rows}x{width}")
    pv_np = pv_np.reshape(rows, width)
    rec["pixel_values_abs_sum"] = float(np.abs(pv_np.astype(np.float64)).sum())

    dev = "cuda"
    dtype = next(model.parameters()).dtype
    input_ids = torch.tensor([ids], dtype=torch.long, device=dev)
    attn = torch.ones_like(input_ids)
    mm_t = torch.tensor([mm], dtype=torch.int32, device=dev)
    pixel_values = torch.from_numpy(pv_np.copy()).to(dev).to(dtype)
    grid = torch.tensor([[t, gh, gw]], dtype=torch.long, device=dev)
    inner = parts["inner"]

    def reset_rope():
        if hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None

    # --- positions: transformers' get_rope_index vs ours (case.json) and REXOMNI.md's rule ----------
    rule = mrope_positions(ids, image_token_id, gh, gw)
    rope = {"rule_max": int(rule.max())}
    try:
        reset_rope()
        pos, delta = gm.rope_index(inner, input_ids, mm_t, grid, attn)
        pos = pos.detach().cpu().numpy().reshape(3, -1)
        rope["transformers_vs_rule"] = bool(np.array_equal(pos, rule))
        rope["rope_delta"] = None if delta is None else int(np.asarray(delta.cpu()).reshape(-1)[0])
        if "position_ids" in case:
            ours = np.asarray(case["position_ids"], dtype=np.int64)
            rope["transformers_vs_ours"] = bool(ours.shape == pos.shape and np.array_equal(pos, ours))
            rope["ours_vs_rule"] = bool(ours.shape == rule.shape and np.array_equal(ours, rule))
            if not rope["transformers_vs_ours"]:
                d = np.argwhere(ours != pos) if ours.shape == pos.shape else None
                rope["first_difference"] = None if d is None or not len(d) else [int(x) for x in d[0]]
        rope["matches"] = rope["transformers_vs_rule"] and rope.get("transformers_vs_ours", True)
        log(f"[{dtype_name}] {name}: get_rope_index vs REXOMNI.md rule: {rope['transformers_vs_rule']}, "
            f"vs ours: {rope.get('transformers_vs_ours')}, rope_delta {rope['rope_delta']}, max {int(pos.max())}")
        if not rope["matches"]:
            problem(f"{name}: transformers' get_rope_index positions differ from ours/the rule: {rope}")
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        rope["error"] = f"{type(e).__name__}: {e}"
        rope["matches"] = False
        problem(f"{name}: get_rope_index failed: {rope['error']}")
    rec["rope_check"] = rope

    # --- the forward --------------------------------------------------------------------
    extra = {"mm_token_type_ids": mm_t} if gm.accepts_kw(model.forward, "mm_token_type_ids") else {}
    if not extra:
        problem("model.forward does not accept mm_token_type_ids: transformers may use 1D positions")
    rec["mm_token_type_ids_passed"] = bool(extra)
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.no_grad():
        reset_rope()
        out = model(input_ids=input_ids, attention_mask=attn, pixel_values=pixel_values, image_grid_thw=grid,
                    use_cache=False, **extra)
        torch.cuda.synchronize()
        rec["forward_seconds"] = round(time.perf_counter() - t0, 3)
        rows_t = out.logits[0, start:start + count].float()
        del out
        logits = rows_t.cpu().numpy().astype("<f4")
    rec["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
    vocab = logits.shape[1]
    rec["vocab"] = int(vocab)
    if logits.shape[0] != count:
        raise RuntimeError(f"got {logits.shape[0]} logit rows, expected {count}")
    if not np.isfinite(logits).all():
        raise RuntimeError(f"non-finite logits in {dtype_name} for {name}")
    path = os.path.join(case_dir, f"{dtype_name}.logits.f32")
    logits.tofile(path)
    rec["file"] = os.path.basename(path)
    rec["argmax"] = [int(v) for v in logits.argmax(axis=1)]
    rec["row_max_abs"] = [float(v) for v in np.abs(logits).max(axis=1)]
    srt = np.sort(logits, axis=1)
    rec["top1_top2_gap_min"] = float((srt[:, -1] - srt[:, -2]).min())
    rec["distinct_argmax"] = len(set(rec["argmax"]))
    log(f"[{dtype_name}] {name}: {n} tokens ({n_img} image), forward {rec['forward_seconds']} s, peak "
        f"{gib(rec['peak_memory_bytes'])}; rows {start}..{start + count - 1} -> {path}; max|logit| "
        f"{max(rec['row_max_abs']):.4f}, min top1-top2 gap {rec['top1_top2_gap_min']:.3g}, "
        f"{rec['distinct_argmax']} distinct argmax")

    # --- the same forward with our explicit positions (guards against a silent 1D fallback) -----
    if explicit_check:
        try:
            with torch.no_grad():
                reset_rope()
                pos_t = torch.from_numpy(rule).to(dev).view(3, 1, n)
                out2 = model(input_ids=input_ids, attention_mask=attn, pixel_values=pixel_values, image_grid_thw=grid,
                             use_cache=False, position_ids=pos_t, **extra)
                l2 = out2.logits[0, start:start + count].float().cpu().numpy()
                del out2
            d = float(np.abs(l2 - logits).max())
            rec["explicit_positions_max_abs_diff"] = d
            rel = d / max(1e-30, float(np.abs(logits).max()))
            log(f"[{dtype_name}] {name}: forward with explicit REXOMNI.md positions differs by {d:.3g} (rel {rel:.3g})")
            if rel > 1e-4:
                problem(f"{name}: logits with transformers' own positions differ from explicit M-RoPE positions by "
                        f"{d:g} (rel {rel:g}): transformers may be using 1D positions")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            rec["explicit_positions_error"] = f"{type(e).__name__}: {e}"
            problem(f"{name}: forward with explicit position_ids failed: {rec['explicit_positions_error']}")
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--cases", required=True, help="folder of case folders (each with case.json)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--fp32-attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--bf16-attn", default="sdpa", choices=["eager", "sdpa"])
    ap.add_argument("--no-explicit-check", action="store_true", help="skip the fp32 forward with explicit position ids")
    args = ap.parse_args(argv)

    import torch
    import transformers

    import golden_model as gm

    t_start = time.time()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        torch.set_float32_matmul_precision("highest")
    except Exception:  # noqa: BLE001
        pass
    if not torch.cuda.is_available():
        log("CUDA is not available to torch")
        return 1
    props = torch.cuda.get_device_properties(0)
    summary: dict = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__},
        "device": {"name": torch.cuda.get_device_name(0), "total_memory": int(props.total_memory),
                   "capability": f"{props.major}.{props.minor}"},
        "checkpoint": os.path.abspath(args.checkpoint),
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        "attention": {"fp32": args.fp32_attn, "bf16": args.bf16_attn},
        "rows_convention": "positions_of_interest [start, count]: logits rows start..start+count-1 of one "
                           "teacher-forced forward over input_ids (row r predicts the token after position start+r)",
        "loads": {}, "cases": {},
    }
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, {summary['device']}")
    case_dirs = sorted(os.path.join(args.cases, d) for d in os.listdir(args.cases)
                       if os.path.isfile(os.path.join(args.cases, d, "case.json")))
    if not case_dirs:
        log(f"no case folders (with case.json) in {args.cases}")
        return 1
    log(f"{len(case_dirs)} cases: {[os.path.basename(d) for d in case_dirs]}")
    per_case: dict[str, dict] = {os.path.basename(d): {} for d in case_dirs}
    failed = False

    for dtype_name in [d.strip() for d in args.dtypes.split(",") if d.strip()]:
        if dtype_name not in ("fp32", "bf16"):
            log(f"unknown dtype {dtype_name!r}")
            return 2
        attn = args.fp32_attn if dtype_name == "fp32" else args.bf16_attn
        t0 = time.time()
        try:
            model = load_model(args.checkpoint, dtype_name, attn)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            problem(f"[{dtype_name}] model load failed: {type(e).__name__}: {e}")
            failed = True
            continue
        load_s = round(time.time() - t0, 1)
        summary["loads"][dtype_name] = {"seconds": load_s, "attn": attn,
                                        "memory_allocated": int(torch.cuda.memory_allocated())}
        log(f"[{dtype_name}] loaded in {load_s} s, {gib(torch.cuda.memory_allocated())} on the GPU")
        parts = gm.find_parts(model)
        for d in case_dirs:
            key = os.path.basename(d)
            try:
                per_case[key][dtype_name] = run_case(model, parts, gm, d, dtype_name,
                                                     explicit_check=dtype_name == "fp32" and not args.no_explicit_check)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                per_case[key][dtype_name] = {"error": f"{type(e).__name__}: {e}"}
                problem(f"[{dtype_name}] case {key} failed: {type(e).__name__}: {e}")
                failed = True
        del model, parts
        gc.collect()
        torch.cuda.empty_cache()
        log(f"[{dtype_name}] freed: {gib(torch.cuda.memory_allocated())} still allocated")

    # fp32 vs bf16 at a glance (the TS test computes the real metrics)
    for key, recs in per_case.items():
        a, b = recs.get("fp32", {}), recs.get("bf16", {})
        if "argmax" in a and "argmax" in b:
            agree = sum(int(x == y) for x, y in zip(a["argmax"], b["argmax"])) / len(a["argmax"])
            recs["bf16_vs_fp32_top1"] = agree
            log(f"{key}: transformers bf16 vs fp32 top-1 agreement {100 * agree:.1f}% over {len(a['argmax'])} rows")
        with open(os.path.join(args.cases, key, "reference.json"), "w", encoding="utf-8") as fh:
            json.dump(recs, fh, indent=1)
        summary["cases"][key] = {k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items()
                                                                         if kk not in ("argmax", "row_max_abs")})
                                 for k, v in recs.items()}
    summary["problems"] = PROBLEMS
    summary["seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.cases, "reference_summary.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=1)
    log(f"done in {summary['seconds']} s; {len(PROBLEMS)} problem(s)")
    for p in PROBLEMS:
        log(f"  - {p}")
    # Problems (a position or 1D-fallback check) do not stop the comparison: the TS test fails on them
    # after printing its metrics. A case or load that failed does.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
