// Decode rows inside prefill passes (prefillDecodeRows, CPU backend): while
// some requests prefill their prompts in chunks, the running ones decode
// their next token inside each prefill pass as one-row pieces of it. The
// second wave of requests is submitted once the first wave has its first
// tokens (by event order, not timing), and the first still has ~90 steps to
// go, so rows ride. Each request gives the tokens it gives on an engine
// without it (the CPU is row-invariant): greedy, seeded, and under a grammar
// with jump-forward (a rider's forced tokens wait for the decode step).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { Engine, type EngineEvent, type TokenRequest } from '../lib/engine.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { fixedLengthGrammar, fixedLengthRequest } from '../benchmarks/fixed-length.js';
import { goldenTokenRequest } from './fixtures/golden-token-request.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const LONG = 96, SHORT = 12;
let plain: Engine;
let riding: Engine;
let grammar: string;

beforeAll(async () => {
  const tiny = await ensureTinyCheckpoint();
  const options = { threads: 2, maxActiveRequests: 8, prefillChunkTokens: 8 };
  plain = await Engine.open(tiny, options);
  riding = await Engine.open(tiny, { ...options, prefillDecodeRows: 4 });
  grammar = await fixedLengthGrammar(await RexTokenizer.fromDir(tiny));
});
afterAll(async () => {
  await Promise.all([plain?.close(), riding?.close()]);
});

interface Run {
  tokens: number[];
  rides: number;
  steps: number;
}

async function drain(stream: AsyncIterableIterator<EngineEvent>, first?: () => void): Promise<Run> {
  const run: Run = { tokens: [], rides: 0, steps: 0 };
  for await (const event of stream) {
    if (event.type === 'token') {
      if (run.tokens.length === 0) first?.();
      run.tokens.push(event.token);
    } else {
      expect(event.reason).toBe('length');
      run.rides = event.prefillRides;
      run.steps = event.decodeSteps;
    }
  }
  return run;
}

// Three long requests; once each has its first token, three short ones.
async function waves(engine: Engine, make: (maxNewTokens: number, i: number) => Promise<TokenRequest>): Promise<Run[]> {
  let started = 0;
  let release!: () => void;
  const firstTokens = new Promise<void>((resolve) => (release = resolve));
  const first = [0, 1, 2].map(async (i) => drain(engine.stream(await make(LONG, i)), () => ++started === 3 && release()));
  await firstTokens;
  const second = [3, 4, 5].map(async (i) => drain(engine.stream(await make(SHORT, i))));
  return Promise.all([...first, ...second]);
}

// [name, request, must rows ride]: under jump-forward nearly every row of
// the fixed-length grammar carries forced tokens, which never ride (they
// wait for the decode step): there the tokens must match, rides may not happen.
const cases: [string, (maxNewTokens: number, i: number) => Promise<TokenRequest>, boolean][] = [
  ['greedy', (n) => goldenTokenRequest(n, { sampling: { temperature: 0 } }), true],
  ['seeded', (n, i) => goldenTokenRequest(n, { sampling: { temperature: 1, topP: 0.9, seed: 30 + i } }), true],
  ['a grammar', async (n) => fixedLengthRequest(await goldenTokenRequest(n), grammar, n, { scores: false, jumpForward: false }), true],
  ['a grammar with jump-forward', async (n) => fixedLengthRequest(await goldenTokenRequest(n), grammar, n, { scores: false, jumpForward: true }), false],
];

describe('decode rows inside prefill passes (CPU)', () => {
  it.each(cases)('%s: the tokens of an engine without it', async (name, make, mustRide) => {
    const without = await waves(plain, make);
    const withRides = await waves(riding, make);
    for (const [i, r] of withRides.entries()) {
      expect(r.tokens).toEqual(without[i]!.tokens);
      expect(r.tokens).toHaveLength(i < 3 ? LONG : SHORT);
      expect(r.rides).toBeLessThanOrEqual(r.steps);
    }
    expect(without.reduce((n, r) => n + r.rides, 0)).toBe(0);
    const rides = withRides.reduce((n, r) => n + r.rides, 0);
    console.log(`${name}: ${rides} of ${withRides.reduce((n, r) => n + r.steps, 0)} decode rows rode in prefill passes`);
    if (mustRide) expect(rides).toBeGreaterThan(0);
  });

  it('a negative prefillDecodeRows is a typed error', async () => {
    await expect(Engine.open(await ensureTinyCheckpoint(), { prefillDecodeRows: -1 })).rejects.toThrow(
      'options.prefillDecodeRows: expected an integer >= 0 but got -1',
    );
  });
});
