// Back-pressure (issue 10): the engine never waits for JS. Each step's events
// cross to the JS thread through the one event pump and are routed to every
// request's own buffer at once, so a stream nobody reads stalls neither the
// engine nor the other streams; its buffer is bounded by what the request can
// produce (maxNewTokens tokens and one finish), and reading it later yields
// its complete output, the same as the request run alone. Proved by event
// ordering, not timing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineEvent } from '../lib/engine.js';
import { goldenTokenRequest } from './fixtures/golden-token-request.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

let engine: Engine;

beforeAll(async () => {
  engine = await Engine.open(await ensureTinyCheckpoint(), { threads: 2, maxActiveRequests: 4 });
});
afterAll(async () => {
  await engine?.close();
});

// seed undefined: greedy (the reference comparison); else seeded sampling.
function request(maxNewTokens: number, seed?: number) {
  return goldenTokenRequest(maxNewTokens, { sampling: seed === undefined ? { temperature: 0 } : { temperature: 1, seed } });
}

async function drain(stream: AsyncIterableIterator<EngineEvent>): Promise<EngineEvent[]> {
  const events: EngineEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe('back-pressure', () => {
  it('a stream that is never read stalls no other stream, and later yields its complete output', async () => {
    const IGNORED_TOKENS = 48;
    // The reference: the same seeded request, alone and read as it goes.
    const alone = (await drain(engine.stream(await request(IGNORED_TOKENS)))).filter((e) => e.type === 'token');
    expect(alone).toHaveLength(IGNORED_TOKENS);

    const ignored = engine.stream(await request(IGNORED_TOKENS)); // not read until the end
    const others = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (i) => engine.generate(await request(6 + 4 * i, 100 + i))),
    );
    others.forEach((result, i) => {
      expect(result.tokens).toHaveLength(6 + 4 * i);
      expect(result.finish.reason).toBe('length');
    });
    // All six finished while nobody read `ignored`. It finishes in the core
    // too (its routing entry leaves at its finish event), unread.
    for (let i = 0; i < 12000 && engine.activeRequests > 0; ++i) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(engine.activeRequests).toBe(0);

    const events = await drain(ignored);
    const tokens = events.filter((e) => e.type === 'token');
    expect(tokens.map((e) => e.token)).toEqual(alone.map((e) => e.token));
    expect(tokens.map((e) => e.step)).toEqual(alone.map((e) => e.step));
    expect(events).toHaveLength(IGNORED_TOKENS + 1); // bounded by the request: its tokens and one finish
    const finish = events.at(-1)!;
    expect(finish.type === 'finish' && finish.reason).toBe('length');
    expect(finish.type === 'finish' && finish.generatedTokens).toBe(IGNORED_TOKENS);
  });

  it('leaving a stream early cancels it in the core; the others go on', async () => {
    const left = engine.stream(await request(5000, 3));
    expect((await left.next()).value?.type).toBe('token');
    const bystander = engine.generate(await request(8, 4));
    await left.return!();
    expect(await left.next()).toEqual({ value: undefined, done: true });
    expect((await bystander).tokens).toHaveLength(8);
    for (let i = 0; i < 12000 && engine.activeRequests > 0; ++i) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(engine.activeRequests).toBe(0); // its finish (cancelled) arrived: nothing runs on
  });
});
