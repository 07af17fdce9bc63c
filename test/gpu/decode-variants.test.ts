// Decode paths that are off by default, apart from test/gpu/decode.test.ts
// so that a fault in one cannot take that suite's results with it (a CUDA
// fault ends the process's context):
//  - decode attention merging its splits in one cluster launch
//    (REX_OMNI_DECODE_CLUSTER=1), with the rotary step inside it too
//    (REX_OMNI_DECODE_ROPE=1), and launched overlapped as well
//    (REX_OMNI_DECODE_PDL=1): the same tokens, greedy and seeded, batched
//    and alone;
//  - decode rows riding prefill passes (prefillDecodeRows): rows ride, and
//    the requests begin as they do without.
import { describe, expect, it } from 'vitest';

import { RexOmni } from '../../lib/rex-omni.js';
import { JUMP_CATEGORIES } from '../fixtures/jump-forward-cases.js';
import { loadWithEnv } from '../fixtures/load-with-env.js';
import { syntheticRgb } from '../fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from '../fixtures/tiny-checkpoint.js';

const CATEGORIES = JUMP_CATEGORIES;

describe('CUDA decode variants (off by default)', () => {
  for (const variables of [['REX_OMNI_DECODE_CLUSTER'], ['REX_OMNI_DECODE_ROPE'], ['REX_OMNI_DECODE_ROPE', 'REX_OMNI_DECODE_PDL']]) {
    it(`decode attention in one cluster launch (${variables.map((v) => `${v}=1`).join(' ')}) gives the same tokens`, async () => {
      // batchInvariant: every step on the GEMV, 16 splits; the cluster merge
      // gives the combine launch's bits, and the rotary step inside the
      // attention mrope's (cuda_attention_decode_test), so the tokens are the
      // same, greedy and seeded, 8 at once (distinct sequences: the rotary
      // step in the attention) and alone (its jump-forward steps: one
      // sequence's rows, the rotary launch).
      const tiny = await ensureTinyCheckpoint();
      const load = () =>
        RexOmni.load(tiny, { backend: 'cuda', maxActiveRequests: 8, batchInvariant: true, prefixCacheGB: 0, defaults: { maxPixels: 64 * 28 * 28 } });
      const plain = await load();
      const variant = await variables.reduce<() => Promise<RexOmni>>((next, name) => () => loadWithEnv(name, '1', next), load)();
      try {
        const images = Array.from({ length: 8 }, (_, i) => ({ data: syntheticRgb(112, 112, 60 + i), width: 112, height: 112 }));
        for (const sampling of [{ temperature: 0 }, { temperature: 0.8, topP: 0.9, seed: 11 }]) {
          const options = { maxNewTokens: 24, sampling };
          const run = (m: RexOmni) => Promise.all(images.map((image, i) => m.detect(image, CATEGORIES.slice(0, 1 + (i % 3)), options)));
          const without = await run(plain);
          const withVariant = await run(variant);
          for (const [i, r] of withVariant.entries()) expect(r.outputTokenIds).toEqual(without[i]!.outputTokenIds);
          const alone = await variant.detect(images[5]!, CATEGORIES.slice(0, 3), options);
          expect(alone.outputTokenIds).toEqual(without[5]!.outputTokenIds);
        }
      } finally {
        await Promise.all([plain.close(), variant.close()]);
      }
    });
  }

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
