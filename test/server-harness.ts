// Shared by the server suites: a server on 127.0.0.1 (an ephemeral port)
// over the tiny checkpoint, test images as encoded bytes, and readers for
// NDJSON and server-sent-event bodies.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

import { RexOmni, type LoadOptions } from '../lib/rex-omni.js';
import { createServer, type RexOmniServer } from '../lib/server/index.js';
import type { ServerOptions } from '../lib/server/options.js';
import { IMAGES_DIR } from './fixtures/run-cli.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

/** Small images and token budgets: each run takes a fraction of a second on the CPU. */
export const SMALL_RUN = { maxPixels: 50176 };

export interface TestServer {
  server: RexOmniServer;
  model: RexOmni;
  url: string;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions = {}, load: LoadOptions = {}): Promise<TestServer> {
  const model = await RexOmni.load(await ensureTinyCheckpoint(), { threads: 2, maxActiveRequests: 4, ...load });
  const server = await createServer(model, { runDefaults: SMALL_RUN, maxActiveRequests: load.maxActiveRequests ?? 4, processMetrics: false, env: {}, ...options });
  const url = await server.listen({ port: 0, host: '127.0.0.1' });
  return {
    server,
    model,
    url,
    close: async () => {
      await server.close({ drainMs: 2000 });
      await model.close();
    },
  };
}

export const fixtureImage = (name: string): Buffer => readFileSync(join(IMAGES_DIR, name));

/** A synthetic PNG (test/fixtures/synthetic-image.ts). */
export function syntheticPng(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(Buffer.from(syntheticRgb(width, height, seed)), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

export function ndjson(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Server-sent events: each `event:` with its parsed `data:`; comment lines skipped. */
export function sse(text: string): { event: string; data: Record<string, unknown> }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim().length > 0 && !block.startsWith(':'))
    .map((block) => {
      const lines = block.split('\n');
      const event = lines.find((l) => l.startsWith('event: '))!.slice(7);
      const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      return { event, data: JSON.parse(data) as Record<string, unknown> };
    });
}

/** Polls `condition` every 5 ms for up to `ms`. */
export async function waitFor(condition: () => boolean, ms = 10_000): Promise<boolean> {
  const until = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}
