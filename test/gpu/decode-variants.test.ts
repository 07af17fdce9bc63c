// Decode paths beside the default, apart from test/gpu/decode.test.ts so
// that a fault in one cannot take that suite's results with it (a CUDA fault
// ends the process's context):
//  - decode attention in one launch (the default where its grid fits the
//    SMs: the splits merged in a cluster, the rotary step inside it, the
//    launch overlapped), and with the rotary step or the overlap turned off,
//    against the two-launch attention and its rotary launch
//    (REX_OMNI_DECODE_CLUSTER=0): the same tokens, greedy and seeded, batched
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

describe('CUDA decode variants', () => {
  const variants: Array<[string, Array<[string, string]>]> = [
    ['the default (cluster merge, rotary step inside, overlapped launch)', []],
    ['REX_OMNI_DECODE_ROPE=0 (the rotary launch)', [['REX_OMNI_DECODE_ROPE', '0']]],
    ['REX_OMNI_DECODE_PDL=0 (no overlapped launch)', [['REX_OMNI_DECODE_PDL', '0']]],
  ];
  for (const [name, variables] of variants) {
    it(`decode attention in one launch, ${name}: the tokens of the two-launch attention`, async () => {
      // batchInvariant: every step on the GEMV, 16 splits; the cluster merge
      // gives the combine launch's bits, and the rotary step inside the
      // attention mrope's (cuda_attention_decode_test), so the tokens are the
      // same, greedy and seeded, 4 at once (4 rows x 2 kv heads x 16 splits:
      // one wave of the SMs, so the cluster merge; distinct sequences, so the
      // rotary step in the attention) and alone (its jump-forward steps: one
      // sequence's rows, the rotary launch).
      const tiny = await ensureTinyCheckpoint();
      const load = () =>
        RexOmni.load(tiny, { backend: 'cuda', maxActiveRequests: 8, batchInvariant: true, prefixCacheGB: 0, defaults: { maxPixels: 64 * 28 * 28 } });
      const twoLaunches = await loadWithEnv('REX_OMNI_DECODE_CLUSTER', '0', load);
      const variant = await variables.reduce<() => Promise<RexOmni>>((next, [v, value]) => () => loadWithEnv(v, value, next), load)();
      try {
        const images = Array.from({ length: 4 }, (_, i) => ({ data: syntheticRgb(112, 112, 60 + i), width: 112, height: 112 }));
        for (const sampling of [{ temperature: 0 }, { temperature: 0.8, topP: 0.9, seed: 11 }]) {
          const options = { maxNewTokens: 24, sampling };
          const run = (m: RexOmni) => Promise.all(images.map((image, i) => m.detect(image, CATEGORIES.slice(0, 1 + (i % 3)), options)));
          const without = await run(twoLaunches);
          const withVariant = await run(variant);
          for (const [i, r] of withVariant.entries()) expect(r.outputTokenIds).toEqual(without[i]!.outputTokenIds);
          const alone = await variant.detect(images[2]!, CATEGORIES.slice(0, 3), options);
          expect(alone.outputTokenIds).toEqual(without[2]!.outputTokenIds);
        }
      } finally {
        await Promise.all([twoLaunches.close(), variant.close()]);
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
