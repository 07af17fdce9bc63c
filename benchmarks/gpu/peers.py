#!/usr/bin/env python3
"""The peers of the GPU benchmark (benchmarks/gpu.ts): what the H200 and PyTorch do
with the same 3B-shaped checkpoint and the same inputs as our engine.

  python3 benchmarks/gpu/peers.py --checkpoint /tmp/rex-omni-3b --case <case dir> --out peers.json

<case dir> is written by benchmarks/gpu.ts (test/fixtures/gpu-harness.ts writeCaseDir):
case.json {input_ids, mm_token_type_ids, image_grid_thw, pixel_values_shape, ...} and
pixel_values.f32 (our CPU preprocessing of the 1000x750 photo).

Measures, in one run:
  1. the GPU, and its device-to-device copy bandwidth (a 4 GiB tensor copy; bytes read +
     written / median time) and from it the batch-1 decode roofline: the decoder's bf16 weight
     bytes (36 x q,k,v,o,gate,up,down weights + biases, plus the 151936x2048 LM head) / bandwidth;
  2. transformers (bf16, sdpa): vision alone (model.visual forward), time to first token
     (generate max_new_tokens=1), decode tokens/s ((t256 - t1) / 255, generate with
     min_new_tokens=max_new_tokens=256, greedy, repetition_penalty 1.05, mm_token_type_ids
     passed), peak memory (torch.cuda.max_memory_allocated);
  3. a hand-written PyTorch decode step (the same 36-layer decoder in plain torch ops over the
     checkpoint's bf16 tensors, static KV cache with a length mask), batch 1, one step captured
     in a CUDA graph and replayed 256 times: tokens/s. It is checked first against transformers'
     logits on a text-only prompt (reported).
Each timed thing: one warm-up, then the median of --runs (3). Writes --out (JSON) and prints a
table. Exit code 1 if a part failed (the JSON then says which, with the error).

Two more modes, for the serving benchmark (benchmarks/concurrency.ts):
  --mode gemm         the bf16 GEMM rate alone: torch.matmul of two 8192x8192 bf16 matrices,
                      2 * 8192^3 FLOPs / median time (the compute roofline's denominator);
  --mode concurrency  the GEMM rate, then transformers' batched generate at each --levels batch
                      size over the --cases (case dirs as above, one per image size, cycled over
                      the batch; prompts left-padded, mm_token_type_ids passed): generate 1 token
                      (first token), --coco-tokens and --dense-tokens tokens (min_new_tokens =
                      max_new_tokens, so every row runs that long), greedy, repetition penalty
                      1.05. Per batch: total ms, first-token ms, ms per decode step. Levels that
                      would pass --budget-s are skipped (and listed).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import struct
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(os.path.dirname(os.path.dirname(HERE)), "test", "golden")
if GOLDEN not in sys.path:
    sys.path.insert(0, GOLDEN)

import numpy as np  # noqa: E402

PAD_ID = 151643
IM_END_ID = 151645


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def gib(n: float) -> float:
    return round(n / 2**30, 3)


def median(xs):
    return float(statistics.median(xs))


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------

def read_case(case_dir: str) -> dict:
    with open(os.path.join(case_dir, "case.json"), encoding="utf-8") as fh:
        case = json.load(fh)
    rows, width = case["pixel_values_shape"]
    pv = np.fromfile(os.path.join(case_dir, case.get("pixel_values_file", "pixel_values.f32")), dtype="<f4")
    if pv.size != rows * width:
        raise ValueError(f"pixel_values.f32 holds {pv.size} floats, expected {rows}x{width}")
    case["pixel_values"] = pv.reshape(rows, width)
    ids = case["input_ids"]
    mm = case["mm_token_type_ids"]
    itok = int(case.get("image_token_id", 151655))
    if mm != [1 if t == itok else 0 for t in ids]:
        raise ValueError("mm_token_type_ids is not 1 exactly at the image pads")
    t, gh, gw = case["image_grid_thw"]
    if sum(mm) * 4 != t * gh * gw or rows != t * gh * gw:
        raise ValueError("image pads, pixel rows and grid disagree")
    log(f"case {case.get('name')}: {len(ids)} input ids ({sum(mm)} image), grid {case['image_grid_thw']}, "
        f"pixel_values {rows}x{width}")
    return case


def read_config(ckpt: str) -> dict:
    with open(os.path.join(ckpt, "config.json"), encoding="utf-8") as fh:
        cfg = json.load(fh)
    text = dict(cfg)
    if isinstance(cfg.get("text_config"), dict):
        text.update(cfg["text_config"])
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    theta = text.get("rope_theta") or (rope.get("rope_theta") if isinstance(rope, dict) else None) or 1e6
    return {"layers": int(text["num_hidden_layers"]), "hidden": int(text["hidden_size"]),
            "heads": int(text["num_attention_heads"]), "kv_heads": int(text["num_key_value_heads"]),
            "inter": int(text["intermediate_size"]), "vocab": int(text["vocab_size"]),
            "eps": float(text.get("rms_norm_eps", 1e-6)), "theta": float(theta),
            "tie": bool(cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", True)))}


# ---------------------------------------------------------------------------
# 1. bandwidth and roofline
# ---------------------------------------------------------------------------

def event_times(torch, fn, runs: int, warmup: int = 3) -> list:
    """fn() `warmup` times, then `runs` times each between two CUDA events: the seconds of each timed run."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    return times


def copy_bandwidth(torch, n_bytes: int = 4 << 30, runs: int = 10) -> dict:
    a = torch.empty(n_bytes, dtype=torch.uint8, device="cuda")
    a.fill_(7)
    b = torch.empty_like(a)
    times = event_times(torch, lambda: b.copy_(a), runs)
    ok = bool(torch.equal(a[:1 << 20], b[:1 << 20]))
    del a, b
    torch.cuda.empty_cache()
    t = median(times)
    bw = 2 * n_bytes / t
    log(f"D2D copy of {n_bytes / 2**30:.0f} GiB: median {t * 1e3:.3f} ms over {runs} -> {bw / 1e12:.3f} TB/s "
        f"(read + written); copy correct: {ok}")
    return {"bytes": n_bytes, "runs": runs, "median_s": t, "min_s": min(times), "bytes_per_s": bw, "copy_ok": ok}


def decoder_weight_bytes(c: dict) -> dict:
    h, kv = c["hidden"], c["kv_heads"] * (c["hidden"] // c["heads"])
    per_layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * c["inter"]  # q,k,v (+bias), o, gate, up, down
    lm_head = c["vocab"] * h
    elements = c["layers"] * per_layer + lm_head
    return {"per_layer_elements": per_layer, "lm_head_elements": lm_head, "elements": elements, "bytes": 2 * elements}


# ---------------------------------------------------------------------------
# 2. transformers
# ---------------------------------------------------------------------------

def load_transformers(torch, ckpt: str):
    import transformers
    cls = transformers.Qwen2_5_VLForConditionalGeneration
    errors = []
    for kw in ("dtype", "torch_dtype"):
        try:
            m = cls.from_pretrained(ckpt, **{kw: torch.bfloat16}, attn_implementation="sdpa")
            return m.to("cuda").eval()
        except TypeError as e:
            errors.append(f"{kw}: {e}")
    raise RuntimeError("from_pretrained failed: " + " | ".join(errors))


def bench_transformers(torch, gm, ckpt: str, case: dict, new_tokens: int, runs: int, text_ids: list[int]) -> dict:
    t0 = time.time()
    model = load_transformers(torch, ckpt)
    res: dict = {"load_s": round(time.time() - t0, 1), "attn_implementation": getattr(model.config, "_attn_implementation", None),
                 "dtype": "bfloat16"}
    log(f"[transformers] loaded in {res['load_s']} s, attn {res['attn_implementation']}, "
        f"{gib(torch.cuda.memory_allocated())} GiB allocated")
    parts = gm.find_parts(model)
    inner, visual = parts["inner"], parts["visual"]
    dev = "cuda"
    ids = case["input_ids"]
    input_ids = torch.tensor([ids], dtype=torch.long, device=dev)
    attn = torch.ones_like(input_ids)
    mm = torch.tensor([case["mm_token_type_ids"]], dtype=torch.int32, device=dev)
    pv = torch.from_numpy(case["pixel_values"].copy()).to(dev).to(torch.bfloat16)
    grid = torch.tensor([case["image_grid_thw"]], dtype=torch.long, device=dev)
    has_mm = gm.accepts_kw(model.forward, "mm_token_type_ids")
    res["mm_token_type_ids_passed"] = has_mm
    if not has_mm:
        log("[transformers] WARNING: forward does not accept mm_token_type_ids (1D positions!)")
    extra = {"mm_token_type_ids": mm} if has_mm else {}

    def reset():
        if hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None

    def timed(fn):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        return time.perf_counter() - t, out

    ref_logits = None
    with torch.no_grad():
        # vision alone
        try:
            vis = lambda: visual(pv, grid_thw=grid)  # noqa: E731
            timed(vis)
            vt = [timed(vis)[0] for _ in range(runs)]
            res["vision_ms"] = 1e3 * median(vt)
            res["vision_ms_runs"] = [1e3 * x for x in vt]
            log(f"[transformers] vision {res['vision_ms']:.1f} ms (runs {[round(1e3 * x, 1) for x in vt]})")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            res["vision_error"] = f"{type(e).__name__}: {e}"

        base = dict(input_ids=input_ids, attention_mask=attn, pixel_values=pv, image_grid_thw=grid, do_sample=False,
                    repetition_penalty=1.05, pad_token_id=PAD_ID, eos_token_id=IM_END_ID, temperature=None, top_p=None,
                    top_k=None, use_cache=True, **extra)

        def gen(n):
            reset()
            return model.generate(**base, max_new_tokens=n, min_new_tokens=n)

        # time to first token: generate one token (vision + prefill + the first sample)
        timed(lambda: gen(1))
        t1 = [timed(lambda: gen(1))[0] for _ in range(runs)]
        res["ttft_ms"] = 1e3 * median(t1)
        res["ttft_ms_runs"] = [1e3 * x for x in t1]
        log(f"[transformers] TTFT {res['ttft_ms']:.1f} ms (runs {[round(1e3 * x, 1) for x in t1]})")

        # new_tokens tokens
        timed(lambda: gen(new_tokens))
        torch.cuda.reset_peak_memory_stats()
        tn, out = [], None
        for _ in range(runs):
            dt, out = timed(lambda: gen(new_tokens))
            tn.append(dt)
        res["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        res["peak_memory_reserved_bytes"] = int(torch.cuda.max_memory_reserved())
        seq = (out.sequences if hasattr(out, "sequences") else out)[0].tolist()
        gen_tokens = seq[len(ids):]
        res["generated_tokens"] = len(gen_tokens)
        res["tokens"] = gen_tokens
        if len(gen_tokens) != new_tokens:
            log(f"[transformers] WARNING: generated {len(gen_tokens)} tokens, expected {new_tokens}")
        res[f"t{new_tokens}_ms"] = 1e3 * median(tn)
        res[f"t{new_tokens}_ms_runs"] = [1e3 * x for x in tn]
        res["decode_tokens_per_s"] = (new_tokens - 1) / (median(tn) - median(t1))
        log(f"[transformers] {new_tokens} tokens in {res[f't{new_tokens}_ms']:.0f} ms -> decode "
            f"{res['decode_tokens_per_s']:.1f} tokens/s; peak {gib(res['peak_memory_bytes'])} GiB allocated")

        # logits of a text-only prompt, to check the hand-written decoder against
        try:
            reset()
            ti = torch.tensor([text_ids], dtype=torch.long, device=dev)
            kw = {"mm_token_type_ids": torch.zeros_like(ti, dtype=torch.int32)} if has_mm else {}
            ref_logits = model(input_ids=ti, attention_mask=torch.ones_like(ti), use_cache=False,
                               **kw).logits[0, -1].float().cpu()
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            res["text_logits_error"] = f"{type(e).__name__}: {e}"
    del model, parts, inner, visual
    gc.collect()
    torch.cuda.empty_cache()
    return res, ref_logits


# ---------------------------------------------------------------------------
# 3. a hand-written decoder step in a CUDA graph
# ---------------------------------------------------------------------------

def tensor_files(ckpt: str) -> dict[str, str]:
    """tensor name -> file, from the index when sharded."""
    idx = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.isfile(idx):
        with open(idx, encoding="utf-8") as fh:
            return {k: os.path.join(ckpt, v) for k, v in json.load(fh)["weight_map"].items()}
    out = {}
    for fn in sorted(os.listdir(ckpt)):
        if fn.endswith(".safetensors"):
            path = os.path.join(ckpt, fn)
            with open(path, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                for k in json.loads(fh.read(n)):
                    if k != "__metadata__":
                        out[k] = path
    return out


class Weights:
    def __init__(self, torch, ckpt: str, cfg: dict):
        from safetensors import safe_open
        files = tensor_files(ckpt)
        pre = "model.language_model." if "model.language_model.embed_tokens.weight" in files else "model."
        handles = {}

        def get(name: str):
            path = files.get(name)
            if path is None:
                raise KeyError(f"tensor {name} not in the checkpoint")
            if path not in handles:
                handles[path] = safe_open(path, framework="pt", device="cuda")
            t = handles[path].get_tensor(name)
            if t.dtype != torch.bfloat16:
                t = t.to(torch.bfloat16)
            return t

        self.prefix = pre
        self.embed = get(pre + "embed_tokens.weight")
        self.norm = get(pre + "norm.weight")
        self.lm_head = self.embed if cfg["tie"] or "lm_head.weight" not in files else get("lm_head.weight")
        self.layers = []
        for i in range(cfg["layers"]):
            p = f"{pre}layers.{i}."
            a = p + "self_attn."
            m = p + "mlp."
            self.layers.append({
                "ln1": get(p + "input_layernorm.weight"),
                "ln2": get(p + "post_attention_layernorm.weight"),
                "wqkv": torch.cat([get(a + "q_proj.weight"), get(a + "k_proj.weight"), get(a + "v_proj.weight")], 0).contiguous(),
                "bqkv": torch.cat([get(a + "q_proj.bias"), get(a + "k_proj.bias"), get(a + "v_proj.bias")], 0).contiguous(),
                "wo": get(a + "o_proj.weight"),
                "wgu": torch.cat([get(m + "gate_proj.weight"), get(m + "up_proj.weight")], 0).contiguous(),
                "wd": get(m + "down_proj.weight"),
            })
        handles.clear()
        n = sum(t.numel() for L in self.layers for k, t in L.items() if k not in ("ln1", "ln2")) + self.lm_head.numel()
        self.matmul_bytes = 2 * n
        log(f"[graphed] loaded {cfg['layers']} decoder layers ({pre}*), {self.matmul_bytes / 1e9:.3f} GB of matmul weights")


class Decoder:
    """Batch-1 decode step over a static KV cache; all state on the GPU, so a step can be graphed."""

    def __init__(self, torch, w: Weights, cfg: dict, max_len: int):
        self.t, self.w, self.c, self.max_len = torch, w, cfg, max_len
        F = torch.nn.functional
        self.F = F
        hd = cfg["hidden"] // cfg["heads"]
        self.hd, self.nh, self.nkv = hd, cfg["heads"], cfg["kv_heads"]
        dev = "cuda"
        self.k = torch.zeros(cfg["layers"], self.nkv, max_len, hd, dtype=torch.bfloat16, device=dev)
        self.v = torch.zeros_like(self.k)
        self.tok = torch.zeros(1, dtype=torch.long, device=dev)
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.ar = torch.arange(max_len, device=dev)
        self.inv_freq = 1.0 / (cfg["theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32, device=dev) / hd))
        self.logits = torch.zeros(1, cfg["vocab"], dtype=torch.float32, device=dev)
        self.scale = 1.0 / math.sqrt(hd)

    def rms(self, x, weight):
        xf = x.float()
        xf = xf * self.t.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.c["eps"])
        return weight * xf.to(self.t.bfloat16)

    def rot(self, x, half):
        return self.t.cat([-x[..., half:], x[..., :half]], dim=-1)

    def step(self):
        torch, F, w = self.t, self.F, self.w
        hd, nh, nkv = self.hd, self.nh, self.nkv
        half = hd // 2
        x = F.embedding(self.tok, w.embed)  # [1, hidden]
        freqs = self.pos.float()[:, None] * self.inv_freq[None, :]  # [1, hd/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos = emb.cos().to(torch.bfloat16)
        sin = emb.sin().to(torch.bfloat16)
        bias = torch.zeros(self.max_len, dtype=torch.float32, device="cuda").masked_fill(self.ar > self.pos, float("-inf"))
        q_end, k_end = nh * hd, nh * hd + nkv * hd
        for i, L in enumerate(w.layers):
            h = self.rms(x, L["ln1"])
            qkv = F.linear(h, L["wqkv"], L["bqkv"])
            q = qkv[:, :q_end].view(nh, hd)
            k = qkv[:, q_end:k_end].view(nkv, hd)
            v = qkv[:, k_end:].view(nkv, hd)
            q = q * cos + self.rot(q, half) * sin
            k = k * cos + self.rot(k, half) * sin
            self.k[i].index_copy_(1, self.pos, k.unsqueeze(1))
            self.v[i].index_copy_(1, self.pos, v.unsqueeze(1))
            qg = q.view(nkv, nh // nkv, hd)
            s = torch.matmul(qg, self.k[i].transpose(1, 2)).float() * self.scale + bias  # [nkv, g, max_len]
            p = torch.softmax(s, dim=-1).to(torch.bfloat16)
            o = torch.matmul(p, self.v[i]).reshape(1, nh * hd)
            x = x + F.linear(o, L["wo"])
            h = self.rms(x, L["ln2"])
            g, u = F.linear(h, L["wgu"]).chunk(2, dim=-1)
            x = x + F.linear(F.silu(g) * u, L["wd"])
        x = self.rms(x, w.norm)
        logits = F.linear(x, w.lm_head).float()
        self.logits.copy_(logits)
        self.tok.copy_(logits.argmax(dim=-1))
        self.pos.add_(1)

    def set(self, tok: int, pos: int):
        self.tok.fill_(tok)
        self.pos.fill_(pos)


def bench_graphed(torch, ckpt: str, cfg: dict, context: int, new_tokens: int, runs: int, text_ids, ref_logits) -> dict:
    t0 = time.time()
    w = Weights(torch, ckpt, cfg)
    res: dict = {"load_s": round(time.time() - t0, 1), "context": context, "weight_bytes": w.matmul_bytes}
    max_len = int(math.ceil((context + new_tokens + 64) / 256) * 256)
    res["max_len"] = max_len
    dec = Decoder(torch, w, cfg, max_len)
    with torch.no_grad():
        # correctness: feed a text-only prompt step by step (eager), compare the last logits with transformers'
        for i, tok in enumerate(text_ids):
            dec.set(tok, i)
            dec.step()
        ours = dec.logits[0].cpu()
        if ref_logits is not None:
            cos = float(torch.nn.functional.cosine_similarity(ours[None], ref_logits[None]).item())
            rel = float((ours - ref_logits).abs().max() / ref_logits.abs().max())
            res["check"] = {"tokens": len(text_ids), "cosine_vs_transformers": cos, "rel_max_err": rel,
                            "argmax_ours": int(ours.argmax()), "argmax_transformers": int(ref_logits.argmax())}
            log(f"[graphed] check vs transformers bf16 on {len(text_ids)} text tokens: cosine {cos:.6f}, rel max err "
                f"{rel:.3g}, argmax {res['check']['argmax_ours']} vs {res['check']['argmax_transformers']}")
            if cos < 0.99:
                log("[graphed] WARNING: the hand-written decoder disagrees with transformers (cosine < 0.99)")
        # the context the timed steps attend over: random keys/values (the time does not depend on them)
        dec.k.normal_(0, 0.5)
        dec.v.normal_(0, 0.5)
        # capture
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                dec.set(text_ids[-1], context)
                dec.step()
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        dec.set(text_ids[-1], context)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            dec.step()
        # warm-up replays
        dec.set(text_ids[-1], context)
        for _ in range(16):
            g.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            dec.set(text_ids[-1], context)
            torch.cuda.synchronize()
            st = torch.cuda.Event(enable_timing=True)
            en = torch.cuda.Event(enable_timing=True)
            st.record()
            for _ in range(new_tokens):
                g.replay()
            en.record()
            en.synchronize()
            times.append(st.elapsed_time(en) / 1e3)
        end_pos = int(dec.pos.item())
        if end_pos != context + new_tokens:
            raise RuntimeError(f"after {new_tokens} replays the position is {end_pos}, expected {context + new_tokens}")
        # the same steps without the graph (eager), once, for scale
        dec.set(text_ids[-1], context)
        torch.cuda.synchronize()
        te = time.perf_counter()
        for _ in range(32):
            dec.step()
        torch.cuda.synchronize()
        eager_tps = 32 / (time.perf_counter() - te)
    t = median(times)
    res.update({"steps": new_tokens, "runs_s": times, "median_s": t, "tokens_per_s": new_tokens / t,
                "step_ms": 1e3 * t / new_tokens, "eager_tokens_per_s": eager_tps})
    log(f"[graphed] {new_tokens} graph replays at context {context}: median {t * 1e3:.1f} ms -> "
        f"{res['tokens_per_s']:.1f} tokens/s ({res['step_ms']:.3f} ms/step); eager {eager_tps:.1f} tokens/s")
    del dec, w, g
    gc.collect()
    torch.cuda.empty_cache()
    return res


# ---------------------------------------------------------------------------
# 4. the serving benchmark's peer: the GEMM rate, transformers' batched generate
# ---------------------------------------------------------------------------

def gemm_rate(torch, n: int = 8192, runs: int = 10) -> dict:
    a = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(n, n, dtype=torch.bfloat16, device="cuda")
    times = event_times(torch, lambda: torch.matmul(a, b), runs)
    del a, b
    torch.cuda.empty_cache()
    t = median(times)
    flops = 2.0 * n ** 3
    log(f"GEMM bf16 {n}x{n}x{n}: median {t * 1e3:.3f} ms over {runs} -> {flops / t / 1e12:.1f} TFLOP/s")
    return {"m": n, "n": n, "k": n, "dtype": "bfloat16", "runs": runs, "median_s": t, "min_s": min(times),
            "flops": flops, "flops_per_s": flops / t}


def batch_inputs(torch, cases: list, batch: int, pixels: list) -> dict:
    """`batch` requests cycling over the cases, left-padded to the longest prompt."""
    chosen = list(range(batch))
    rows = [cases[i % len(cases)] for i in chosen]
    width = max(len(c["input_ids"]) for c in rows)
    ids, mask, mm = [], [], []
    for c in rows:
        pad = width - len(c["input_ids"])
        ids.append([PAD_ID] * pad + c["input_ids"])
        mask.append([0] * pad + [1] * len(c["input_ids"]))
        mm.append([0] * pad + c["mm_token_type_ids"])
    dev = "cuda"
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long, device=dev),
        "attention_mask": torch.tensor(mask, dtype=torch.long, device=dev),
        "mm_token_type_ids": torch.tensor(mm, dtype=torch.int32, device=dev),
        "pixel_values": torch.cat([pixels[i % len(cases)] for i in chosen], 0),
        "image_grid_thw": torch.tensor([c["image_grid_thw"] for c in rows], dtype=torch.long, device=dev),
    }


def bench_concurrency(torch, gm, ckpt: str, case_dirs: list, levels: list, coco_tokens: int, dense_tokens: int,
                      budget_s: float) -> dict:
    cases = [read_case(d) for d in case_dirs]
    t0 = time.time()
    model = load_transformers(torch, ckpt)
    res: dict = {"load_s": round(time.time() - t0, 1), "levels": [], "skipped": [],
                 "attn_implementation": getattr(model.config, "_attn_implementation", None),
                 "coco_tokens": coco_tokens, "dense_tokens": dense_tokens,
                 "images": [c.get("name") for c in cases],
                 "note": (f"transformers {getattr(sys.modules.get('transformers'), '__version__', '?')} bf16 sdpa, one batched "
                          "generate per batch size (every row finishes with the batch), images cycled over the batch, "
                          "prompts left-padded, mm_token_type_ids passed; min_new_tokens = max_new_tokens; "
                          "first token: generate 1 token; ms per decode step: (t_n - t_1) / (n - 1).")}
    log(f"[concurrency] transformers loaded in {res['load_s']} s")
    parts = gm.find_parts(model)
    inner = parts["inner"]
    if not gm.accepts_kw(model.forward, "mm_token_type_ids"):
        raise RuntimeError("this transformers' forward does not take mm_token_type_ids (REXOMNI.md: the positions would be 1D)")
    pixels = [torch.from_numpy(c["pixel_values"].copy()).to("cuda").to(torch.bfloat16) for c in cases]

    def generate(inputs: dict, n: int) -> float:
        if hasattr(inner, "rope_deltas"):
            inner.rope_deltas = None
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = model.generate(**inputs, do_sample=False, repetition_penalty=1.05, pad_token_id=PAD_ID,
                             eos_token_id=IM_END_ID, temperature=None, top_p=None, top_k=None, use_cache=True,
                             max_new_tokens=n, min_new_tokens=n)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        seq = out.sequences if hasattr(out, "sequences") else out
        got = seq.shape[1] - inputs["input_ids"].shape[1]
        if got != n:
            raise RuntimeError(f"generate gave {got} new tokens, expected {n}")
        return dt

    started = time.time()
    with torch.no_grad():
        warm = batch_inputs(torch, cases, 1, pixels)
        generate(warm, 2)  # warm-up (kernels, allocator)
        first_ms_of: dict = {}  # batch -> ms of generate(1): vision, prefill, the first token
        step_s_of: dict = {}  # batch -> s per decode step
        last_step_s = None
        for answer, n in (("coco-like", coco_tokens), ("dense", dense_tokens)):
            if n <= 0:
                continue
            for batch in levels:
                spent = time.time() - started
                # The estimate: the first token scales with the batch (from batch 1's), a step is the one measured
                # at this batch, else twice the last one measured.
                f1 = first_ms_of.get(1, 150.0) / 1e3
                step = step_s_of.get(batch) or (2 * last_step_s if last_step_s else 0.06)
                est = (0 if batch in first_ms_of else batch * f1) + batch * f1 + n * step
                if spent + est > budget_s:
                    res["skipped"].append(f"{answer} batch {batch} (spent {spent:.0f} s, estimate {est:.0f} s, budget {budget_s:.0f} s)")
                    log(f"[concurrency] skipping {answer} batch {batch}: {spent:.0f} s spent, ~{est:.0f} s more")
                    continue
                try:
                    inputs = batch_inputs(torch, cases, batch, pixels)
                    torch.cuda.reset_peak_memory_stats()
                    if batch not in first_ms_of:
                        first_ms_of[batch] = 1e3 * generate(inputs, 1)
                    t_n = generate(inputs, n)
                    step_ms = (1e3 * t_n - first_ms_of[batch]) / max(n - 1, 1)
                    step_s_of[batch] = last_step_s = step_ms / 1e3
                    level = {"batch": batch, "answer": answer, "new_tokens": n, "total_ms": 1e3 * t_n,
                             "first_token_ms": first_ms_of[batch], "ms_per_decode_step": step_ms,
                             "peak_memory_bytes": int(torch.cuda.max_memory_allocated())}
                    res["levels"].append(level)
                    log(f"[concurrency] {answer} batch {batch}: first token {first_ms_of[batch]:.0f} ms, {n} tokens in "
                        f"{1e3 * t_n:.0f} ms ({step_ms:.2f} ms/step, {batch * n / t_n:.0f} tok/s, {batch / t_n:.2f} images/s), "
                        f"peak {gib(level['peak_memory_bytes'])} GiB")
                except Exception as e:  # noqa: BLE001
                    traceback.print_exc()
                    res.setdefault("level_errors", {})[f"{answer} batch {batch}"] = f"{type(e).__name__}: {e}"
                    gc.collect()
                    torch.cuda.empty_cache()
    res["seconds"] = round(time.time() - started, 1)
    del model, parts, inner, pixels
    gc.collect()
    torch.cuda.empty_cache()
    return res


def gpu_info(torch) -> "dict | None":
    """GPU 0's name, capability, memory and multiprocessors for a report (None, and logged, without CUDA)."""
    if not torch.cuda.is_available():
        log("CUDA is not available to torch")
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": torch.cuda.get_device_name(0), "capability": f"{props.major}.{props.minor}",
            "total_memory": int(props.total_memory), "multiprocessors": props.multi_processor_count}


def write_report(out: str, report: dict, t_start: float, failed: bool, summary=None) -> int:
    """Every mode's end: the report (with its total seconds) to `out` as JSON, then the
    mode's summary lines (summary(report), if given) and where it went; the exit code."""
    report["seconds"] = round(time.time() - t_start, 1)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1)
    if summary is not None:
        summary(report)
    log(f"wrote {out} in {report['seconds']} s; errors: {report['errors'] or 'none'}")
    return 1 if failed else 0


def main_serving(args) -> int:
    """--mode gemm / concurrency (the serving benchmark's peer)."""
    import torch

    t_start = time.time()
    gpu = gpu_info(torch)
    if gpu is None:
        return 1
    report: dict = {
        "mode": args.mode,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "gpu": gpu,
        "errors": {},
    }
    failed = False
    try:
        report["gemm"] = gemm_rate(torch)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        report["errors"]["gemm"] = f"{type(e).__name__}: {e}"
        failed = True
    if args.mode == "concurrency":
        try:
            import transformers

            import golden_model as gm
            report["versions"]["transformers"] = transformers.__version__
            if not args.cases:
                raise ValueError("--mode concurrency needs --cases DIR[,DIR...]")
            levels = [int(x) for x in args.levels.split(",") if x.strip()]
            report["concurrency"] = bench_concurrency(torch, gm, args.checkpoint, args.cases.split(","), levels,
                                                      args.coco_tokens, args.dense_tokens, args.budget_s)
            if report["concurrency"].get("level_errors"):
                report["errors"]["concurrency_levels"] = json.dumps(report["concurrency"]["level_errors"])
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report["errors"]["concurrency"] = f"{type(e).__name__}: {e}"
            failed = True
    return write_report(args.out, report, t_start, failed)


# ---------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["peers", "gemm", "concurrency"], default="peers",
                    help="peers (default): the GPU benchmark's peers; gemm, concurrency: the serving benchmark's")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--case", help="case folder (case.json + pixel_values.f32); --mode peers")
    ap.add_argument("--out", required=True, help="JSON report to write")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: bandwidth,transformers,graphed")
    ap.add_argument("--cases", default="", help="--mode concurrency: comma list of case folders")
    ap.add_argument("--levels", default="1,8,32,64,128", help="--mode concurrency: batch sizes")
    ap.add_argument("--coco-tokens", type=int, default=45, help="--mode concurrency: tokens of the COCO-like runs")
    ap.add_argument("--dense-tokens", type=int, default=64, help="--mode concurrency: tokens of the dense runs (0: none)")
    ap.add_argument("--budget-s", type=float, default=150.0, help="--mode concurrency: seconds for transformers' levels")
    args = ap.parse_args(argv)
    if args.mode != "peers":
        return main_serving(args)
    if not args.case:
        ap.error("--mode peers needs --case")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    import torch
    import transformers

    import golden_model as gm

    t_start = time.time()
    gpu = gpu_info(torch)
    if gpu is None:
        return 1
    report: dict = {
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "gpu": gpu,
        "new_tokens": args.new_tokens, "runs": args.runs, "errors": {},
    }
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, GPU {report['gpu']}")
    cfg = read_config(args.checkpoint)
    report["config"] = cfg
    case = read_case(args.case)
    ids = case["input_ids"]
    itok = int(case.get("image_token_id", 151655))
    first_pad = ids.index(itok) if itok in ids else len(ids)
    text_ids = ids[:min(first_pad, 24)]  # the chat text before the image: text-only positions
    report["prompt_tokens"] = len(ids)
    report["image_tokens"] = int(sum(case["mm_token_type_ids"]))

    wb = decoder_weight_bytes(cfg)
    report["decoder_weights"] = wb
    log(f"decoder weight bytes (bf16): {wb['bytes'] / 1e9:.3f} GB ({cfg['layers']} layers x {wb['per_layer_elements']} + "
        f"LM head {wb['lm_head_elements']})")

    failed = False
    if "bandwidth" not in skip:
        try:
            bw = copy_bandwidth(torch)
            report["bandwidth"] = bw
            step = wb["bytes"] / bw["bytes_per_s"]
            report["roofline"] = {"step_ms": 1e3 * step, "tokens_per_s": 1 / step}
            log(f"roofline: {1e3 * step:.3f} ms per decode step -> {1 / step:.1f} tokens/s")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report["errors"]["bandwidth"] = f"{type(e).__name__}: {e}"
            failed = True

    ref_logits = None
    if "transformers" not in skip:
        try:
            res, ref_logits = bench_transformers(torch, gm, args.checkpoint, case, args.new_tokens, args.runs, text_ids)
            report["transformers"] = res
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report["errors"]["transformers"] = f"{type(e).__name__}: {e}"
            failed = True
        gc.collect()
        torch.cuda.empty_cache()

    if "graphed" not in skip:
        try:
            report["graphed"] = bench_graphed(torch, args.checkpoint, cfg, len(ids), args.new_tokens, args.runs,
                                              text_ids, ref_logits)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            report["errors"]["graphed"] = f"{type(e).__name__}: {e}"
            failed = True

    def log_summary(report: dict) -> None:
        tf = report.get("transformers", {})
        gr = report.get("graphed", {})
        rf = report.get("roofline", {})
        log("summary:")
        log(f"  GPU {report['gpu']['name']}, D2D {report.get('bandwidth', {}).get('bytes_per_s', float('nan')) / 1e12:.3f} TB/s")
        log(f"  transformers: vision {tf.get('vision_ms', float('nan')):.1f} ms, TTFT {tf.get('ttft_ms', float('nan')):.1f} ms, "
            f"decode {tf.get('decode_tokens_per_s', float('nan')):.1f} tok/s, peak {gib(tf.get('peak_memory_bytes', 0))} GiB")
        log(f"  graphed PyTorch decode: {gr.get('tokens_per_s', float('nan')):.1f} tok/s")
        log(f"  roofline: {rf.get('tokens_per_s', float('nan')):.1f} tok/s ({rf.get('step_ms', float('nan')):.3f} ms/step)")

    return write_report(args.out, report, t_start, failed, log_summary)


if __name__ == "__main__":
    sys.exit(main())
