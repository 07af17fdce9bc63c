// Per-request deadlines and the bounded queue through the binding, on the
// tiny checkpoint: a queued and a running request past their deadline end
// with reason "deadline" (ERR_REX_DEADLINE) while the others go on; a submit
// beyond maxQueuedRequests is refused at once with ERR_REX_QUEUE_FULL; bad
// values are refused with "expected … but got …". The requests that must
// outlive a deadline are thousands of tokens long without a stop id and end
// by cancel, so no assertion depends on how fast a step is.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineEvent, type FinishEvent } from '../lib/engine.js';
import { RexOmniError } from '../lib/errors.js';
import { RexOmni } from '../lib/rex-omni.js';
import { goldenTokenRequest } from './fixtures/golden-token-request.js';
import { syntheticRgb } from './fixtures/synthetic-image.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const LONG = 5000; // never reached: these requests end by cancel or deadline
let tiny: string;
let engine: Engine; // one request at a time, at most one waiting

beforeAll(async () => {
  tiny = await ensureTinyCheckpoint();
  // A KV budget, so that the memory a request holds shows in info() (and its release).
  engine = await Engine.open(tiny, { threads: 2, maxActiveRequests: 1, maxQueuedRequests: 1, kvCacheGB: 0.125 });
});
afterAll(async () => {
  await engine?.close();
});

const request = goldenTokenRequest;

async function finishOf(stream: AsyncIterableIterator<EngineEvent>): Promise<{ tokens: number; finish: FinishEvent }> {
  let tokens = 0;
  for await (const event of stream) {
    if (event.type === 'finish') return { tokens, finish: event };
    ++tokens;
  }
  throw new Error('no finish event');
}

/** Starts a long request and waits until it runs (its first token): the queue is then empty. */
async function startLong(): Promise<AsyncIterableIterator<EngineEvent>> {
  const stream = engine.stream(await request(LONG));
  const first = await stream.next();
  expect(first.value?.type).toBe('token');
  return stream;
}

describe('deadlineMs', () => {
  // KV held by requests: what is used, less the image prefix cache's entries.
  const slotBytes = (): number => {
    const info = engine.info();
    return info.memory.kvCacheUsedBytes - info.prefixCache.heldBytes;
  };

  it('ends a queued request with reason "deadline" while the one ahead runs on', async () => {
    const running = await startLong();
    const queued = await finishOf(engine.stream(await request(5, { deadlineMs: 30 })));
    expect(queued.finish.reason).toBe('deadline');
    expect(queued.tokens).toBe(0);
    expect(queued.finish.generatedTokens).toBe(0);
    expect(queued.finish.error).toBeInstanceOf(RexOmniError);
    expect(queued.finish.error?.code).toBe('ERR_REX_DEADLINE');
    expect(queued.finish.error?.message).toContain('expected to finish within 30 ms of submit but got 0 of 5 tokens');
    expect(queued.finish.error?.message).toContain('still queued');
    expect(engine.activeRequests).toBe(1); // the long one is still running
    expect(engine.info().memory.kvCacheUsedBytes).toBeGreaterThan(0);
    await running.return!(); // leaving the stream cancels it in the core
    const after = await engine.generate(await request(4));
    expect(after.tokens).toHaveLength(4);
    expect(after.finish.reason).toBe('length');
    expect(slotBytes()).toBe(0); // every slot released (the image prefix cache keeps its entries)
  });

  it('ends a running request with reason "deadline" after some tokens; generate() rejects with ERR_REX_DEADLINE', async () => {
    const running = await finishOf(engine.stream(await request(LONG, { deadlineMs: 300 })));
    expect(running.finish.reason).toBe('deadline');
    expect(running.finish.error?.message).toContain('(running)');
    expect(running.tokens).toBe(running.finish.generatedTokens);
    expect(running.tokens).toBeLessThan(LONG);
    const error = await engine.generate(await request(LONG, { deadlineMs: 40 })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RexOmniError);
    expect((error as RexOmniError).code).toBe('ERR_REX_DEADLINE');
    // The engine goes on.
    expect((await engine.generate(await request(3))).tokens).toHaveLength(3);
    expect(slotBytes()).toBe(0);
  });

  it('refuses a bad deadline', async () => {
    expect(() => engine.stream({ promptIds: [1, 2, 3], deadlineMs: -5 })).toThrow(
      'request.deadlineMs: expected a non-negative integer number of milliseconds (0: none) but got -5',
    );
    expect(() => engine.stream({ promptIds: [1, 2, 3], deadlineMs: 'soon' as unknown as number })).toThrow(
      'request.deadlineMs: expected a number but got a string',
    );
  });
});

describe('maxQueuedRequests', () => {
  it('refuses a submit beyond the limit at once with ERR_REX_QUEUE_FULL and disturbs nothing', async () => {
    const running = await startLong();
    const queued = engine.generate(await request(3));
    let refused: unknown;
    try {
      engine.stream(await request(2));
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(RexOmniError);
    expect((refused as RexOmniError).code).toBe('ERR_REX_QUEUE_FULL');
    expect((refused as RexOmniError).message).toContain('expected at most 1 queued requests but got 2');
    await expect(engine.generate(await request(2))).rejects.toMatchObject({ code: 'ERR_REX_QUEUE_FULL' });
    await running.return!();
    const done = await queued;
    expect(done.tokens).toHaveLength(3);
    expect(done.finish.reason).toBe('length');
    expect((await engine.generate(await request(2))).tokens).toHaveLength(2);
  });

  it('is validated', async () => {
    await expect(Engine.open(tiny, { maxQueuedRequests: -1 })).rejects.toThrow(
      'options.maxQueuedRequests: expected an integer >= 0 but got -1',
    );
    await expect(Engine.open(tiny, { maxQueuedRequests: 1.5 })).rejects.toThrow(
      'options.maxQueuedRequests: expected an integer but got 1.5',
    );
  });
});

describe('RexOmni', () => {
  const SMALL = { data: syntheticRgb(56, 56, 9), width: 56, height: 56 };
  const task = { task: 'ocr_box', granularity: 'word' } as const;
  const long = { maxNewTokens: LONG, constrained: false, sampling: { temperature: 1 } };

  it('rejects a run past deadlineMs with ERR_REX_DEADLINE and a full queue with ERR_REX_QUEUE_FULL', async () => {
    const model = await RexOmni.load(tiny, { threads: 2, maxActiveRequests: 1, maxQueuedRequests: 1, defaults: { maxPixels: 64 * 28 * 28 } });
    try {
      const late = await model.run(SMALL, task, { ...long, deadlineMs: 50 }).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(RexOmniError);
      expect((late as RexOmniError).code).toBe('ERR_REX_DEADLINE');

      // A long request runs (its first token came), so the queue is empty; one waits; the next is refused.
      const running = model.engine.stream(await request(LONG));
      expect((await running.next()).value?.type).toBe('token');
      const waiting = model.run(SMALL, task, { maxNewTokens: 3, constrained: false });
      // run() decodes its image and builds its prompt before it queues: wait until it has.
      await waitFor(() => model.engine.activeRequests === 2);
      const full = await model.run(SMALL, task, { maxNewTokens: 3, constrained: false }).catch((e: unknown) => e);
      expect(full).toBeInstanceOf(RexOmniError);
      expect((full as RexOmniError).code).toBe('ERR_REX_QUEUE_FULL');
      await running.return!();
      expect((await waiting).tokens.generated).toBe(3);
    } finally {
      await model.close();
    }
  });

  it('validates deadlineMs', async () => {
    const model = await RexOmni.load(tiny, { threads: 1 });
    try {
      await expect(model.run(SMALL, task, { deadlineMs: -1 })).rejects.toThrow('options.deadlineMs: expected an integer of at least 0 but got -1');
    } finally {
      await model.close();
    }
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 6000 && !condition(); ++i) await new Promise((resolve) => setTimeout(resolve, 5));
  expect(condition()).toBe(true);
}
