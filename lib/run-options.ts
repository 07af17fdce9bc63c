// Options for a Rex-Omni run, their defaults (the reference wrapper's), and
// their validation ("… expected … but got …").
import { invalidType, outOfRange } from './errors.js';

export interface SamplingOptions {
  /** 0 (default) is greedy, as the reference. */
  temperature?: number;
  /** 0 (default) is off. */
  topK?: number;
  /** 1 (default) is off. */
  topP?: number;
  /** transformers' rule, prompt included. Default 1.05, as the reference. */
  repetitionPenalty?: number;
  seed?: number;
}

export interface RunOptions {
  /** Smallest resized image, in pixels. Default 16·28·28 = 12544. */
  minPixels?: number;
  /** Largest resized image, in pixels. Default 2560·28·28 = 2007040. */
  maxPixels?: number;
  /** Default 4096, as the reference wrapper. */
  maxNewTokens?: number;
  sampling?: SamplingOptions;
  /**
   * Constrained decoding (default true): the core masks every step to the
   * task's output grammar, so the output always parses. false reproduces the
   * reference's plain decoding token for token.
   */
  constrained?: boolean;
  /** Constrained only: stop after this many predictions. */
  maxPredictions?: number;
  /** Constrained only: forbid an exact duplicate box within one phrase. Default false. */
  forbidDuplicateBoxes?: boolean;
  /** Constrained only: free-text phrases (OCR text, GUI element, visual prompting) get at most this many tokens. Default 128. */
  maxPhraseTokens?: number;
  /**
   * Constrained only: where the grammar allows a single token next (the rest
   * of a category's phrase, the tokens that open its box), it is appended
   * without a decode step of its own (default true). The output is the same
   * either way, token for token; only the number of decode steps differs.
   */
  jumpForward?: boolean;
  /** Confidence scores on predictions (default true). false skips them: `score` stays undefined and the backend may skip work. */
  scores?: boolean;
  /** Apply EXIF orientation before anything else. Default true. */
  applyExif?: boolean;
  /** Cancels the run; it rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Cancels the run after this many milliseconds (a TimeoutError). */
  timeoutMs?: number;
  /**
   * The core's deadline, in milliseconds from the moment the request is
   * queued (default 0: none). Checked by the scheduler between steps, queued
   * or running: past it the run rejects with a RexOmniError of code
   * ERR_REX_DEADLINE (the stream ends with it), its slot is released, and
   * the other requests go on. Unlike timeoutMs it does not count image decoding.
   */
  deadlineMs?: number;
}

export interface ResolvedRunOptions {
  minPixels: number;
  maxPixels: number;
  maxNewTokens: number;
  sampling: Required<Omit<SamplingOptions, 'seed'>> & { seed: number };
  constrained: boolean;
  maxPredictions: number;
  forbidDuplicateBoxes: boolean;
  maxPhraseTokens: number;
  jumpForward: boolean;
  scores: boolean;
  applyExif: boolean;
  signal: AbortSignal | undefined;
  deadlineMs: number;
}

export const DEFAULT_RUN_OPTIONS = {
  minPixels: 16 * 28 * 28,
  maxPixels: 2560 * 28 * 28,
  maxNewTokens: 4096,
  sampling: { temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1.05, seed: 0 },
  constrained: true,
  maxPredictions: 0,
  forbidDuplicateBoxes: false,
  maxPhraseTokens: 128,
  jumpForward: true,
  scores: true,
  applyExif: true,
  deadlineMs: 0,
} as const;

function integer(what: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(what, 'an integer', value);
  if (value < min) throw outOfRange(what, `an integer of at least ${min}`, value);
  return value;
}

function finite(what: string, value: unknown, check: (v: number) => boolean, expected: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || Number.isNaN(value)) throw invalidType(what, 'a number', value);
  if (!check(value)) throw outOfRange(what, expected, value);
  return value;
}

function boolean(what: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalidType(what, 'a boolean', value);
  return value;
}

/** Merges per-call options over the model's defaults and validates them. */
export function resolveRunOptions(options: RunOptions | undefined, defaults: RunOptions = {}): ResolvedRunOptions {
  if (options !== undefined && (options === null || typeof options !== 'object'))
    throw invalidType('options', 'an options object', options);
  const o = { ...defaults, ...options, sampling: { ...defaults.sampling, ...options?.sampling } };
  const d = DEFAULT_RUN_OPTIONS;
  const minPixels = integer('options.minPixels', o.minPixels, 1, d.minPixels);
  const maxPixels = integer('options.maxPixels', o.maxPixels, 1, d.maxPixels);
  if (maxPixels < minPixels) throw outOfRange('options.maxPixels', `at least options.minPixels (${minPixels})`, maxPixels);
  const s = o.sampling;
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidType('options.signal', 'an AbortSignal', signal);
  const timeoutMs = finite('options.timeoutMs', o.timeoutMs, (v) => v > 0, 'a positive number of milliseconds', 0);
  const signals = [signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter((x) => x !== undefined);
  return {
    minPixels,
    maxPixels,
    maxNewTokens: integer('options.maxNewTokens', o.maxNewTokens, 1, d.maxNewTokens),
    sampling: {
      temperature: finite('options.sampling.temperature', s.temperature, (v) => v >= 0 && v < Infinity, 'a finite number ≥ 0', d.sampling.temperature),
      topK: integer('options.sampling.topK', s.topK, 0, d.sampling.topK),
      topP: finite('options.sampling.topP', s.topP, (v) => v > 0 && v <= 1, 'a number in (0, 1]', d.sampling.topP),
      repetitionPenalty: finite('options.sampling.repetitionPenalty', s.repetitionPenalty, (v) => v > 0 && v < Infinity, 'a finite number > 0', d.sampling.repetitionPenalty),
      seed: integer('options.sampling.seed', s.seed, 0, d.sampling.seed),
    },
    constrained: boolean('options.constrained', o.constrained, d.constrained),
    maxPredictions: integer('options.maxPredictions', o.maxPredictions, 0, d.maxPredictions),
    forbidDuplicateBoxes: boolean('options.forbidDuplicateBoxes', o.forbidDuplicateBoxes, d.forbidDuplicateBoxes),
    maxPhraseTokens: integer('options.maxPhraseTokens', o.maxPhraseTokens, 1, d.maxPhraseTokens),
    jumpForward: boolean('options.jumpForward', o.jumpForward, d.jumpForward),
    scores: boolean('options.scores', o.scores, d.scores),
    applyExif: boolean('options.applyExif', o.applyExif, d.applyExif),
    signal: signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals),
    deadlineMs: integer('options.deadlineMs', o.deadlineMs, 0, d.deadlineMs),
  };
}
