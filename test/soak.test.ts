// The soak harness (benchmarks/soak.ts) for seconds on the CPU backend: many
// requests at once with cancels, deadlines, corrupt images and bad options,
// on repeated images (prefix-cache hits), a share of them forced-length
// answers (8, 16 or 32 tokens here): nothing crashes, every failure is typed,
// every completed greedy request (forced-length ones included) equals the same
// request alone, and the KV cache holds nothing but the prefix cache
// afterwards. Once under batchInvariant, once in default mode with running
// requests decoding inside prefill passes (prefillDecodeRows), where the CPU
// backend still gives the alone bits, so no divergence either. The device runs
// the same harness for ten minutes at concurrency 64.
import { describe, expect, it } from 'vitest';

import { runSoak, type SoakOptions, type SoakReport } from '../benchmarks/soak.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const MAX_NEW_TOKENS = 16;

async function soak(options: Pick<SoakOptions, 'seconds' | 'batchInvariant' | 'prefillDecodeRows'>): Promise<SoakReport> {
  const report = await runSoak({
    model: await ensureTinyCheckpoint(),
    backend: 'cpu',
    concurrency: 8,
    images: 4,
    imageSize: 56,
    maxNewTokens: MAX_NEW_TOKENS,
    kvCacheGB: 0.05,
    seed: 7,
    ...options,
  });
  const { mismatches, divergences, unexpectedErrors, ...summary } = report;
  console.log(`soak: ${JSON.stringify({ ...summary, divergences: divergences.count })}`);
  return report;
}

// What both modes must show: no unexpected error, forced-length answers of their lengths compared with alone
// beside the task requests, KV and device memory back to baseline.
function expectCleanRun(report: SoakReport): void {
  expect(report.unexpectedErrors).toEqual([]);
  const { completed, tokens, compared } = report.forcedLength;
  expect(completed).toBeGreaterThan(3);
  expect(compared).toBe(completed);
  expect(report.compared).toBeGreaterThan(compared);
  // Each answer is MAX_NEW_TOKENS/2, MAX_NEW_TOKENS or 2*MAX_NEW_TOKENS long (the soak checks each one).
  expect(tokens).toBeGreaterThanOrEqual((MAX_NEW_TOKENS / 2) * completed);
  expect(tokens).toBeLessThanOrEqual(2 * MAX_NEW_TOKENS * completed);
  expect(report.kvUsedBytes.after - report.kvUsedBytes.cacheHeld).toBeLessThanOrEqual(report.kvUsedBytes.before);
  expect(report.deviceUsedBytes.after - report.deviceUsedBytes.before).toBeLessThanOrEqual(report.deviceUsedBytes.slack);
}

describe('soak (CPU, seconds)', () => {
  it('survives a mixed load and gives every completed request its alone output', async () => {
    const report = await soak({ seconds: 15 });
    expect(report.batchInvariant).toBe(true);
    expectCleanRun(report);
    expect(report.mismatches).toEqual([]);
    expect(report.divergences).toEqual({ count: 0, examples: [] });
    expect(report.completed).toBeGreaterThan(20);
    expect(report.badInputsRejected).toBeGreaterThan(0);
    expect(report.cancelled + report.deadlines).toBeGreaterThan(0);
    expect(report.prefixCache.hits).toBeGreaterThan(0);
    expect(report.passed).toBe(true);
  }, 120_000);

  it('in default mode (no batchInvariant), with decode rows riding prefill passes, gives the alone output too: no divergence on the CPU', async () => {
    const report = await soak({ seconds: 8, batchInvariant: false, prefillDecodeRows: 4 });
    expect(report.batchInvariant).toBe(false);
    expect(report.prefillRides).toBeGreaterThan(0);
    expectCleanRun(report);
    expect(report.divergences).toEqual({ count: 0, examples: [] });
    expect(report.mismatches).toEqual([]);
    expect(report.completed).toBeGreaterThan(10);
    expect(report.passed).toBe(true);
  }, 120_000);
});
