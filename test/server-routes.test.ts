// The HTTP server on the tiny checkpoint, over real HTTP on loopback: every
// task route with each body format (raw bytes + query string, multipart,
// JSON with base64 and with a data URL) and each response format (JSON,
// NDJSON, SSE), which must all agree with the model run directly; the batch
// route in each format; the operational routes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { RexOmniResult } from '../lib/rex-omni.js';
import type { TaskSpec } from '../lib/tasks/index.js';
import { SMALL_RUN, fixtureImage, ndjson, sse, startServer, type TestServer } from './server-harness.js';

let s: TestServer;
beforeAll(async () => {
  s = await startServer({}, { maxActiveRequests: 12 });
});
afterAll(async () => {
  await s?.close();
});

const RUN = { maxNewTokens: 40, maxPhraseTokens: 3 };
// A keypoint prediction is long: it needs more tokens to complete one.
const runOf = (route: string) => ({ ...RUN, maxNewTokens: route === 'keypoints' ? 48 : RUN.maxNewTokens });
// Inputs on which the tiny checkpoint's greedy output has predictions (as test/cli.test.ts).
const ROUTES: { route: string; file: string; type: string; fields: Record<string, unknown>; text: Record<string, string>; spec: TaskSpec }[] = [
  { route: 'detect', file: 'cafe.jpg', type: 'image/jpeg', fields: { categories: ['person', 'cup'] }, text: { categories: 'person,cup' }, spec: { task: 'detection', categories: ['person', 'cup'] } },
  { route: 'point', file: 'cup.png', type: 'image/png', fields: { categories: ['handle'] }, text: { categories: 'handle' }, spec: { task: 'pointing', categories: ['handle'] } },
  { route: 'visual-prompt', file: 'layout.jpg', type: 'image/jpeg', fields: { boxes: [[10, 10, 60, 60]] }, text: { boxes: '10,10,60,60' }, spec: { task: 'visual_prompting', boxes: [[10, 10, 60, 60]] } },
  { route: 'keypoints', file: 'person.png', type: 'image/png', fields: { keypointType: 'person' }, text: { keypointType: 'person' }, spec: { task: 'keypoint', keypointType: 'person' } },
  { route: 'ocr-boxes', file: 'layout.jpg', type: 'image/jpeg', fields: { granularity: 'word' }, text: { granularity: 'word' }, spec: { task: 'ocr_box', granularity: 'word' } },
  { route: 'ocr-polygons', file: 'layout.jpg', type: 'image/jpeg', fields: { granularity: 'text line' }, text: { granularity: 'text line' }, spec: { task: 'ocr_polygon', granularity: 'text line' } },
  { route: 'gui-ground', file: 'gui.png', type: 'image/png', fields: { element: 'search' }, text: { element: 'search' }, spec: { task: 'gui_grounding', element: 'search' } },
  { route: 'gui-point', file: 'gui.png', type: 'image/png', fields: { element: 'search' }, text: { element: 'search' }, spec: { task: 'gui_pointing', element: 'search' } },
];
const ACCEPTS = ['application/json', 'application/x-ndjson', 'text/event-stream'] as const;
const BODIES = ['raw', 'multipart', 'json-base64', 'json-data-url'] as const;

function body(format: (typeof BODIES)[number], t: (typeof ROUTES)[number]): { url: string; init: RequestInit } {
  const image = fixtureImage(t.file);
  const run = runOf(t.route);
  const text = { ...t.text, maxNewTokens: String(run.maxNewTokens), maxPhraseTokens: String(run.maxPhraseTokens) };
  switch (format) {
    case 'raw':
      return { url: `/v1/${t.route}?${new URLSearchParams(text)}`, init: { headers: { 'content-type': t.type }, body: image } };
    case 'multipart': {
      const form = new FormData();
      form.append('image', new Blob([image], { type: t.type }), t.file);
      for (const [key, value] of Object.entries(text)) form.append(key, value);
      return { url: `/v1/${t.route}`, init: { body: form } };
    }
    case 'json-base64':
    case 'json-data-url': {
      const base64 = image.toString('base64');
      const encoded = format === 'json-base64' ? base64 : `data:${t.type};base64,${base64}`;
      return { url: `/v1/${t.route}`, init: { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: encoded, ...t.fields, ...run }) } };
    }
  }
}

/** The predictions (and the done result) a response carries, whatever its format. */
async function read(response: Response, accept: (typeof ACCEPTS)[number]): Promise<{ streamed: unknown[]; result: RexOmniResult }> {
  const text = await response.text();
  expect(response.status, text).toBe(200);
  expect(response.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
  if (accept === 'application/json') {
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const result = JSON.parse(text) as RexOmniResult;
    return { streamed: result.predictions, result };
  }
  const events =
    accept === 'application/x-ndjson'
      ? ndjson(text).map((data) => ({ event: data.type as string, data }))
      : sse(text).map((e) => {
          expect(e.data.type).toBe(e.event);
          return e;
        });
  expect(response.headers.get('content-type')).toMatch(accept === 'text/event-stream' ? /^text\/event-stream/ : /^application\/x-ndjson/);
  expect(events.at(-1)!.event).toBe('done');
  expect(events.slice(0, -1).every((e) => e.event === 'prediction')).toBe(true);
  return { streamed: events.slice(0, -1).map((e) => e.data.prediction), result: events.at(-1)!.data.result as RexOmniResult };
}

describe('every task route, with every body format and every response format', () => {
  it.each(ROUTES)('$route', async (t) => {
    const direct = await s.model.run(fixtureImage(t.file), t.spec, { ...SMALL_RUN, ...runOf(t.route) });
    expect(direct.predictions.length).toBeGreaterThan(0);
    // Every body with JSON back, every response type from a raw body; detect: every pair.
    const runs =
      t.route === 'detect'
        ? BODIES.flatMap((format) => ACCEPTS.map((accept) => ({ format, accept })))
        : [...BODIES.map((format) => ({ format, accept: ACCEPTS[0] })), ...ACCEPTS.slice(1).map((accept) => ({ format: 'multipart' as const, accept }))];
    await Promise.all(
      runs.map(async ({ format, accept }) => {
        const { url, init } = body(format, t);
        const response = await fetch(`${s.url}${url}`, { ...init, method: 'POST', headers: { ...(init.headers as object), accept } });
        const { streamed, result } = await read(response, accept);
        // The same greedy output as the model run directly (the CPU backend is batch-invariant).
        expect(result.outputTokenIds, `${format} ${accept}`).toEqual(direct.outputTokenIds);
        expect(streamed).toEqual(direct.predictions);
        expect(result.predictions).toEqual(direct.predictions);
        expect(result.image.width).toBe(direct.image.width);
      }),
    );
  });
});

describe('POST /v1/batch', () => {
  const images = [fixtureImage('cafe.jpg'), fixtureImage('boys.jpg'), fixtureImage('cup.png')];
  let direct: RexOmniResult[];
  beforeAll(async () => {
    direct = await Promise.all(images.map((image) => s.model.detect(image, ['person', 'cup'], { ...SMALL_RUN, ...RUN })));
  });
  const json = () => JSON.stringify({ task: 'detect', images: images.map((i) => i.toString('base64')), categories: ['person', 'cup'], ...RUN });

  it('answers JSON with every result in order and a summary', async () => {
    const response = await fetch(`${s.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: json() });
    const out = (await response.json()) as { results: { index: number; result: RexOmniResult }[]; summary: Record<string, unknown> };
    expect(response.status).toBe(200);
    expect(out.results.map((r) => r.index)).toEqual([0, 1, 2]);
    out.results.forEach((r, i) => expect(r.result.outputTokenIds).toEqual(direct[i]!.outputTokenIds));
    expect(out.summary).toMatchObject({ type: 'summary', task: 'detect', images: 3, succeeded: 3, failed: 0 });
  });

  it.each(['application/x-ndjson', 'text/event-stream'])('streams each result as it finishes, then the summary (%s)', async (accept) => {
    const response = await fetch(`${s.url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json', accept }, body: json() });
    const text = await response.text();
    expect(response.status).toBe(200);
    const events = accept === 'text/event-stream' ? sse(text).map((e) => e.data) : ndjson(text);
    expect(events.map((e) => e.type)).toEqual(['result', 'result', 'result', 'summary']);
    expect(events.slice(0, 3).map((e) => e.index).sort()).toEqual([0, 1, 2]);
    for (const e of events.slice(0, 3)) expect((e.result as RexOmniResult).outputTokenIds).toEqual(direct[e.index as number]!.outputTokenIds);
  });

  it('takes multipart, one file part per image; a bad image fails alone', async () => {
    const form = new FormData();
    form.append('task', 'detect');
    form.append('categories', 'person,cup');
    form.append('maxNewTokens', String(RUN.maxNewTokens));
    form.append('maxPhraseTokens', String(RUN.maxPhraseTokens));
    form.append('image', new Blob([images[0]!]), 'a.jpg');
    form.append('image', new Blob([Buffer.from('not an image at all')]), 'b.jpg');
    form.append('image', new Blob([images[2]!]), 'c.png');
    const response = await fetch(`${s.url}/v1/batch`, { method: 'POST', headers: { accept: 'application/x-ndjson' }, body: form });
    const events = ndjson(await response.text());
    expect(response.status).toBe(200);
    const byIndex = new Map(events.filter((e) => e.type !== 'summary').map((e) => [e.index, e]));
    expect((byIndex.get(0)!.result as RexOmniResult).outputTokenIds).toEqual(direct[0]!.outputTokenIds);
    expect(byIndex.get(1)).toMatchObject({ type: 'error', code: 'ERR_REX_IMAGE_FORMAT' });
    expect((byIndex.get(2)!.result as RexOmniResult).outputTokenIds).toEqual(direct[2]!.outputTokenIds);
    expect(events.at(-1)).toMatchObject({ type: 'summary', images: 3, succeeded: 2, failed: 1 });
  });
});

describe('operations', () => {
  it('/healthz and /readyz answer 200 once loaded', async () => {
    expect(await (await fetch(`${s.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });

  it('/metrics exports the server and engine figures', async () => {
    const response = await fetch(`${s.url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const text = await response.text();
    for (const name of [
      'rex_omni_queue_depth',
      'rex_omni_active_requests',
      'rex_omni_engine_requests',
      'rex_omni_batch_size',
      'rex_omni_generated_tokens_total',
      'rex_omni_time_to_first_token_seconds_bucket',
      'rex_omni_decode_tokens_per_second_bucket',
      'rex_omni_request_duration_seconds_bucket',
      'rex_omni_gpu_memory_bytes{kind="weights"}',
      'rex_omni_batch_images_bucket',
    ])
      expect(text, name).toContain(name);
    // The runs above were counted.
    const generated = Number(/^rex_omni_generated_tokens_total (\d+)/m.exec(text)?.[1]);
    expect(generated).toBeGreaterThan(0);
    expect(text).toMatch(/rex_omni_request_duration_seconds_count\{route="\/v1\/detect",status="200"\} [1-9]/);
    expect(text).toMatch(/rex_omni_errors_total\{code="ERR_REX_IMAGE_FORMAT"\} 1/);
  });

  it('/openapi.json documents every route from its schemas', async () => {
    const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, { post?: { requestBody: { content: Record<string, unknown> }; parameters?: { name: string; in: string }[] } }> };
    expect(doc.openapi).toMatch(/^3\./);
    for (const t of ROUTES) {
      const post = doc.paths[`/v1/${t.route}`]!.post!;
      expect(Object.keys(post.requestBody.content).sort()).toEqual(['application/json', 'application/octet-stream', 'image/*', 'multipart/form-data']);
      expect(post.parameters!.filter((p) => p.in === 'query').map((p) => p.name)).toContain('maxNewTokens');
    }
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/batch', '/healthz', '/readyz', '/metrics']));
  });
});
