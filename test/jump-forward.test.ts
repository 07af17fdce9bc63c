// Jump-forward through the task API on the tiny checkpoint: detection with
// jumpForward on and off gives the same output token for token, the same
// predictions and scores, in fewer decode steps; `scores: false` leaves the
// predictions unscored and otherwise the same.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
import { JUMP_CATEGORIES, JUMP_IMAGE, JUMP_SAMPLINGS } from './fixtures/jump-forward-cases.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const IMAGE = JUMP_IMAGE;
const CATEGORIES = JUMP_CATEGORIES;
let model: RexOmni;

beforeAll(async () => {
  model = await RexOmni.load(await ensureTinyCheckpoint(), { maxActiveRequests: 8, defaults: { maxPixels: 64 * 28 * 28 } });
});
afterAll(async () => {
  await model?.close();
});

const settings = JUMP_SAMPLINGS;

describe('jump-forward', () => {
  it.each(settings)('%s: the same output and predictions in fewer decode steps', async (_name, sampling) => {
    const seeds = [0, 1, 2, 3, 4, 5];
    const run = (seed: number, jumpForward: boolean): Promise<RexOmniResult> =>
      model.detect(IMAGE, CATEGORIES, { maxNewTokens: 64, sampling: { ...sampling, seed }, jumpForward });
    const pairs = await Promise.all(seeds.map(async (seed) => [await run(seed, false), await run(seed, true)] as const));
    let stepsOff = 0, stepsOn = 0, forced = 0, boxes = 0;
    for (const [off, on] of pairs) {
      expect(on.outputTokenIds).toEqual(off.outputTokenIds);
      expect(on.predictions).toEqual(off.predictions);  // scores included, exactly
      expect(on.text).toBe(off.text);
      expect(off.decodeSteps).toBe(off.tokens.generated - 1);
      expect(off.tokens.forced).toBe(0);
      expect(on.decodeSteps).toBeLessThanOrEqual(off.decodeSteps);
      stepsOff += off.decodeSteps;
      stepsOn += on.decodeSteps;
      forced += on.tokens.forced;
      boxes += on.predictions.length;
    }
    expect(boxes).toBeGreaterThan(0);
    expect(forced).toBeGreaterThan(0);
    expect(stepsOn).toBeLessThan(stepsOff);
    // One decode step per sampled token (plus at most one that only scores forced tokens).
    expect(stepsOn).toBeLessThanOrEqual(stepsOff - forced + seeds.length);
  });

  it('scores: false leaves predictions unscored, and the same otherwise', async () => {
    const options = { maxNewTokens: 64, sampling: { temperature: 0.8, topP: 0.9, seed: 3 } };
    const scored = await model.detect(IMAGE, CATEGORIES, options);
    const unscored = await model.detect(IMAGE, CATEGORIES, { ...options, scores: false });
    expect(scored.predictions.length).toBeGreaterThan(0);
    expect(scored.predictions.every((p) => p.score !== undefined)).toBe(true);
    expect(unscored.predictions.every((p) => p.score === undefined)).toBe(true);
    expect(unscored.predictions).toEqual(scored.predictions.map(({ score: _score, ...p }) => p));
  });

  it('rejects a non-boolean jumpForward or scores', async () => {
    await expect(model.detect(IMAGE, ['cat'], { jumpForward: 'yes' as unknown as boolean })).rejects.toThrow(
      'options.jumpForward: expected a boolean',
    );
    await expect(model.detect(IMAGE, ['cat'], { scores: 1 as unknown as boolean })).rejects.toThrow('options.scores: expected a boolean');
  });
});
