// Bad requests over real HTTP: each answered with a 4xx and a JSON body
// { code, message } (the code stable per cause), after which the server is
// still up and a good request completes. Then the bearer token, the
// refusal to listen beyond loopback without one, and CORS.
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createServer } from '../lib/server/index.js';
import { startServer, syntheticPng, type TestServer } from './server-harness.js';

const LIMITS = { maxBodyBytes: 300_000, maxInputPixels: 1_000_000, maxCategories: 3, maxPhraseLength: 20, maxNewTokens: 64, maxBatchImages: 2 };
let s: TestServer;
let good: Buffer;
let truncated: Buffer;
beforeAll(async () => {
  s = await startServer(LIMITS);
  good = await syntheticPng(112, 112, 9); // the tiny model stops at once on it
  const jpeg = await sharp(await syntheticPng(200, 200, 3)).jpeg().toBuffer();
  truncated = jpeg.subarray(0, jpeg.length >> 1);
});
afterAll(async () => {
  await s?.close();
});

/** A PNG whose header says 100000 x 100000 but whose pixel data is 2 bytes: decoding it would fail as corrupt. */
function bombHeader(): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(100_000, 0);
  ihdr.writeUInt32BE(100_000, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', Buffer.from([0x78, 0x9c])), chunk('IEND', Buffer.alloc(0))]);
}

const post = (path: string, init: RequestInit) => fetch(`${s.url}${path}`, { method: 'POST', ...init });
const raw = (path: string, bytes: Buffer, type = 'image/png') => post(path, { headers: { 'content-type': type }, body: bytes });
const json = (path: string, value: unknown) => post(path, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });

async function expectError(response: Promise<Response>, status: number, code: string): Promise<{ code: string; message: string }> {
  const r = await response;
  const text = await r.text();
  expect(r.status, text).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/json/);
  const body = JSON.parse(text) as { code: string; message: string };
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  return body;
}

async function expectServing(): Promise<void> {
  const r = await raw('/v1/detect?categories=cup&maxNewTokens=8', good);
  expect(r.status).toBe(200);
  expect(((await r.json()) as { finishReason: string }).finishReason).toBeTypeOf('string');
}

describe('bad inputs: a 4xx with { code, message }, and the server goes on', () => {
  const cases: [string, () => Promise<Response>, number, string][] = [
    ['a corrupt image', () => raw('/v1/detect?categories=cup', truncated, 'image/jpeg'), 400, 'ERR_REX_IMAGE_CORRUPT'],
    ['bytes that are no image', () => raw('/v1/detect?categories=cup', Buffer.from('hello, world')), 415, 'ERR_REX_IMAGE_FORMAT'],
    ['a raw body over the limit', () => raw('/v1/detect?categories=cup', Buffer.alloc(400_000)), 413, 'ERR_REX_BODY_TOO_LARGE'],
    ['a JSON body over the limit', () => json('/v1/detect', { image: Buffer.alloc(300_000).toString('base64'), categories: ['cup'] }), 413, 'ERR_REX_BODY_TOO_LARGE'],
    [
      'a multipart file over the limit',
      () => {
        const form = new FormData();
        form.append('categories', 'cup');
        form.append('image', new Blob([Buffer.alloc(400_000)]), 'big.png');
        return post('/v1/detect', { body: form });
      },
      413,
      'ERR_REX_BODY_TOO_LARGE',
    ],
    ['a decompression bomb (refused from its header, never decoded)', () => raw('/v1/detect?categories=cup', bombHeader()), 413, 'ERR_REX_IMAGE_TOO_LARGE'],
    ['bad JSON', () => post('/v1/detect', { headers: { 'content-type': 'application/json' }, body: '{"image": "abc", ' }), 400, 'ERR_REX_BAD_JSON'],
    ['a JSON image that is not base64', () => json('/v1/detect', { image: '%%%not base64%%%', categories: ['cup'] }), 400, 'ERR_REX_IMAGE_ENCODING'],
    ['an unknown task', () => raw('/v1/segment?categories=cup', good), 404, 'ERR_REX_UNKNOWN_TASK'],
    ['an unknown batch task', () => json('/v1/batch', { task: 'segment', images: [good.toString('base64')] }), 400, 'ERR_REX_UNKNOWN_TASK'],
    ['too many categories', () => raw('/v1/detect?categories=a,b,c,d', good), 400, 'ERR_REX_TOO_MANY_CATEGORIES'],
    ['a phrase too long', () => json('/v1/gui-ground', { image: good.toString('base64'), element: 'x'.repeat(21) }), 400, 'ERR_REX_PHRASE_TOO_LONG'],
    ['too many new tokens', () => raw('/v1/detect?categories=cup&maxNewTokens=65', good), 400, 'ERR_REX_TOO_MANY_TOKENS'],
    ['too many batch images', () => json('/v1/batch', { task: 'detect', categories: ['cup'], images: [good, good, good].map((i) => i.toString('base64')) }), 400, 'ERR_REX_TOO_MANY_IMAGES'],
    ['a missing task field', () => raw('/v1/detect', good), 400, 'ERR_REX_INVALID_REQUEST'],
    ['a field of the wrong type', () => json('/v1/detect', { image: good.toString('base64'), categories: ['cup'], maxNewTokens: 'many' }), 400, 'ERR_REX_INVALID_REQUEST'],
    ['an unknown field', () => json('/v1/detect', { image: good.toString('base64'), categories: ['cup'], colour: 'red' }), 400, 'ERR_REX_INVALID_REQUEST'],
    ['a box outside the image', () => raw('/v1/visual-prompt?boxes=0,0,500,500', good), 400, 'ERR_REX_INVALID_REQUEST'],
    ['an unsupported body type', () => post('/v1/detect?categories=cup', { headers: { 'content-type': 'text/plain' }, body: 'hi' }), 415, 'ERR_REX_UNSUPPORTED_MEDIA_TYPE'],
    ['an Accept the server cannot answer', () => post('/v1/detect?categories=cup', { headers: { 'content-type': 'image/png', accept: 'text/html' }, body: good }), 406, 'ERR_REX_NOT_ACCEPTABLE'],
  ];
  it.each(cases)('%s', async (_name, send, status, code) => {
    await expectError(send(), status, code);
    await expectServing();
  });

  it('too many pixels in a real image: refused at its header size', async () => {
    const big = await sharp({ create: { width: 1100, height: 1000, channels: 3, background: '#808080' } }).png().toBuffer();
    const { message } = await expectError(raw('/v1/detect?categories=cup', big), 413, 'ERR_REX_IMAGE_TOO_LARGE');
    expect(message).toContain('1100x1000');
    await expectServing();
  });

  it('counts each error by its code in /metrics', async () => {
    const text = await (await fetch(`${s.url}/metrics`)).text();
    for (const code of ['ERR_REX_IMAGE_CORRUPT', 'ERR_REX_BODY_TOO_LARGE', 'ERR_REX_IMAGE_TOO_LARGE', 'ERR_REX_BAD_JSON', 'ERR_REX_UNKNOWN_TASK'])
      expect(text).toMatch(new RegExp(`rex_omni_errors_total\\{code="${code}"\\} [1-9]`));
  });
});

describe('auth', () => {
  let secured: TestServer;
  beforeAll(async () => {
    secured = await startServer({ env: { REX_OMNI_TOKEN: 's3cret-token' } });
  });
  afterAll(async () => {
    await secured?.close();
  });
  const detect = (headers: Record<string, string>) =>
    fetch(`${secured.url}/v1/detect?categories=cup&maxNewTokens=8`, { method: 'POST', headers: { 'content-type': 'image/png', ...headers }, body: good });

  it('refuses a missing or wrong token with 401, takes the right one', async () => {
    const missing = await detect({});
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer/);
    await expectError(Promise.resolve(missing), 401, 'ERR_REX_UNAUTHORIZED');
    await expectError(detect({ authorization: 'Bearer s3cret-tokem' }), 401, 'ERR_REX_UNAUTHORIZED');
    await expectError(detect({ authorization: 'Bearer s3cret' }), 401, 'ERR_REX_UNAUTHORIZED');
    await expectError(detect({ authorization: 'Basic czNjcmV0LXRva2Vu' }), 401, 'ERR_REX_UNAUTHORIZED');
    await expectError(fetch(`${secured.url}/metrics`), 401, 'ERR_REX_UNAUTHORIZED');
    expect((await detect({ authorization: 'Bearer s3cret-token' })).status).toBe(200);
    expect((await fetch(`${secured.url}/metrics`, { headers: { authorization: 'bearer s3cret-token' } })).status).toBe(200);
  });

  it('leaves the probes open', async () => {
    expect((await fetch(`${secured.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${secured.url}/readyz`)).status).toBe(200);
  });

  it('refuses to listen beyond loopback without a token unless insecurePublic', async () => {
    const open = await createServer(s.model, { env: {}, processMetrics: false });
    await expect(open.listen({ port: 0, host: '0.0.0.0' })).rejects.toMatchObject({ code: 'ERR_REX_INSECURE_PUBLIC' });
    await expect(open.listen({ port: 0, host: '::' })).rejects.toMatchObject({ code: 'ERR_REX_INSECURE_PUBLIC' });
    await open.close();
    const insecure = await createServer(s.model, { env: {}, processMetrics: false, insecurePublic: true });
    expect(await insecure.listen({ port: 0, host: '0.0.0.0' })).toMatch(/^http:\/\//);
    await insecure.close();
    const withToken = await createServer(s.model, { env: {}, processMetrics: false, token: 't' });
    expect(await withToken.listen({ port: 0, host: '0.0.0.0' })).toMatch(/^http:\/\//);
    await withToken.close();
  });
});

describe('CORS', () => {
  it('is off by default', async () => {
    const r = await fetch(`${s.url}/healthz`, { headers: { origin: 'http://app.example' } });
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('allows the configured origins only', async () => {
    const server = await createServer(s.model, { env: {}, processMetrics: false, cors: ['http://app.example'] });
    const url = await server.listen();
    try {
      const allowed = await fetch(`${url}/healthz`, { headers: { origin: 'http://app.example' } });
      expect(allowed.headers.get('access-control-allow-origin')).toBe('http://app.example');
      const preflight = await fetch(`${url}/v1/detect`, {
        method: 'OPTIONS',
        headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
      });
      expect(preflight.status).toBe(204);
      const other = await fetch(`${url}/healthz`, { headers: { origin: 'http://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await server.close();
    }
  });
});
