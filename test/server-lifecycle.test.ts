// A request's life in the server: a client that disconnects mid-stream (or
// before any byte) cancels its run in the engine and frees its slot; the
// deadline; the bounded queue's 503; readiness while the model loads; and
// graceful shutdown (in-flight requests finish, those past the drain
// deadline are cancelled, then the model closes). The long runs are
// unconstrained on an image where the tiny model never stops (thousands of
// tokens), so they end only by cancel or deadline, whatever the speed.
import { request as httpRequest, type ClientRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RexOmni } from '../lib/rex-omni.js';
import { createServer } from '../lib/server/index.js';
import { fixtureImage, ndjson, startServer, syntheticPng, waitFor, type TestServer } from './server-harness.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

let s: TestServer;
let endless: Buffer;
beforeAll(async () => {
  s = await startServer({ maxQueuedRequests: 1 }, { maxActiveRequests: 2 });
  endless = await syntheticPng(112, 112, 1);
});
afterAll(async () => {
  await s?.close();
});

const LONG = '/v1/detect?categories=cup&constrained=false&maxNewTokens=4000';
const engineCount = () => s.model.engine.activeRequests;

/** Starts a long request; resolves once its response has begun (the first bytes) or, for JSON, once it runs in the engine. */
function startLong(url: string, accept: string): Promise<{ request: ClientRequest; firstBytes: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(`${url}${LONG}`, { method: 'POST', headers: { 'content-type': 'image/png', accept } });
    request.on('error', () => {});
    request.on('response', (response) => {
      response.once('data', (chunk: Buffer) => resolve({ request, firstBytes: chunk.toString() }));
    });
    request.end(endless);
    if (accept === 'application/json')
      void waitFor(() => engineCount() > 0).then((ok) => (ok ? resolve({ request, firstBytes: '' }) : reject(new Error('never ran'))));
  });
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
}

describe('disconnects', () => {
  it.each(['text/event-stream', 'application/json'])('a client that leaves (%s) cancels its run and frees its slot', async (accept) => {
    const { request, firstBytes } = await startLong(s.url, accept);
    if (accept === 'text/event-stream') expect(firstBytes).toBe(': rex-omni\n\n'); // mid-stream
    expect(await waitFor(() => engineCount() === 1)).toBe(true);
    expect(s.server.inFlight).toBe(1);
    expect(await metric(s.url, 'rex_omni_admitted_requests')).toBe(1);
    request.destroy();
    // 4000 tokens would take far longer: the slot is free because the run was cancelled.
    expect(await waitFor(() => engineCount() === 0 && s.server.inFlight === 0, 5000)).toBe(true);
    expect(await metric(s.url, 'rex_omni_admitted_requests')).toBe(0);
    const next = await fetch(`${s.url}/v1/detect?categories=cup&maxNewTokens=8`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: endless });
    expect(next.status).toBe(200);
  });
});

describe('the bounded queue', () => {
  it('answers 503 with Retry-After once full, and admits again when a slot frees', async () => {
    // maxActiveRequests 2 + maxQueuedRequests 1: three slots.
    const held = await Promise.all([0, 1, 2].map(() => startLong(s.url, 'text/event-stream')));
    expect(s.server.inFlight).toBe(3);
    const refused = await fetch(`${s.url}${LONG}`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: endless });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({ code: 'ERR_REX_QUEUE_FULL' });
    expect(await metric(s.url, 'rex_omni_queue_depth')).toBe(1);
    held[0]!.request.destroy();
    expect(await waitFor(() => s.server.inFlight === 2)).toBe(true);
    // Admitted again; it waits in the engine behind the two long runs until they go.
    const admitted = fetch(`${s.url}/v1/detect?categories=cup&maxNewTokens=8`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: endless });
    expect(await waitFor(() => s.server.inFlight === 3 && engineCount() === 3)).toBe(true);
    for (const h of held.slice(1)) h.request.destroy();
    expect((await admitted).status).toBe(200);
    expect(await waitFor(() => engineCount() === 0 && s.server.inFlight === 0, 5000)).toBe(true);
  });
});

describe('the deadline', () => {
  it('answers 504 ERR_REX_DEADLINE (JSON) and frees the slot', async () => {
    const started = performance.now();
    const r = await fetch(`${s.url}${LONG}&deadlineMs=300`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: endless });
    expect(r.status).toBe(504);
    expect(await r.json()).toMatchObject({ code: 'ERR_REX_DEADLINE' });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(await waitFor(() => engineCount() === 0 && s.server.inFlight === 0)).toBe(true);
  });

  it('ends a stream with an error event', async () => {
    const r = await fetch(`${s.url}${LONG}&deadlineMs=300`, { method: 'POST', headers: { 'content-type': 'image/png', accept: 'application/x-ndjson' }, body: endless });
    expect(r.status).toBe(200);
    const events = ndjson(await r.text());
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'ERR_REX_DEADLINE' });
    expect(await waitFor(() => engineCount() === 0)).toBe(true);
  });
});

describe('readiness and shutdown', () => {
  it('/readyz is 503 while the model loads, 200 once loaded', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const loading = gate.then(async () => RexOmni.load(await ensureTinyCheckpoint(), { threads: 1 }));
    const server = await createServer(loading, { env: {}, processMetrics: false, closeModel: true });
    const url = await server.listen();
    try {
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const notReady = await fetch(`${url}/readyz`);
      expect(notReady.status).toBe(503);
      expect(await notReady.json()).toMatchObject({ code: 'ERR_REX_NOT_READY' });
      const early = await fetch(`${url}/v1/detect?categories=cup`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: endless });
      expect(early.status).toBe(503);
      expect(await early.json()).toMatchObject({ code: 'ERR_REX_NOT_READY' });
      release();
      await server.ready;
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      await server.close();
    }
    // closeModel: the model is closed with the server.
    await expect((await loading).detect(endless, ['cup'])).rejects.toThrow();
  });

  it('drains: in-flight requests finish, the rest are cancelled at the drain deadline, then the model closes', async () => {
    const model = await RexOmni.load(await ensureTinyCheckpoint(), { threads: 2, maxActiveRequests: 4 });
    const server = await createServer(model, { env: {}, processMetrics: false, closeModel: true, runDefaults: { maxPixels: 50176 } });
    const url = await server.listen();
    const short = fetch(`${url}/v1/detect?categories=person,cup&maxNewTokens=40`, { method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: fixtureImage('cafe.jpg') });
    const long = fetch(`${url}${LONG}`, { method: 'POST', headers: { 'content-type': 'image/png', accept: 'application/x-ndjson' }, body: endless });
    expect(await waitFor(() => model.engine.activeRequests === 2)).toBe(true);
    const started = performance.now();
    const closed = server.close({ drainMs: 1500 });
    const finished = await short;
    expect(finished.status).toBe(200);
    expect(((await finished.json()) as { predictions: unknown[] }).predictions.length).toBeGreaterThan(0);
    const cut = ndjson(await (await long).text());
    expect(cut.at(-1)).toMatchObject({ type: 'error', code: 'ERR_REX_SHUTTING_DOWN' });
    await closed;
    expect(performance.now() - started).toBeGreaterThanOrEqual(1400);
    expect(performance.now() - started).toBeLessThan(10_000);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow(); // no longer listening
    await expect(model.detect(endless, ['cup'])).rejects.toThrow(); // the model is closed
  });
});
