// The soak harness (benchmarks/soak.ts) for seconds on the CPU backend: many
// requests at once with cancels, deadlines, corrupt images and bad options,
// on repeated images (prefix-cache hits): nothing crashes, every failure is
// typed, every completed greedy request equals the same request alone, and
// the KV cache holds nothing but the prefix cache afterwards. The device runs
// the same harness for ten minutes at concurrency 64.
import { describe, expect, it } from 'vitest';

import { runSoak } from '../benchmarks/soak.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

describe('soak (CPU, seconds)', () => {
  it('survives a mixed load and gives every completed request its alone output', async () => {
    const report = await runSoak({
      model: await ensureTinyCheckpoint(),
      backend: 'cpu',
      seconds: 15,
      concurrency: 8,
      images: 4,
      imageSize: 56,
      maxNewTokens: 16,
      kvCacheGB: 0.05,
      seed: 7,
    });
    const { mismatches, unexpectedErrors, ...summary } = report;
    console.log(`soak: ${JSON.stringify(summary)}`);
    expect(unexpectedErrors).toEqual([]);
    expect(mismatches).toEqual([]);
    expect(report.completed).toBeGreaterThan(20);
    expect(report.badInputsRejected).toBeGreaterThan(0);
    expect(report.cancelled + report.deadlines).toBeGreaterThan(0);
    expect(report.prefixCache.hits).toBeGreaterThan(0);
    expect(report.kvUsedBytes.after - report.kvUsedBytes.cacheHeld).toBeLessThanOrEqual(report.kvUsedBytes.before);
    expect(report.deviceUsedBytes.after - report.deviceUsedBytes.before).toBeLessThanOrEqual(report.deviceUsedBytes.slack);
    expect(report.passed).toBe(true);
  }, 120_000);
});
