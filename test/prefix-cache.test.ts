// The image prefix cache on the CPU backend (under a KV budget): a second
// task on the same image reads the image's KV instead of encoding it again,
// and gives the tokens it gives uncached; other images, other sizes and a
// cache too small to hold a prefix miss; model.image() handles reuse it; the
// cache stays inside the KV budget and gives its blocks back when requests
// need them; prompts prefilled in small chunks (the image split across them)
// give the same tokens.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RexOmni, type RexOmniResult } from '../lib/rex-omni.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const IMAGE = { data: syntheticRgb(112, 112, 5), width: 112, height: 112 };
const OTHER = { data: syntheticRgb(112, 112, 6), width: 112, height: 112 };
const defaults = { maxPixels: 64 * 28 * 28 };
const options = { maxNewTokens: 24, sampling: { temperature: 0 } };
let cached: RexOmni;
let uncached: RexOmni;

beforeAll(async () => {
  const dir = await ensureTinyCheckpoint();
  cached = await RexOmni.load(dir, { threads: 2, kvCacheGB: 0.05, defaults });
  uncached = await RexOmni.load(dir, { threads: 2, kvCacheGB: 0.05, prefixCacheGB: 0, defaults });
});
afterAll(async () => {
  await cached?.close();
  await uncached?.close();
});

const tasks: [string, (m: RexOmni, image: typeof IMAGE) => Promise<RexOmniResult>][] = [
  ['detect', (m, image) => m.detect(image, ['cat', 'fire hydrant'], options)],
  ['point', (m, image) => m.point(image, ['cat'], options)],
  ['ocr boxes', (m, image) => m.ocrBoxes(image, 'word', options)],
];

describe('image prefix cache', () => {
  it('a second task on an image reads its KV from the cache and gives the uncached tokens', async () => {
    const before = cached.info().prefixCache;
    expect(before.capacityBytes).toBeGreaterThan(0);
    const results: RexOmniResult[] = [];
    for (const [, run] of tasks) results.push(await run(cached, IMAGE));
    // The first computes the prefix (a miss); the others find it.
    expect(results[0]!.tokens.cached).toBe(0);
    for (const r of results.slice(1)) {
      expect(r.tokens.cached).toBeGreaterThan(r.tokens.image);
      expect(r.tokens.cached).toBeLessThan(r.tokens.prompt);
      expect(r.timings.visionMs).toBe(0);
    }
    const after = cached.info().prefixCache;
    expect(after.hits - before.hits).toBe(2);
    expect(after.insertions - before.insertions).toBe(1);
    expect(after.entries).toBeGreaterThanOrEqual(1);
    // Without the cache: the same tokens, task by task.
    for (const [i, [name, run]] of tasks.entries()) {
      const plain = await run(uncached, IMAGE);
      expect(plain.tokens.cached, name).toBe(0);
      expect(results[i]!.outputTokenIds, name).toEqual(plain.outputTokenIds);
    }
    expect(uncached.info().prefixCache.capacityBytes).toBe(0);
  });

  it('another image, or the same at another size, is a miss', async () => {
    const other = await cached.detect(OTHER, ['cat'], options);
    expect(other.tokens.cached).toBe(0);
    const smaller = await cached.detect(IMAGE, ['cat'], { ...options, maxPixels: 16 * 28 * 28 });
    expect(smaller.tokens.cached).toBe(0);
    const again = await cached.detect(OTHER, ['cat'], options);
    expect(again.tokens.cached).toBeGreaterThan(0);
    expect(again.outputTokenIds).toEqual(other.outputTokenIds);
  });

  it('model.image() decodes once; its tasks reuse the prefix', async () => {
    const handle = await cached.image({ data: syntheticRgb(84, 84, 11), width: 84, height: 84 });
    expect([handle.width, handle.height]).toEqual([84, 84]);
    const first = await handle.detect(['cat'], options);
    const second = await handle.point(['cat'], options);
    const third = await handle.guiGround('search bar', options);
    expect(first.tokens.cached).toBe(0);
    expect(second.tokens.cached).toBeGreaterThan(0);
    expect(third.tokens.cached).toBe(second.tokens.cached);
    const plain = await uncached.point({ data: syntheticRgb(84, 84, 11), width: 84, height: 84 }, ['cat'], options);
    expect(second.outputTokenIds).toEqual(plain.outputTokenIds);
  });

  it('concurrent tasks on one image all give their uncached tokens', async () => {
    const runs = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => tasks[i % 3]![1](cached, OTHER)));
    for (const [i, r] of runs.entries()) {
      const plain = await tasks[i % 3]![1](uncached, OTHER);
      expect(r.outputTokenIds).toEqual(plain.outputTokenIds);
    }
    expect(runs.filter((r) => r.tokens.cached > 0).length).toBeGreaterThan(0);
  });

  it('the cache gives its blocks back: with every slot busy it never blocks a request', async () => {
    // A budget that holds a few requests, all of it open to the cache: the
    // cache's entries must be evicted for new requests to run.
    const small = await RexOmni.load(await ensureTinyCheckpoint(), {
      threads: 2,
      kvCacheGB: 0.0005,
      prefixCacheGB: 0.0005,
      defaults,
      maxActiveRequests: 4,
    });
    try {
      const images = [1, 2, 3, 4, 5, 6].map((seed) => ({ data: syntheticRgb(56, 56, 20 + seed), width: 56, height: 56 }));
      const results = await Promise.all(images.map((image) => small.detect(image, ['cat'], { ...options, maxNewTokens: 8 })));
      for (const r of results) expect(r.finishReason, JSON.stringify(r.error?.message ?? r.tokens)).toMatch(/^(eos|length)$/);
      const info = small.info();
      console.log(`small budget: ${JSON.stringify(info.prefixCache)}, KV ${info.memory.kvCacheBytes} bytes`);
      expect(info.prefixCache.insertions).toBe(6);
      expect(info.prefixCache.evictions).toBeGreaterThan(0);
      expect(info.prefixCache.capacityBytes).toBe(info.memory.kvCacheBytes);
      expect(info.memory.kvCacheUsedBytes).toBeLessThanOrEqual(info.memory.kvCacheBytes);
    } finally {
      await small.close();
    }
  });

  it('prompts prefilled in chunks of 7 (the image split across them) give the same tokens, cached or not', async () => {
    const chunked = await RexOmni.load(await ensureTinyCheckpoint(), { threads: 2, kvCacheGB: 0.05, prefillChunkTokens: 7, defaults });
    try {
      for (const [name, run] of tasks) {
        const plain = await run(uncached, IMAGE);
        const first = await run(chunked, IMAGE);
        expect(first.outputTokenIds, name).toEqual(plain.outputTokenIds);
        expect(first.timings.prefillMs).toBeGreaterThan(0);
      }
      expect(chunked.info().prefixCache.hits).toBe(2);  // the second and third tasks
    } finally {
      await chunked.close();
    }
    await expect(RexOmni.load(await ensureTinyCheckpoint(), { prefillChunkTokens: -1 })).rejects.toThrow(
      'options.prefillChunkTokens: expected an integer >= 0 but got -1',
    );
  });

  it('a request cancelled early (its prompt prefilled two tokens a step) frees its slot; the one decoding beside it goes on', async () => {
    const slow = await RexOmni.load(await ensureTinyCheckpoint(), {
      threads: 2,
      kvCacheGB: 0.05,
      prefillChunkTokens: 2,
      prefixCacheGB: 0,
      defaults,
    });
    try {
      const runner = slow.detect(OTHER, ['cat'], { ...options, maxNewTokens: 48, sampling: { temperature: 0 } });
      const controller = new AbortController();
      const cancelled = slow.point(IMAGE, ['cat'], { ...options, signal: controller.signal });
      setTimeout(() => controller.abort(new Error('cancelled mid-prefill')), 30);
      await expect(cancelled).rejects.toThrow('cancelled mid-prefill');
      const done = await runner;
      expect(done.tokens.generated).toBeGreaterThan(0);
      const info = slow.info();
      expect(info.memory.kvCacheUsedBytes).toBe(0);
      expect(slow.engine.activeRequests).toBe(0);
    } finally {
      await slow.close();
    }
  });

  it('prefixCacheGB is checked', async () => {
    await expect(RexOmni.load(await ensureTinyCheckpoint(), { prefixCacheGB: -1 })).rejects.toThrow(
      'options.prefixCacheGB: expected a number of GiB >= 0 but got -1',
    );
  });
});
