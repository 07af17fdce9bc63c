// Growing slots on the CPU backend (reserveGeneration: false): image requests
// that together outgrow a small KV budget all start, the newest are preempted
// (their KV released, the image encoded again or found in the prefix cache)
// and resume, each with the tokens it gives alone; the budget ends empty but
// for the prefix cache; the option is checked.
import { describe, expect, it } from 'vitest';

import { RexOmni } from '../lib/rex-omni.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const defaults = { maxPixels: 16 * 28 * 28 };
const images = [0, 1, 2, 3].map((i) => ({ data: syntheticRgb(56, 56, 40 + i), width: 56, height: 56 }));

describe('growing slots and preemption (CPU)', () => {
  it('requests that outgrow the budget are preempted, resume, and give their tokens alone', async () => {
    const dir = await ensureTinyCheckpoint();
    const options = (seed: number) => ({ maxNewTokens: 120, constrained: false, sampling: { temperature: 0.7, seed } });
    const reference = await RexOmni.load(dir, { threads: 2, defaults });
    const alone = [];
    for (const [i, image] of images.entries()) alone.push(await reference.detect(image, ['cat'], options(i)));
    await reference.close();
    for (const prefixCacheGB of [0, undefined]) {
      // About three requests' prompts and a little more: four of them, each
      // growing by 120 tokens, cannot all stay.
      const growing = await RexOmni.load(dir, {
        threads: 2,
        kvCacheGB: 0.00075,
        reserveGeneration: false,
        maxActiveRequests: 4,
        defaults,
        ...(prefixCacheGB === undefined ? {} : { prefixCacheGB }),
      });
      try {
        const results = await Promise.all(images.map((image, i) => growing.detect(image, ['cat'], options(i))));
        const preemptions = results.reduce((n, r) => n + r.preemptions, 0);
        console.log(`prefixCacheGB ${prefixCacheGB ?? 'default'}: ${preemptions} preemptions over 4 requests`);
        expect(preemptions).toBeGreaterThan(0);
        expect(results.some((r) => r.preemptions === 0)).toBe(true);  // the oldest runs on
        for (const [i, r] of results.entries()) {
          expect(r.outputTokenIds, `request ${i}`).toEqual(alone[i]!.outputTokenIds);
          expect(r.tokens.generated).toBe(alone[i]!.tokens.generated);
        }
        const info = growing.info();
        expect(info.memory.kvCacheUsedBytes - info.prefixCache.heldBytes).toBe(0);
      } finally {
        await growing.close();
      }
    }
  }, 120_000);

  it('reserveGeneration is checked', async () => {
    await expect(RexOmni.load(await ensureTinyCheckpoint(), { reserveGeneration: 'no' as unknown as boolean })).rejects.toThrow(
      'options.reserveGeneration: expected a boolean but got "no"',
    );
  });
});
