// Load with autocannon over loopback on the CPU backend, bounded in request
// count and time: within the queue's capacity every request succeeds (p99
// reported); beyond it the surplus is answered 503 with Retry-After, and
// nothing else fails.
import autocannon, { type Result } from 'autocannon';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer, type RexOmniServer } from '../lib/server/index.js';
import { SMALL_RUN, startServer, syntheticPng, type TestServer } from './server-harness.js';

let s: TestServer;
let image: Buffer;
beforeAll(async () => {
  s = await startServer({ maxQueuedRequests: 4 }, { maxActiveRequests: 4 });
  image = await syntheticPng(112, 112, 5); // a few predictions, ~15 tokens
});
afterAll(async () => {
  await s?.close();
});

function run(url: string, connections: number, amount: number, onResponse?: (status: number, headers: Record<string, string>) => void): Promise<Result> {
  return autocannon({
    url: `${url}/v1/detect?categories=cup,person&maxNewTokens=24`,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: image,
    connections,
    amount,
    duration: 60, // a cap: `amount` ends it first
    timeout: 30,
    ...(onResponse
      ? { requests: [{ onResponse: (status: number, _body: string, _context: unknown, headers?: Record<string, string>) => onResponse(status, headers ?? {}) }] }
      : {}),
  } as autocannon.Options);
}

const count = (result: Result, status: number) => result.statusCodeStats?.[`${status}` as `${number}`]?.count ?? 0;

describe('autocannon', () => {
  it('within capacity: every request succeeds', async () => {
    const result = await run(s.url, 8, 48);
    console.log(`autocannon within capacity: ${result.requests.total} requests, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, ${result.requests.average} req/s`);
    expect(result.errors).toBe(0);
    expect(result.timeouts).toBe(0);
    expect(result.non2xx).toBe(0);
    expect(count(result, 200)).toBe(48);
    expect(result.latency.p99).toBeGreaterThan(0);
  });

  it('beyond capacity: the surplus gets 503 with Retry-After, nothing else fails', async () => {
    let server: RexOmniServer | undefined;
    try {
      // Two slots (one running, one waiting) for six connections.
      server = await createServer(s.model, { env: {}, processMetrics: false, runDefaults: SMALL_RUN, maxActiveRequests: 1, maxQueuedRequests: 1, retryAfterSeconds: 2 });
      const url = await server.listen();
      const retryAfter = new Set<string>();
      const result = await run(url, 6, 36, (status, headers) => {
        if (status === 503) retryAfter.add(headers['retry-after'] ?? headers['Retry-After'] ?? 'missing');
      });
      console.log(`autocannon beyond capacity: ${count(result, 200)} × 200, ${count(result, 503)} × 503, p99 ${result.latency.p99} ms`);
      expect(result.errors).toBe(0);
      expect(result.timeouts).toBe(0);
      expect(count(result, 200)).toBeGreaterThan(0);
      expect(count(result, 503)).toBeGreaterThan(0);
      expect(result.non2xx).toBe(count(result, 503)); // no other failure
      expect(count(result, 200) + count(result, 503)).toBe(36);
      expect([...retryAfter]).toEqual(['2']);
    } finally {
      await server?.close();
    }
  });
});
