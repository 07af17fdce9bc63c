// Decode rows inside prefill passes (prefillDecodeRows, CPU backend): while
// some requests prefill their prompts in chunks, the running ones decode
// their next token inside each prefill pass as one-row pieces of it. The
// tokens are those of an engine without it (greedy and seeded: a row's draw
// is taken in the same order), rides happen (prefillRides > 0), and a bad
// value is a typed error.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';

const CATEGORIES = ['cat', 'dog', 'person'];
const defaults = { maxPixels: 64 * 28 * 28 };

describe('decode rows inside prefill passes (CPU)', () => {
  let plain: RexOmni;
  let riding: RexOmni;
  beforeAll(async () => {
    const tiny = await ensureTinyCheckpoint();
    // Small chunks: each prompt takes several passes, while the first requests already decode.
    plain = await RexOmni.load(tiny, { threads: 2, maxActiveRequests: 6, prefillChunkTokens: 24, defaults });
    riding = await RexOmni.load(tiny, { threads: 2, maxActiveRequests: 6, prefillChunkTokens: 24, prefillDecodeRows: 4, defaults });
  });
  afterAll(async () => {
    await Promise.all([plain?.close(), riding?.close()]);
  });

  // Six requests at once, arriving in two waves: the second wave prefills while the first decodes.
  async function waves(model: RexOmni, sampling: Record<string, number>): Promise<RexOmniResult[]> {
    const images = Array.from({ length: 6 }, (_, i) => ({ data: syntheticRgb(112, 112, 40 + i), width: 112, height: 112 }));
    const options = { maxNewTokens: 24, sampling, jumpForward: false };
    const first = images.slice(0, 3).map((image, i) => model.detect(image, CATEGORIES.slice(0, 1 + i), options));
    await first[0];
    const second = images.slice(3).map((image, i) => model.detect(image, CATEGORIES.slice(0, 1 + i), options));
    return Promise.all([...first, ...second]);
  }

  for (const [name, sampling] of [
    ['greedy', { temperature: 0 }],
    ['seeded', { temperature: 0.9, topP: 0.9, seed: 5 }],
  ] as const) {
    it(`${name}: the tokens of an engine without it, and rows ride`, async () => {
      const without = await waves(plain, sampling);
      const withRides = await waves(riding, sampling);
      for (const [i, r] of withRides.entries()) expect(r.outputTokenIds).toEqual(without[i]!.outputTokenIds);
      expect(without.reduce((n, r) => n + r.prefillRides, 0)).toBe(0);
      const rides = withRides.reduce((n, r) => n + r.prefillRides, 0);
      console.log(`${name}: ${rides} of ${withRides.reduce((n, r) => n + r.decodeSteps, 0)} decode rows rode in prefill passes`);
      expect(rides).toBeGreaterThan(0);
      for (const r of withRides) expect(r.prefillRides).toBeLessThanOrEqual(r.decodeSteps);
    });
  }

  it('a negative prefillDecodeRows is a typed error', async () => {
    await expect(RexOmni.load(await ensureTinyCheckpoint(), { prefillDecodeRows: -1 })).rejects.toThrow(
      'options.prefillDecodeRows: expected an integer >= 0 but got -1',
    );
  });
});
