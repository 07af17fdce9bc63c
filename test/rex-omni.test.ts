// The task API end to end on the tiny checkpoint: the reference's plain
// decoding token for token, streaming, scores and timings, cancellation,
// bad input, and the grammar's guarantees over seeded sampled generations.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import type { Prediction } from '../lib/predictions.js';
import { RexOmni, type RexOmniEvent } from '../lib/rex-omni.js';
import type { TaskSpec } from '../lib/tasks/index.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { modelCases } from './fixtures/golden-cases.js';
import { repoRoot } from './fixtures/repo-root.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const SHARED = join(repoRoot(), 'test', 'fixtures', 'images');
const SMALL = { data: syntheticRgb(56, 56, 9), width: 56, height: 56 };
// An image on which the random tiny model starts groups for every task (it is
// random: on some images it prefers to stop at once, which tests nothing).
const PROPERTY_IMAGE = { data: syntheticRgb(112, 112, 5), width: 112, height: 112 };
let model: RexOmni;

beforeAll(async () => {
  model = await RexOmni.load(await ensureTinyCheckpoint(), {
    maxActiveRequests: 16,
    maxInputPixels: 3_500_000,
    defaults: { maxPixels: 64 * 28 * 28 },
  });
});
afterAll(async () => {
  await model?.close();
});

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  return promise.then(
    () => { throw new Error('expected a rejection'); },
    (error: Error & { code?: string }) => error,
  );
}

describe('RexOmni, unconstrained', () => {
  const cases: [string, TaskSpec][] = [
    ['cafe_detect', { task: 'detection', categories: ['person', 'cup'] }],
    ['boys_point', { task: 'pointing', categories: ['boy'] }],
    ['gui_grounding', { task: 'gui_grounding', element: 'search bar' }],
  ];
  it.each(cases)('reproduces transformers token for token: %s', async (name, task) => {
    const golden = modelCases().find((c) => c.case === name)!;
    const image = join(SHARED, golden.image.split(':')[1]!);
    const result = await model.run(image, task, {
      constrained: false,
      maxNewTokens: golden.greedy.max_new_tokens,
      minPixels: golden.min_pixels,
      maxPixels: golden.max_pixels,
    });
    expect(result.tokens.prompt).toBe(golden.input_ids.length);
    expect(result.outputTokenIds).toEqual(golden.greedy.tokens);
    expect(result.finishReason).toBe('length');
  });
});

describe('RexOmni, constrained', () => {
  it('streams each prediction before the final event, scored, with every timing field', async () => {
    const events: RexOmniEvent[] = [];
    for await (const event of model.stream(join(SHARED, 'cafe.jpg'), { task: 'detection', categories: ['person', 'cup'] }, {
      maxNewTokens: 60,
      sampling: { temperature: 1, seed: 3 },
    })) {
      events.push(event);
    }
    const done = events.at(-1)!;
    expect(done.type).toBe('done');
    if (done.type !== 'done') return;
    const streamed = events.filter((e) => e.type === 'prediction').map((e) => (e as { prediction: Prediction }).prediction);
    expect(streamed.length).toBeGreaterThan(0);
    expect(done.result.predictions).toEqual(streamed);
    for (const p of streamed) {
      expect(['person', 'cup']).toContain(p.phrase);
      expect(p.score).toBeGreaterThan(0);
      expect(p.score).toBeLessThanOrEqual(1);
    }
    const { timings, tokens, image } = done.result;
    expect(image).toEqual({ width: 1440, height: 810, resizedWidth: 280, resizedHeight: 168 });
    expect(tokens.image).toBe(60);
    for (const key of ['decodeMs', 'preprocessMs', 'visionMs', 'prefillMs', 'decodeStepsMs', 'totalMs'] as const)
      expect(timings[key]).toBeGreaterThanOrEqual(0);
    expect(timings.firstPredictionMs).toBeGreaterThan(0);
    expect(timings.firstPredictionMs).toBeLessThanOrEqual(timings.totalMs);
    expect(timings.decodeTokensPerSecond).toBeGreaterThan(0);
    expect(done.result.unparsed).toEqual([]);
    expect(done.result.complete).toBe(true);
    expect(Object.keys(done.result.groups).every((k) => ['person', 'cup'].includes(k))).toBe(true);
  });

  it('tokenizes a task prompt and compiles its grammar once: a repeat at another size calls no tokenizer', async () => {
    const task: TaskSpec = { task: 'detection', categories: ['teapot', 'kettle', 'saucer'] };
    const first = await model.run(SMALL, task, { maxNewTokens: 4 });
    const encode = vi.spyOn(RexTokenizer.prototype, 'encode');
    try {
      // Another image size: other image pads, the same task prompt.
      const repeat = await model.run({ data: syntheticRgb(224, 224, 4), width: 224, height: 224 }, task, { maxNewTokens: 4 });
      expect(encode).not.toHaveBeenCalled();
      expect(repeat.tokens.image).toBeGreaterThan(first.tokens.image);
      expect(repeat.tokens.prompt - repeat.tokens.image).toBe(first.tokens.prompt - first.tokens.image);
    } finally {
      encode.mockRestore();
    }
  });

  it('aborts mid-stream through a signal while another request completes', async () => {
    const controller = new AbortController();
    const other = model.detect(SMALL, ['cat'], { maxNewTokens: 20, sampling: { temperature: 1, seed: 1 } });
    const seen: RexOmniEvent[] = [];
    const aborted = (async () => {
      for await (const event of model.stream(SMALL, { task: 'ocr_box', granularity: 'word' }, {
        maxNewTokens: 4000,
        constrained: false,
        signal: controller.signal,
        sampling: { temperature: 1, seed: 2 },
      })) {
        seen.push(event);
      }
    })();
    setTimeout(() => controller.abort(new Error('user aborted')), 30);
    await expect(aborted).rejects.toThrow('user aborted');
    expect(seen.some((e) => e.type === 'done')).toBe(false);
    expect((await other).finishReason).toMatch(/eos|length/);
  });

  it('stops at a deadline (timeoutMs)', async () => {
    const error = await rejection(
      model.run(SMALL, { task: 'ocr_box', granularity: 'word' }, { maxNewTokens: 4000, constrained: false, timeoutMs: 20, sampling: { temperature: 1 } }),
    );
    expect(error.name).toBe('TimeoutError');
  });
});

describe('RexOmni, bad input (other requests keep going)', () => {
  it('rejects each with a TypeError or RangeError that says what was expected', async () => {
    const bystander = model.detect(SMALL, ['dog'], { maxNewTokens: 24, sampling: { temperature: 1, seed: 5 } });
    const cafe = join(SHARED, 'cafe.jpg');
    const cases: [() => Promise<unknown>, typeof TypeError | typeof RangeError, string][] = [
      [() => model.run(SMALL, { task: 'segmentation' } as unknown as TaskSpec), RangeError, 'task.task: expected one of'],
      [() => model.detect(SMALL, undefined as unknown as string[]), TypeError, 'detection.categories: expected a non-empty array of non-empty strings but got undefined'],
      [() => model.detect(SMALL, []), RangeError, 'detection.categories: expected a non-empty array of non-empty strings but got an array of length 0'],
      [() => model.point(SMALL, ['cat', 7 as unknown as string]), TypeError, 'pointing.categories[1]: expected a non-empty string but got 7'],
      [() => model.visualPrompt(SMALL, [[NaN, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[0][0] (x0): expected a finite number but got NaN'],
      [() => model.visualPrompt(SMALL, [[-1, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[0][0] (x0): expected a number from 0 to 56 (the image width) but got -1'],
      [() => model.visualPrompt(SMALL, [[30, 0, 10, 10]]), RangeError, 'visual_prompting.boxes[0]: expected x0 <= x1 but got [30, 0, 10, 10]'],
      [() => model.visualPrompt(SMALL, [[0, 0, 10, 57]]), RangeError, 'visual_prompting.boxes[0][3] (y1): expected a number from 0 to 56 (the image height) but got 57'],
      [() => model.detect(Buffer.from('not an image at all'), ['cat']), TypeError, 'loadImage(input): expected the bytes of a JPEG, PNG, WebP, AVIF, TIFF or GIF image but got 19 bytes'],
      [() => model.detect(readFileSync(cafe).subarray(0, 20000), ['cat']), TypeError, 'loadImage(input): expected a complete jpeg image but got a truncated or corrupt one'],
      [() => model.detect({ data: new Uint8Array(0), width: 0, height: 4 }, ['cat']), RangeError, 'loadImage(input): expected an image of at least 1x1 pixels but got 0x4'],
      [() => model.detect(join(SHARED, 'pigeons.jpeg'), ['pigeon']), RangeError, 'loadImage(input): expected at most 3500000 pixels (maxInputPixels) but got 2246x1590 = 3571140'],
      [() => model.keypoints(SMALL, 'hand' as 'person'), RangeError, 'keypoint.keypointType: expected one of "person", "animal" but got "hand"'],
      [() => model.detect(SMALL, ['cat'], { maxNewTokens: 0 }), RangeError, 'options.maxNewTokens: expected an integer of at least 1 but got 0'],
    ];
    for (const [start, type, message] of cases) {
      const error = await rejection(start());
      expect(error, message).toBeInstanceOf(type);
      expect(error.message).toContain(message);
    }
    expect((await bystander).finishReason).toMatch(/eos|length/);
  });
});

function checkPrediction(p: Prediction): void {
  const inBins = (b: number) => Number.isInteger(b) && b >= 0 && b <= 999;
  switch (p.kind) {
    case 'box':
    case 'keypoints':
      expect(p.bins).toHaveLength(4);
      expect(p.bins.every(inBins)).toBe(true);
      expect(p.bins[2]).toBeGreaterThanOrEqual(p.bins[0]);
      expect(p.bins[3]).toBeGreaterThanOrEqual(p.bins[1]);
      if (p.kind === 'keypoints')
        for (const k of Object.values(p.keypoints)) if (k) expect(k.bins.every(inBins)).toBe(true);
      break;
    case 'point':
      expect(p.bins).toHaveLength(2);
      expect(p.bins.every(inBins)).toBe(true);
      break;
    case 'polygon':
      expect(p.bins.length).toBeGreaterThanOrEqual(3);
      expect(p.bins.flat().every(inBins)).toBe(true);
      break;
  }
}

describe('RexOmni grammar, end to end: 50 seeded sampled generations per task', () => {
  const tasks: TaskSpec[] = [
    { task: 'detection', categories: ['cat', 'traffic light'] },
    { task: 'pointing', categories: ['cup'] },
    { task: 'visual_prompting', boxes: [[2, 3, 30, 40], [50, 60, 100, 111]] },
    { task: 'ocr_box', granularity: 'word' },
    { task: 'ocr_polygon', granularity: 'text line' },
    { task: 'gui_grounding', element: 'the OK button' },
    { task: 'gui_pointing', element: 'the search field' },
    { task: 'keypoint', keypointType: 'person' },
  ];
  it.each(tasks.map((t) => [t.task, t] as const))('%s: always parses, with arity and coordinate order', async (_name, task) => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, seed) =>
        model.run(PROPERTY_IMAGE, task, {
          // A keypoint instance alone takes ~25 tokens of JSON: room for a few.
          maxNewTokens: task.task === 'keypoint' ? 64 : 48,
          maxPhraseTokens: 6,
          sampling: { temperature: 1.5, topP: 0.98, seed },
          forbidDuplicateBoxes: seed % 2 === 0,
        }),
      ),
    );
    for (const result of results) {
      expect(result.unparsed, result.text).toEqual([]);
      expect(result.complete, result.text).toBe(true);
      for (const p of result.predictions) checkPrediction(p);
      if (task.task === 'detection' || task.task === 'pointing')
        for (const p of result.predictions) expect(task.categories).toContain(p.phrase);
    }
    expect(results.some((r) => r.predictions.length > 0)).toBe(true);
  }, 240_000);
});
