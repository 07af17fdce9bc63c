// Decode paths that are off by default, apart from test/gpu/decode.test.ts
// so that a fault in one cannot take that suite's results with it (a CUDA
// fault ends the process's context):
//  - decode rows riding prefill passes (prefillDecodeRows): rows ride, and
//    the requests begin as they do without.
import { describe, expect, it } from 'vitest';

import { RexOmni } from '../../lib/rex-omni.js';
import { JUMP_CATEGORIES } from '../fixtures/jump-forward-cases.js';
import { syntheticRgb } from '../fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from '../fixtures/tiny-checkpoint.js';

const CATEGORIES = JUMP_CATEGORIES;

describe('CUDA decode variants (off by default)', () => {
  it('decode rows riding prefill passes (prefillDecodeRows): requests begin as they do without, and rows ride', async () => {
    // Two waves of 8: the second prefills (chunks of 64 tokens) while the
    // first decodes, so the first's rows ride the passes, on the decode
    // kernel (the pass's one-row tail). Not batch-invariant (the pass's GEMMs
    // take other rows): the first tokens agree, as for split keys.
    const tiny = await ensureTinyCheckpoint();
    const load = (prefillDecodeRows: number) =>
      RexOmni.load(tiny, { backend: 'cuda', maxActiveRequests: 16, prefixCacheGB: 0, prefillChunkTokens: 64, prefillDecodeRows, defaults: { maxPixels: 256 * 28 * 28 } });
    const plain = await load(0);
    const riding = await load(8);
    try {
      const options = { maxNewTokens: 16, sampling: { temperature: 0 }, jumpForward: false };
      const images = Array.from({ length: 16 }, (_, i) => ({ data: syntheticRgb(224, 224, 120 + i), width: 224, height: 224 }));
      const run = async (m: RexOmni) => {
        const first = images.slice(0, 8).map((image, i) => m.detect(image, CATEGORIES.slice(0, 1 + (i % 3)), options));
        await first[0];
        const second = images.slice(8).map((image, i) => m.detect(image, CATEGORIES.slice(0, 1 + (i % 3)), options));
        return Promise.all([...first, ...second]);
      };
      const without = await run(plain);
      const withRides = await run(riding);
      const agree = withRides.filter((r, i) => r.outputTokenIds.slice(0, 4).join() === without[i]!.outputTokenIds.slice(0, 4).join());
      const rides = withRides.reduce((n, r) => n + r.prefillRides, 0);
      console.log(`prefill rides: ${rides} rows rode; ${agree.length}/16 begin as without`);
      expect(rides).toBeGreaterThan(0);
      expect(without.reduce((n, r) => n + r.prefillRides, 0)).toBe(0);
      expect(agree.length).toBeGreaterThanOrEqual(14);
    } finally {
      await Promise.all([plain.close(), riding.close()]);
    }
  });

});
