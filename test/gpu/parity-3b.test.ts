// GPU machine only (`npm run test:gpu`): the CUDA engine at the full
// Qwen2.5-VL-3B shape against transformers, on a random 3B checkpoint that
// this test generates (test/gpu/make_checkpoint_3b.py; $REX_OMNI_3B_DIR or
// /tmp/rex-omni-3b).
//
// Three real-photo cases (detection, pointing, person keypoints), prompts from
// our prompt builder and tokenizer, pixels from our CPU preprocessing, so that
// transformers and we see identical inputs; each is teacher-forced with a
// 64-token plausible answer. Rows compared: the prompt's last token plus the
// 64 continuation tokens = 65 rows (row r is the distribution after prompt +
// continuation[0..r); the last row predicts beyond the continuation), the
// same rows on all three sides: transformers fp32 (the reference), transformers
// bf16, and ours (engine.score with fullLogits).
//
// Pass, per case (the issue's rule): ours top-1 agreement with fp32 >= tf-bf16's
// minus 3 points; ours min cosine >= tf-bf16's - 0.0005; ours relative max
// error <= 1.5 x tf-bf16's.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine } from '../../lib/engine.js';
import { loadAddon } from '../../lib/native.js';
import type { TaskSpec } from '../../lib/tasks/index.js';
import { RexTokenizer } from '../../lib/tokenizer.js';
import {
  acquireGpuLock,
  allFinite,
  argmax,
  buildCase,
  compareRows,
  ensure3bCheckpoint,
  log,
  logSoftmaxAt,
  positionsOfInterest,
  readF32,
  runPython,
  scratchDir,
  textTable,
  writeCaseDir,
  writeReport,
  type BuiltCase,
  type RowMetrics,
} from '../fixtures/gpu-harness.js';

// Same test as vitest.config.ts's: whenever this folder is included, these run (never a silent skip).
const GPU = Boolean(process.env.REX_OMNI_GPU_TESTS);
const CONTINUATION = 64;
const VOCAB = 151936;
const MINUTES = 60_000;

const CASES: { name: string; imageFile: string; task: TaskSpec; seed: number }[] = [
  { name: 'cafe_detect', imageFile: 'cafe.jpg', task: { task: 'detection', categories: ['person', 'cup'] }, seed: 11 },
  { name: 'boys_point', imageFile: 'boys.jpg', task: { task: 'pointing', categories: ['boy'] }, seed: 12 },
  { name: 'person_keypoint', imageFile: 'person.png', task: { task: 'keypoint', keypointType: 'person' }, seed: 13 },
];

interface CaseResult {
  built: BuiltCase;
  fp32: Float32Array;
  bf16: Float32Array;
  ours: Float32Array;
  tfBf16: RowMetrics;
  oursM: RowMetrics;
  oursVsBf16: RowMetrics;
  reference: Record<string, unknown>;
  score: { promptTokens: number; imageTokens: number; positions: number; logprobMaxDiff: number; topIdMismatches: number };
  seconds: number;
}

describe.skipIf(!GPU)('full 3B shape: CUDA engine vs transformers fp32 / bf16', () => {
  let dir: string;
  let release: (() => void) | undefined;
  const results = new Map<string, CaseResult>();
  let setupError: unknown;

  beforeAll(async () => {
    try {
      release = await acquireGpuLock('parity-3b');
      const t0 = performance.now();
      dir = await ensure3bCheckpoint();
      log(`3B checkpoint ready in ${dir} (${((performance.now() - t0) / 1000).toFixed(0)} s)`);

      // Our loader must read what transformers 5.x wrote (config layout, tensor names).
      const { addon, info, path } = loadAddon();
      log(`addon ${path}: backend ${info.backend}, device ${info.device?.name ?? '-'}`);
      const ck = await addon.openCheckpoint(dir);
      try {
        const c = ck.config;
        log(
          `our loader: config ${c.configLayout}, tensors ${ck.tensorLayout}, ${ck.tensorCount} tensors, ${(ck.totalBytes / 1e9).toFixed(2)} GB; ` +
            `text ${c.text.numLayers}x${c.text.hiddenSize} heads ${c.text.numHeads}/${c.text.numKvHeads} inter ${c.text.intermediateSize} ` +
            `vocab ${c.text.vocabSize} theta ${c.text.ropeTheta} mrope [${c.text.mropeSection}] tie ${c.text.tieWordEmbeddings}; ` +
            `vision ${c.vision.depth}x${c.vision.hiddenSize} heads ${c.vision.numHeads} inter ${c.vision.intermediateSize} full [${c.vision.fullAttentionBlocks}]`,
        );
        expect([c.text.numLayers, c.text.hiddenSize, c.text.numHeads, c.text.numKvHeads, c.text.intermediateSize, c.text.vocabSize]).toEqual([
          36, 2048, 16, 2, 11008, VOCAB,
        ]);
        expect(c.text.mropeSection).toEqual([16, 24, 24]);
        expect(c.text.ropeTheta).toBe(1e6);
        expect(c.text.tieWordEmbeddings).toBe(true);
        expect([c.vision.depth, c.vision.hiddenSize, c.vision.numHeads, c.vision.intermediateSize, c.vision.outHiddenSize]).toEqual([
          32, 1280, 16, 3420, 2048,
        ]);
        expect(c.vision.fullAttentionBlocks).toEqual([7, 15, 23, 31]);
        expect(c.imageTokenId).toBe(151655);
      } finally {
        ck.close();
      }

      // Cases: our prompt builder + tokenizer, our CPU preprocessing, dumped for transformers.
      const tokenizer = await RexTokenizer.fromDir(dir);
      const work = scratchDir('parity-3b');
      const built: BuiltCase[] = [];
      for (const spec of CASES) {
        const c = await buildCase({ ...spec, tokenizer, addon, continuationTokens: CONTINUATION });
        expect(c.continuationIds.length).toBe(CONTINUATION);
        log(`${c.name} continuation: ${JSON.stringify(c.continuationText)}`);
        writeCaseDir(work, c);
        built.push(c);
      }

      // transformers fp32 then bf16, in a child process that frees the GPU before we load.
      runPython('test/gpu/reference_logits.py', ['--checkpoint', dir, '--cases', work], 45 * MINUTES);

      // Ours.
      const t1 = performance.now();
      const engine = await Engine.open(dir, { backend: 'cuda' });
      log(`Engine.open(cuda) in ${((performance.now() - t1) / 1000).toFixed(1)} s; info ${JSON.stringify(engine.info())}`);
      expect(engine.info().backend, 'the engine runs on the CUDA backend').toBe('cuda');
      try {
        for (const c of built) {
          const caseDir = join(work, c.name);
          const [, count] = positionsOfInterest(c);
          const fp32 = readF32(join(caseDir, 'fp32.logits.f32'));
          const bf16 = readF32(join(caseDir, 'bf16.logits.f32'));
          const reference = JSON.parse(readFileSync(join(caseDir, 'reference.json'), 'utf8')) as Record<string, unknown>;
          expect(fp32.length, `${c.name}: fp32 logits size`).toBe(count * VOCAB);
          expect(bf16.length, `${c.name}: bf16 logits size`).toBe(count * VOCAB);

          const t2 = performance.now();
          const score = await engine.score({
            promptIds: c.promptIds,
            image: c.image,
            continuationIds: c.continuationIds,
            topK: 5,
            fullLogits: true,
          });
          const seconds = (performance.now() - t2) / 1000;
          expect(score.positions.length, `${c.name}: positions`).toBe(count);
          const ours = new Float32Array(count * VOCAB);
          let logprobMaxDiff = 0;
          let topIdMismatches = 0;
          score.positions.forEach((p, r) => {
            expect(p.logits, `${c.name}: position ${r} has no logits (fullLogits: true)`).toBeDefined();
            expect(p.logits!.length).toBe(VOCAB);
            ours.set(p.logits!, r * VOCAB);
            if (p.topIds[0] !== argmax(p.logits!)) topIdMismatches++;
            if (r < c.continuationIds.length) {
              expect(p.logprob).not.toBeNull();
              logprobMaxDiff = Math.max(logprobMaxDiff, Math.abs(p.logprob! - logSoftmaxAt(p.logits!, c.continuationIds[r]!)));
            } else {
              expect(p.logprob).toBeNull();
            }
          });
          results.set(c.name, {
            built: c,
            fp32,
            bf16,
            ours,
            tfBf16: compareRows(fp32, bf16, count, VOCAB),
            oursM: compareRows(fp32, ours, count, VOCAB),
            oursVsBf16: compareRows(bf16, ours, count, VOCAB),
            reference,
            score: {
              promptTokens: score.promptTokens,
              imageTokens: score.imageTokens,
              positions: score.positions.length,
              logprobMaxDiff,
              topIdMismatches,
            },
            seconds,
          });
          log(`${c.name}: score() in ${seconds.toFixed(2)} s`);
        }
        log(`engine info after scoring: ${JSON.stringify(engine.info())}`);
      } finally {
        await engine.close();
      }
      printAndReport(results);
    } catch (error) {
      setupError = error;
      throw error;
    }
  }, 120 * MINUTES);

  afterAll(() => release?.());

  it('ran the reference and our engine on every case, and the reference found no problem', () => {
    expect(setupError).toBeUndefined();
    expect([...results.keys()].sort()).toEqual(CASES.map((c) => c.name).sort());
    const summary = JSON.parse(readFileSync(join(scratchDir('parity-3b'), 'reference_summary.json'), 'utf8')) as { problems: string[] };
    expect(summary.problems, 'reference_logits.py problems (positions, 1D fallback)').toEqual([]);
  });

  for (const spec of CASES) {
    it(`${spec.name}: ours within the issue's margins of transformers bf16 (vs fp32)`, () => {
      const r = results.get(spec.name);
      expect(r, `${spec.name} has no result (setup failed: ${String(setupError)})`).toBeDefined();
      const { built: c, tfBf16, oursM } = r!;

      // The inputs were what we think they were.
      expect(r!.score.promptTokens).toBe(c.promptIds.length);
      expect(r!.score.imageTokens).toBe(c.imageTokens);
      expect(allFinite(r!.ours), 'our logits are finite').toBe(true);
      const rope = (r!.reference.fp32 as { rope_check?: { matches?: boolean } } | undefined)?.rope_check;
      expect(rope?.matches, `transformers' M-RoPE positions match ours: ${JSON.stringify(rope)}`).toBe(true);
      // Not a degenerate comparison: the reference's rows differ from each other.
      const distinct = new Set(Array.from({ length: oursM.rows }, (_, i) => argmax(r!.fp32.subarray(i * VOCAB, (i + 1) * VOCAB))));
      expect(distinct.size, 'distinct fp32 argmax over the rows').toBeGreaterThan(1);

      // The rule.
      expect(oursM.top1, `top-1: ours ${oursM.top1} vs tf-bf16 ${tfBf16.top1}`).toBeGreaterThanOrEqual(tfBf16.top1 - 0.03);
      expect(oursM.minCosine, `min cosine: ours ${oursM.minCosine} vs tf-bf16 ${tfBf16.minCosine}`).toBeGreaterThanOrEqual(
        tfBf16.minCosine - 0.0005,
      );
      expect(oursM.relMaxErr, `rel max err: ours ${oursM.relMaxErr} vs tf-bf16 ${tfBf16.relMaxErr}`).toBeLessThanOrEqual(
        1.5 * tfBf16.relMaxErr,
      );

      // score()'s own fields agree with its logits.
      expect.soft(r!.score.topIdMismatches, 'positions whose topIds[0] is not the argmax of logits').toBe(0);
      expect.soft(r!.score.logprobMaxDiff, 'max |logprob - log_softmax(logits)[id]|').toBeLessThan(1e-3);
    });
  }
});

function fmt(m: RowMetrics) {
  return {
    'top-1 %': (100 * m.top1).toFixed(1),
    'min cos': m.minCosine.toFixed(6),
    'mean cos': m.meanCosine.toFixed(6),
    'rel max err': m.relMaxErr.toExponential(3),
    'top-1 misses (rows)': m.top1Misses.slice(0, 12).join(',') + (m.top1Misses.length > 12 ? ',…' : ''),
  };
}

function printAndReport(results: Map<string, CaseResult>): void {
  const report: Record<string, unknown> = {
    date: new Date().toISOString(),
    checkpoint: process.env.REX_OMNI_3B_DIR || '/tmp/rex-omni-3b',
    rows: 'prompt last token + 64 continuation tokens (65 rows; row r = distribution after prompt + continuation[0..r))',
    rule: 'ours.top1 >= tfbf16.top1 - 0.03; ours.minCos >= tfbf16.minCos - 0.0005; ours.relMaxErr <= 1.5 * tfbf16.relMaxErr',
    cases: {},
  };
  for (const [name, r] of results) {
    const pass = {
      top1: r.oursM.top1 >= r.tfBf16.top1 - 0.03,
      minCosine: r.oursM.minCosine >= r.tfBf16.minCosine - 0.0005,
      relMaxErr: r.oursM.relMaxErr <= 1.5 * r.tfBf16.relMaxErr,
    };
    const c = r.built;
    console.log(
      `\n==== ${name}: ${c.imageFile} ${c.image.width}x${c.image.height} -> ${c.pre.resizedWidth}x${c.pre.resizedHeight}, ` +
        `${c.imageTokens} image tokens, ${c.promptIds.length} prompt + ${c.continuationIds.length} continuation tokens; ` +
        `score() ${r.seconds.toFixed(2)} s\n` +
        textTable([
          { vs: 'fp32', side: 'transformers bf16', ...fmt(r.tfBf16) },
          { vs: 'fp32', side: 'ours (cuda)', ...fmt(r.oursM) },
          { vs: 'tf bf16', side: 'ours (cuda)', ...fmt(r.oursVsBf16) },
        ]) +
        `\n  pass: top-1 ${pass.top1}, min cos ${pass.minCosine}, rel max err ${pass.relMaxErr}; ` +
        `score topIds/argmax mismatches ${r.score.topIdMismatches}, logprob max diff ${r.score.logprobMaxDiff.toExponential(2)}`,
    );
    (report.cases as Record<string, unknown>)[name] = {
      image: c.imageFile,
      imageTokens: c.imageTokens,
      promptTokens: c.promptIds.length,
      continuationTokens: c.continuationIds.length,
      transformersBf16: r.tfBf16,
      ours: r.oursM,
      oursVsTransformersBf16: r.oursVsBf16,
      pass,
      score: r.score,
      scoreSeconds: r.seconds,
      reference: r.reference,
    };
  }
  const summaryPath = join(scratchDir('parity-3b'), 'reference_summary.json');
  if (existsSync(summaryPath)) report.referenceSummary = JSON.parse(readFileSync(summaryPath, 'utf8'));
  writeReport('parity-3b', report);
}
