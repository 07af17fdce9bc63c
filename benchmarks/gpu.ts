// The GPU benchmark (part of `npm run bench` when the CUDA backend loads):
// the generated 3B-shaped checkpoint ($REX_OMNI_3B_DIR or /tmp/rex-omni-3b,
// made if absent), a real photo resized to exactly 1000x750, and the
// 80-COCO-category detection prompt (about 1200 prompt tokens).
//
//  - peers (benchmarks/gpu/peers.py, run first, in its own process): the GPU,
//    its device-to-device copy bandwidth and the decode roofline;
//    transformers bf16/sdpa (vision, TTFT, decode tokens/s, peak memory); a
//    hand-written PyTorch decode step replayed in a CUDA graph;
//  - ours (Engine, backend 'cuda'): preprocess, vision, prefill, TTFT (the
//    finish event's timings and the wall clock), batch-1 decode tokens/s over
//    256 unconstrained greedy tokens (repetition penalty 1.05, no stop tokens),
//    peak GPU memory (engine.info());
//  - kernel by kernel (native/cuda/step_profile.h, benchmarks/kernel-profile.ts):
//    one eager decode step at batch 1, 8 and 64 (REX_OMNI_PROFILE_STEP), the
//    second prefill call of 512+ rows and the second vision pass of 1024+
//    patches of our engine's runs (REX_OMNI_PROFILE_PREFILL), each kind's
//    time against its bytes and FLOPs.
// One warm-up, then the median of 3. A benchmark, not a test: nothing asserts
// a speed; the numbers are printed and returned for run.ts's JSON.
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

import { Engine, type EngineInfo } from '../lib/engine.js';
import { benchmarkDecode, type DecodeBench } from './gpu-decode.js';
import { formatKernelProfile, profileSibling, readKernelProfile, type KernelProfile } from './kernel-profile.js';
import { loadImage } from '../lib/image/index.js';
import { loadAddon } from '../lib/native.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import {
  buildCase,
  ensure3bCheckpoint,
  log,
  photoPath,
  runPython,
  scratchDir,
  textTable,
  writeCaseDir,
} from '../test/fixtures/gpu-harness.js';

export const COCO_CATEGORIES = [
  'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
  'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
  'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
  'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
  'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
  'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed',
  'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven',
  'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush',
];

const WIDTH = 1000;
const HEIGHT = 750;
const NEW_TOKENS = 256;
const RUNS = 3;
const SOURCE_PHOTO = 'cafe.jpg';

interface OurRun {
  wallMs: number;
  ttftWallMs: number;
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  ttftMs: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
  decodeWallTokensPerSecond: number;
  generatedTokens: number;
  reason: string;
  tokens: number[];
}

export interface GpuBenchResult {
  gpu: { name: string | undefined; copyBandwidthBytesPerSecond: number | undefined };
  checkpoint: string;
  image: { source: string; file: string; width: number; height: number; resizedWidth: number; resizedHeight: number };
  promptTokens: number;
  imageTokens: number;
  newTokens: number;
  runs: number;
  roofline: { decoderWeightBytes: number | undefined; stepMs: number | undefined; tokensPerSecond: number | undefined };
  ours: {
    median: Omit<OurRun, 'tokens' | 'reason'> & { peakBytes: number | undefined };
    runs: Omit<OurRun, 'tokens'>[];
    info: EngineInfo | undefined;
    tokensMatchingTransformers: { matching: number; commonPrefix: number } | undefined;
  } | { error: string };
  transformers: Record<string, unknown> | undefined;
  graphedPytorch: Record<string, unknown> | undefined;
  /** Batch-1 decode tokens/s over the roofline's (weights / D2D bandwidth). */
  fractionOfRoofline: { textSteps: number; coordinateSteps: number } | undefined;
  decode: DecodeBench | { error: string } | undefined;
  /** One eager batch-1 step, kernel by kernel, against each kernel's bytes (step_profile.h). */
  stepProfile: StepProfile | undefined;
  /** The same for one step of 8 and of 64 rows (the aggregate runs' 1200-token contexts). */
  stepProfileBatch8: StepProfile | undefined;
  stepProfileBatch64: StepProfile | undefined;
  /** One prefill call of our runs (the warm-up's first 512+-row call warms it), kernel by kernel, with FLOPs (rows, past: its shape). */
  prefillProfile: KernelProfile | undefined;
  /** One vision encoder pass of our runs (the second of 1024+ patches), kernel by kernel, with FLOPs. */
  visionProfile: KernelProfile | undefined;
  /** The second short prefill call that continues one sequence (a question after its image's prefix: the prefix cache's cached path), kernel by kernel. */
  suffixProfile: KernelProfile | undefined;
  /** Where the profiles were to be written (a missing one is reported, not fatal). */
  profileFiles: { step: string; prefill: string; vision: string; suffix: string };
  peersErrors: Record<string, string>;
  peersFailure?: string;
}

type StepProfile = KernelProfile;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function makeImage(): Promise<{ file: string; data: Uint8Array; width: number; height: number }> {
  const file = join(scratchDir('bench'), `bench-${WIDTH}x${HEIGHT}.png`);
  await sharp(photoPath(SOURCE_PHOTO)).resize(WIDTH, HEIGHT, { fit: 'fill' }).removeAlpha().png().toFile(file);
  const decoded = await loadImage(file, { applyExif: false });
  if (decoded.width !== WIDTH || decoded.height !== HEIGHT) {
    throw new Error(`expected the benchmark image to be ${WIDTH}x${HEIGHT} but got ${decoded.width}x${decoded.height}`);
  }
  log(`benchmark image ${file}: ${SOURCE_PHOTO} resized to ${WIDTH}x${HEIGHT} (PNG, lossless)`);
  return { file, data: decoded.rgb, width: decoded.width, height: decoded.height };
}

async function runOurs(engine: Engine, request: Parameters<Engine['stream']>[0]): Promise<OurRun> {
  const started = performance.now();
  let first: number | undefined;
  let lastToken = started;
  const tokens: number[] = [];
  for await (const event of engine.stream(request)) {
    if (event.type === 'token') {
      const now = performance.now();
      first ??= now;
      lastToken = now;
      tokens.push(event.token);
      continue;
    }
    const wallMs = performance.now() - started;
    if (event.reason === 'error') throw event.error ?? new Error('generation failed');
    const t = event.timings;
    const steps = Math.max(event.generatedTokens - 1, 0);
    return {
      wallMs,
      ttftWallMs: (first ?? performance.now()) - started,
      preprocessMs: t.preprocessMs,
      visionMs: t.visionMs,
      prefillMs: t.prefillMs,
      ttftMs: t.preprocessMs + t.visionMs + t.prefillMs,
      decodeMs: t.decodeMs,
      decodeTokensPerSecond: t.decodeMs > 0 ? steps / (t.decodeMs / 1000) : NaN,
      decodeWallTokensPerSecond: first !== undefined && lastToken > first ? (tokens.length - 1) / ((lastToken - first) / 1000) : NaN,
      generatedTokens: event.generatedTokens,
      reason: event.reason,
      tokens,
    };
  }
  throw new Error('the stream ended without a finish event');
}

/** `peers: false` measures ours alone (no transformers, graphed step or roofline): A/B runs. */
export async function benchmarkGpu(options: { peers?: boolean } = {}): Promise<GpuBenchResult> {
  const dir = await ensure3bCheckpoint();
  const { addon } = loadAddon();
  const tokenizer = await RexTokenizer.fromDir(dir);
  const image = await makeImage();
  const c = await buildCase({
    name: 'coco80_1000x750',
    task: { task: 'detection', categories: COCO_CATEGORIES },
    imageFile: image.file,
    image,
    tokenizer,
    addon,
    continuationTokens: 0,
  });
  const caseDir = writeCaseDir(scratchDir('bench'), c);

  // Peers first, in their own process: the GPU is free again when ours loads.
  const peersJson = join(caseDir, 'peers.json');
  let peersFailure: string | undefined;
  if (options.peers !== false) {
    try {
      runPython('benchmarks/gpu/peers.py', ['--checkpoint', dir, '--case', caseDir, '--out', peersJson, '--new-tokens', String(NEW_TOKENS), '--runs', String(RUNS)], 45 * 60_000);
    } catch (error) {
      peersFailure = (error as Error).message;
      log(`peers.py failed: ${peersFailure}`);
    }
  }
  const peers = (existsSync(peersJson) ? JSON.parse(readFileSync(peersJson, 'utf8')) : {}) as {
    gpu?: { name?: string };
    bandwidth?: { bytes_per_s?: number };
    roofline?: { step_ms?: number; tokens_per_s?: number };
    decoder_weights?: { bytes?: number };
    transformers?: Record<string, unknown> & { tokens?: number[] };
    graphed?: Record<string, unknown>;
    errors?: Record<string, string>;
  };

  // Ours. The backend profiles one batch-1 step of the warm-up, its second
  // prefill call of 512+ rows and its second vision pass (step_profile.h).
  // Stale profiles of an earlier run go first: a missing one must read as missing.
  const profileFile = join(caseDir, 'step-profile.json');
  const prefillProfileFile = join(caseDir, 'prefill-profile.json');
  const visionProfileFile = profileSibling(prefillProfileFile, '.vision');
  const suffixProfileFile = profileSibling(prefillProfileFile, '.suffix');
  for (const f of [profileFile, profileSibling(profileFile, '.batch8'), profileSibling(profileFile, '.batch64'), prefillProfileFile, visionProfileFile, suffixProfileFile])
    rmSync(f, { force: true });
  process.env.REX_OMNI_PROFILE_STEP = profileFile;
  process.env.REX_OMNI_PROFILE_PREFILL = prefillProfileFile;
  let ours: GpuBenchResult['ours'];
  try {
    // No prefix cache: every run on the one image takes the full path (vision,
    // prefill). Sized for the one request it runs (maxActiveRequests 1: the
    // KV pool holds one sequence), so peakBytes is batch 1's footprint; the
    // default engine keeps room for 8.
    const engine = await Engine.open(dir, { backend: 'cuda', prefixCacheGB: 0, maxActiveRequests: 1 });
    try {
      const request = {
        promptIds: c.promptIds,
        image: { data: image.data, width: image.width, height: image.height },
        maxNewTokens: NEW_TOKENS,
        stopTokenIds: [] as number[],
        sampling: { temperature: 0, repetitionPenalty: 1.05 },
      };
      log('ours: warm-up run');
      const warm = await runOurs(engine, request);
      log(`ours: warm-up ${warm.wallMs.toFixed(0)} ms, ${warm.generatedTokens} tokens`);
      const runs: OurRun[] = [];
      for (let i = 0; i < RUNS; ++i) {
        const r = await runOurs(engine, request);
        log(
          `ours run ${i + 1}: preprocess ${r.preprocessMs.toFixed(1)} ms, vision ${r.visionMs.toFixed(1)} ms, prefill ${r.prefillMs.toFixed(1)} ms, ` +
            `TTFT ${r.ttftMs.toFixed(1)} ms (wall ${r.ttftWallMs.toFixed(1)} ms), decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s ` +
            `(wall ${r.decodeWallTokensPerSecond.toFixed(1)}), ${r.generatedTokens} tokens (${r.reason})`,
        );
        if (r.generatedTokens !== NEW_TOKENS) log(`WARNING: ours generated ${r.generatedTokens} tokens, expected ${NEW_TOKENS}`);
        runs.push(r);
      }
      const info = engine.info();
      const pick = (k: keyof Omit<OurRun, 'tokens' | 'reason'>) => median(runs.map((r) => r[k]));
      const tfTokens = peers.transformers?.tokens;
      let tokensMatchingTransformers: { matching: number; commonPrefix: number } | undefined;
      if (Array.isArray(tfTokens)) {
        const a = runs[0]!.tokens;
        let matching = 0;
        let commonPrefix = 0;
        for (let i = 0; i < Math.min(a.length, tfTokens.length); ++i) if (a[i] === tfTokens[i]) matching++;
        while (commonPrefix < a.length && a[commonPrefix] === tfTokens[commonPrefix]) commonPrefix++;
        tokensMatchingTransformers = { matching, commonPrefix };
      }
      ours = {
        median: {
          wallMs: pick('wallMs'),
          ttftWallMs: pick('ttftWallMs'),
          preprocessMs: pick('preprocessMs'),
          visionMs: pick('visionMs'),
          prefillMs: pick('prefillMs'),
          ttftMs: pick('ttftMs'),
          decodeMs: pick('decodeMs'),
          decodeTokensPerSecond: pick('decodeTokensPerSecond'),
          decodeWallTokensPerSecond: pick('decodeWallTokensPerSecond'),
          generatedTokens: pick('generatedTokens'),
          peakBytes: info.memory?.peakBytes,
        },
        runs: runs.map(({ tokens: _tokens, ...rest }) => rest),
        info,
        tokensMatchingTransformers,
      };
    } finally {
      await engine.close();
    }
  } catch (error) {
    log(`ours failed: ${(error as Error).stack ?? String(error)}`);
    ours = { error: (error as Error).message };
  }
  // The prefill and vision profiles are this engine's (one request, past 0);
  // the decode benchmark's engines would write theirs over them.
  delete process.env.REX_OMNI_PROFILE_PREFILL;

  let decode: GpuBenchResult['decode'];
  try {
    decode = await benchmarkDecode(dir, tokenizer, { promptIds: c.promptIds, image: { data: image.data, width: image.width, height: image.height } }, COCO_CATEGORIES);
  } catch (error) {
    log(`decode benchmark failed: ${(error as Error).stack ?? String(error)}`);
    decode = { error: (error as Error).message };
  }
  const roofTps = peers.roofline?.tokens_per_s;
  const stepProfile = readKernelProfile(profileFile);
  const stepProfileBatch8 = readKernelProfile(profileSibling(profileFile, '.batch8'));
  const stepProfileBatch64 = readKernelProfile(profileSibling(profileFile, '.batch64'));
  const prefillProfile = readKernelProfile(prefillProfileFile);
  const visionProfile = readKernelProfile(visionProfileFile);
  const suffixProfile = readKernelProfile(suffixProfileFile);
  const fractionOfRoofline =
    roofTps && decode && 'textSteps' in decode
      ? { textSteps: decode.textSteps.decodeTokensPerSecond / roofTps, coordinateSteps: decode.coordinateStepsCoordinateHead.decodeTokensPerSecond / roofTps }
      : undefined;

  const { tokens: _tfTokens, ...transformers } = peers.transformers ?? {};
  const result: GpuBenchResult = {
    gpu: { name: peers.gpu?.name ?? ('info' in ours ? ours.info?.device?.name : undefined), copyBandwidthBytesPerSecond: peers.bandwidth?.bytes_per_s },
    checkpoint: dir,
    image: { source: SOURCE_PHOTO, file: image.file, width: WIDTH, height: HEIGHT, resizedWidth: c.pre.resizedWidth, resizedHeight: c.pre.resizedHeight },
    promptTokens: c.promptIds.length,
    imageTokens: c.imageTokens,
    newTokens: NEW_TOKENS,
    runs: RUNS,
    roofline: { decoderWeightBytes: peers.decoder_weights?.bytes, stepMs: peers.roofline?.step_ms, tokensPerSecond: peers.roofline?.tokens_per_s },
    ours,
    transformers: peers.transformers ? transformers : undefined,
    graphedPytorch: peers.graphed,
    fractionOfRoofline,
    decode,
    stepProfile,
    stepProfileBatch8,
    stepProfileBatch64,
    prefillProfile,
    visionProfile,
    suffixProfile,
    profileFiles: { step: profileFile, prefill: prefillProfileFile, vision: visionProfileFile, suffix: suffixProfileFile },
    peersErrors: peers.errors ?? {},
    ...(peersFailure ? { peersFailure } : {}),
  };
  printGpuTable(result);
  return result;
}

/** The kernel-by-kernel tables: the decode steps, then the prefill call and the vision pass. */
export function printKernelProfiles(
  r: Pick<GpuBenchResult, 'stepProfile' | 'stepProfileBatch8' | 'stepProfileBatch64' | 'prefillProfile' | 'visionProfile' | 'suffixProfile'> & {
    gpu: Pick<GpuBenchResult['gpu'], 'copyBandwidthBytesPerSecond'>;
    profileFiles?: GpuBenchResult['profileFiles'];
  },
): void {
  const bw = r.gpu.copyBandwidthBytesPerSecond;
  const files = r.profileFiles;
  const step = (rows: number, p: StepProfile | undefined, file: string | undefined) =>
    console.log(formatKernelProfile(`one batch-${rows} step, eager, kernel by kernel`, p, { file, copyBandwidthBytesPerSecond: bw }));
  step(1, r.stepProfile, files?.step);
  step(8, r.stepProfileBatch8, files && profileSibling(files.step, '.batch8'));
  step(64, r.stepProfileBatch64, files && profileSibling(files.step, '.batch64'));
  console.log(formatKernelProfile('one prefill call, eager, kernel by kernel', r.prefillProfile, { file: files?.prefill, copyBandwidthBytesPerSecond: bw }));
  console.log(formatKernelProfile('one vision pass, eager, kernel by kernel', r.visionProfile, { file: files?.vision, copyBandwidthBytesPerSecond: bw }));
  console.log(formatKernelProfile("a question's prefill after its image's prefix, eager, kernel by kernel", r.suffixProfile, { file: files?.suffix, copyBandwidthBytesPerSecond: bw }));
}

const num = (v: unknown, digits = 1): string => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '-');
const gib = (v: unknown): string => (typeof v === 'number' ? (v / 2 ** 30).toFixed(2) : '-');

export function printGpuTable(r: GpuBenchResult): void {
  const o = 'median' in r.ours ? r.ours.median : undefined;
  const tf = r.transformers ?? {};
  const g = r.graphedPytorch ?? {};
  const rows = [
    {
      side: 'ours (cuda)',
      'preprocess ms': num(o?.preprocessMs),
      'vision ms': num(o?.visionMs),
      'prefill ms': num(o?.prefillMs),
      'TTFT ms': o ? `${num(o.ttftMs)} (wall ${num(o.ttftWallMs)})` : '-',
      'decode tok/s': o ? `${num(o.decodeTokensPerSecond)} (wall ${num(o.decodeWallTokensPerSecond)})` : '-',
      'peak GiB': gib(o?.peakBytes),
    },
    {
      side: 'transformers bf16 sdpa',
      'preprocess ms': '-',
      'vision ms': num(tf.vision_ms),
      'prefill ms': '-',
      'TTFT ms': num(tf.ttft_ms),
      'decode tok/s': num(tf.decode_tokens_per_s),
      'peak GiB': gib(tf.peak_memory_bytes),
    },
    {
      side: 'graphed PyTorch step',
      'preprocess ms': '-',
      'vision ms': '-',
      'prefill ms': '-',
      'TTFT ms': '-',
      'decode tok/s': num(g.tokens_per_s),
      'peak GiB': '-',
    },
    {
      side: 'roofline (weights / D2D bw)',
      'preprocess ms': '-',
      'vision ms': '-',
      'prefill ms': '-',
      'TTFT ms': '-',
      'decode tok/s': num(r.roofline.tokensPerSecond),
      'peak GiB': '-',
    },
  ];
  console.log(
    `\n==== GPU benchmark: ${r.gpu.name ?? 'unknown GPU'}, D2D copy ${num((r.gpu.copyBandwidthBytesPerSecond ?? NaN) / 1e12, 3)} TB/s; ` +
      `${r.image.width}x${r.image.height} -> ${r.image.resizedWidth}x${r.image.resizedHeight}, ${r.imageTokens} image / ${r.promptTokens} prompt tokens, ` +
      `${r.newTokens} new tokens, median of ${r.runs}\n` +
      `roofline: ${num((r.roofline.decoderWeightBytes ?? NaN) / 1e9, 3)} GB decoder weights -> ${num(r.roofline.stepMs, 3)} ms/step\n` +
      textTable(rows),
  );
  if ('error' in r.ours) console.log(`ours failed: ${r.ours.error}`);
  const d = r.decode;
  if (d && 'textSteps' in d) {
    console.log(
      `decode, batch 1: text steps ${num(d.textSteps.decodeTokensPerSecond)} tok/s, coordinate steps ${num(d.coordinateStepsCoordinateHead.decodeTokensPerSecond)} tok/s ` +
        `(coordinate head; ${num(d.coordinateStepsFullHead.decodeTokensPerSecond)} with the full head), ` +
        `x${num(d.coordinateStepSpeedupOverText, 3)}; fraction of the roofline ${num(r.fractionOfRoofline?.textSteps, 3)} / ${num(r.fractionOfRoofline?.coordinateSteps, 3)}`,
    );
    for (const e of d.endToEnd) console.log(`end to end: ${e.tokens}-token answer ${num(e.wallMs)} ms (first token ${num(e.ttftMs)} ms)`);
    for (const s of d.stepsPerBox)
      console.log(`jump-forward ${s.jumpForward ? 'on ' : 'off'}: ${num(s.stepsPerBox, 2)} decode steps per box (${num(s.boxes, 0)} boxes, ${s.tokens} tokens, ${s.decodeSteps} steps)`);
    console.log(textTable(d.aggregate.map((a) => ({ batch: String(a.batch), 'aggregate tok/s': num(a.tokensPerSecond, 0), 'ms/step': num(a.stepMs, 2), 'tok/s per request': num(a.perRequestTokensPerSecond) }))));
    const pc = d.prefixCache;
    console.log(
      `prefix cache, five questions on one image: time to first token uncached ${pc.uncachedTtftMs.map((t) => num(t)).join(' / ')} ms, ` +
        `cached ${pc.cachedTtftMs.map((t) => num(t)).join(' / ')} ms (${pc.cachedTokens} tokens from the cache), x${num(pc.secondTaskSpeedup)} from the second on`,
    );
  } else if (d) console.log(`decode benchmark failed: ${d.error}`);
  printKernelProfiles(r);
  if ('median' in r.ours && r.ours.tokensMatchingTransformers)
    console.log(
      `ours vs transformers greedy tokens: ${r.ours.tokensMatchingTransformers.matching}/${r.newTokens} equal, common prefix ${r.ours.tokensMatchingTransformers.commonPrefix}`,
    );
  if (Object.keys(r.peersErrors).length || r.peersFailure) console.log(`peers errors: ${JSON.stringify(r.peersErrors)} ${r.peersFailure ?? ''}`);
}
