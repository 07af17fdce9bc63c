// The token-level engine: a core Engine with its own scheduler thread, fed
// token ids and an RGB image, streaming token events back. The task API
// (prompts, grammar, predictions) sits on top of this.
import type {
  NativeEngine,
  NativeEngineEvents,
  NativeEngineInfo,
  NativeEngineOptions,
  NativeFinishEvent,
  NativeGenerationRequest,
  NativeModelConfig,
  NativeScorePosition,
  NativeScoreRequest,
  NativeScoreResult,
  NativeTimings,
} from './addon-types.js';
import { AsyncChannel } from './async-channel.js';
import { RexOmniError, invalidType, outOfRange, withCallerStack } from './errors.js';
import { loadAddon } from './native.js';

export interface EngineOptions {
  /** "auto" (default): CUDA when the CUDA build loaded and found a device, else the CPU. */
  backend?: 'auto' | 'cpu' | 'cuda';
  /** CPU threads (0: all). */
  threads?: number;
  /** Requests decoded together per step; also the largest decode batch. Default 8. */
  maxActiveRequests?: number;
  /**
   * Requests waiting for admission at most (default 0: unbounded). A request
   * beyond it is refused at once: stream()/generate()/run() throw a
   * RexOmniError with code ERR_REX_QUEUE_FULL; nothing queued or running is disturbed.
   */
  maxQueuedRequests?: number;
  /** The KV-cache budget in GiB. Requests that do not fit wait; ones that never fit fail with ERR_REX_OUT_OF_MEMORY. */
  kvCacheGB?: number;
  /** Cap the process's GPU memory at this fraction of the device's, and give the KV cache what remains after the weights. */
  gpuMemoryFraction?: number;
  /** CUDA device index (default 0). */
  device?: number;
  /**
   * CPU backend only: round every matrix product's inputs and outputs to bf16,
   * as the CUDA backend holds its activations, to see on a CPU how a
   * checkpoint fares in bf16. Off by default (the CPU backend is fp32).
   */
  emulateBf16?: boolean;
  /**
   * Same bits alone or batched. The CUDA backend decodes steps of up to 2
   * rows, and a lone request's jump-forward steps, on its own row-invariant
   * GEMV; larger steps take cuBLASLt, whose sums depend on the batch, so a
   * request's tokens may differ (rarely, by a near tie) between running alone
   * and among many. true keeps every step on the
   * GEMV: identical output at any concurrency, but large batches read the
   * weights once per 8 rows. Default false. The CPU backend is invariant either way.
   */
  batchInvariant?: boolean;
  /**
   * The image prefix cache's share of the KV budget, in GiB: the KV of an
   * image prompt through <|vision_end|> is kept, so the next question about
   * the same image (same bytes, same preprocessing) skips the vision encoder
   * and that prefill. Default: a quarter of the KV budget; 0 turns it off.
   * The CPU backend keeps one only under kvCacheGB.
   */
  prefixCacheGB?: number;
  /**
   * Prompts are prefilled in chunks of this many tokens, one chunk per
   * scheduler step while other requests decode, so a long image prompt holds
   * their next token back by one chunk at most. The chunks are the prompt's
   * own (never the load's), so the tokens do not depend on the other
   * requests. Default 2048; 0 prefills each prompt at once.
   */
  prefillChunkTokens?: number;
  /**
   * While prompts are prefilled, up to this many running requests decode
   * their next token inside each prefill pass, as one-row pieces of it,
   * instead of waiting for the pass to end (their rows count against
   * prefillChunkTokens). Default 0: off. Ignored where prefills are not
   * batched (`batchInvariant` on CUDA) and with `reserveGeneration: false`.
   */
  prefillDecodeRows?: number;
  /**
   * The images of requests admitted in the same scheduler step go through
   * the vision encoder in one pass (varlen attention: each image attends
   * only to itself), up to this many 14x14 patches in all; a larger image
   * goes alone. Default 16384; 0 encodes one image per pass. Under
   * batchInvariant one image per pass either way, so a request's bits never
   * depend on the others (the CPU backend gives the same bits batched).
   */
  visionBatchPatches?: number;
  /**
   * true (default): a request reserves KV for its prompt and all of
   * maxNewTokens when it starts, and is never interrupted. false: it reserves
   * what it holds and its slot grows as it decodes, so many more requests fit
   * at once; when the budget runs out, the newest running requests are
   * preempted (their KV released) and resume first, by prefilling their
   * prompt and output so far with their sampling state. On the CPU backend a
   * preempted request gives the tokens it gives uninterrupted; on the GPU the
   * resumed KV comes from a prefill, so later tokens may differ by a near tie.
   */
  reserveGeneration?: boolean;
}
export type Timings = NativeTimings;
export type EngineInfo = NativeEngineInfo;
export type ScorePosition = NativeScorePosition;
export type ScoreResult = NativeScoreResult;
export interface ScoreRequest extends NativeScoreRequest {
  signal?: AbortSignal;
}

/** The backend an "auto" (or absent) choice resolves to, given the addon that loaded. */
export function resolveBackend(requested: EngineOptions['backend']): 'cpu' | 'cuda' {
  const { info, path } = loadAddon();
  const cudaReady = info.backend === 'cuda' && info.available;
  if (requested === undefined || requested === 'auto') return cudaReady ? 'cuda' : 'cpu';
  if (requested === 'cuda' && !cudaReady) {
    throw new RexOmniError(
      'ERR_REX_BACKEND_UNAVAILABLE',
      `the CUDA backend is not available: ${info.backend === 'cuda' ? (info.error ?? 'no usable device') : `this process loaded the CPU build (${path})`}`,
    );
  }
  return requested;
}

function nativeOptions(options: EngineOptions): NativeEngineOptions {
  if (options === null || typeof options !== 'object') throw invalidType('Engine options', 'an object', options);
  const {
    backend, threads, maxActiveRequests, maxQueuedRequests, kvCacheGB, gpuMemoryFraction, device, emulateBf16, batchInvariant,
    prefixCacheGB, prefillChunkTokens, prefillDecodeRows, visionBatchPatches, reserveGeneration,
  } = options;
  if (backend !== undefined && backend !== 'auto' && backend !== 'cpu' && backend !== 'cuda')
    throw invalidType('options.backend', '"auto", "cpu" or "cuda"', backend);
  const integer = (name: string, value: number | undefined, min: number): void => {
    if (value === undefined) return;
    if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(`options.${name}`, 'an integer', value);
    if (value < min) throw outOfRange(`options.${name}`, `an integer >= ${min}`, value);
  };
  const boolean = (name: string, value: boolean | undefined): void => {
    if (value !== undefined && typeof value !== 'boolean') throw invalidType(`options.${name}`, 'a boolean', value);
  };
  integer('threads', threads, 0);
  integer('maxActiveRequests', maxActiveRequests, 1);
  integer('maxQueuedRequests', maxQueuedRequests, 0);
  integer('device', device, 0);
  integer('prefillChunkTokens', prefillChunkTokens, 0);
  integer('prefillDecodeRows', prefillDecodeRows, 0);
  integer('visionBatchPatches', visionBatchPatches, 0);
  if (kvCacheGB !== undefined && (typeof kvCacheGB !== 'number' || !(kvCacheGB > 0) || !Number.isFinite(kvCacheGB)))
    throw outOfRange('options.kvCacheGB', 'a positive number of GiB', kvCacheGB);
  if (gpuMemoryFraction !== undefined && (typeof gpuMemoryFraction !== 'number' || !(gpuMemoryFraction > 0 && gpuMemoryFraction <= 1)))
    throw outOfRange('options.gpuMemoryFraction', 'a number in (0, 1]', gpuMemoryFraction);
  boolean('emulateBf16', emulateBf16);
  if (prefixCacheGB !== undefined && (typeof prefixCacheGB !== 'number' || !(prefixCacheGB >= 0) || !Number.isFinite(prefixCacheGB)))
    throw outOfRange('options.prefixCacheGB', 'a number of GiB >= 0', prefixCacheGB);
  boolean('reserveGeneration', reserveGeneration);
  boolean('batchInvariant', batchInvariant);
  const out: NativeEngineOptions = { backend: resolveBackend(backend) };
  if (emulateBf16 && out.backend !== 'cpu')
    throw invalidType('options.emulateBf16', 'the CPU backend (the CUDA backend is bf16 already)', out.backend);
  if (emulateBf16) out.emulateBf16 = true;
  if (batchInvariant) out.batchInvariant = true;
  if (prefixCacheGB !== undefined) out.prefixCacheBytes = Math.floor(prefixCacheGB * 2 ** 30);
  if (prefillChunkTokens !== undefined) out.prefillChunkTokens = prefillChunkTokens;
  if (prefillDecodeRows !== undefined) out.prefillDecodeRows = prefillDecodeRows;
  if (visionBatchPatches !== undefined) out.visionBatchPatches = visionBatchPatches;
  if (reserveGeneration !== undefined) out.reserveGeneration = reserveGeneration;
  if (threads !== undefined) out.threads = threads;
  if (maxActiveRequests !== undefined) out.maxActiveRequests = maxActiveRequests;
  if (maxQueuedRequests !== undefined) out.maxQueuedRequests = maxQueuedRequests;
  if (kvCacheGB !== undefined) out.kvCacheBytes = Math.floor(kvCacheGB * 2 ** 30);
  if (gpuMemoryFraction !== undefined) out.gpuMemoryFraction = gpuMemoryFraction;
  if (device !== undefined) out.device = device;
  return out;
}

export interface TokenRequest extends NativeGenerationRequest {
  /** Cancels the request; generate() then rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Milliseconds from submit (default 0: none). A request still queued or
   * running when it passes finishes with reason "deadline" and an `error`
   * with code ERR_REX_DEADLINE (generate() rejects with it); its slot is
   * released and the other requests go on.
   */
  deadlineMs?: number;
}

export interface TokenEvent {
  type: 'token';
  token: number;
  /** Log-probability of the token under the processed distribution it was drawn from. */
  logprob: number;
  /** Log-probability of the token under the raw model (softmax of its logits). */
  modelLogprob: number;
  /** 0 for the token that prefill produced. */
  step: number;
}

export interface FinishEvent {
  type: 'finish';
  reason: NativeFinishEvent['reason'];
  error?: RexOmniError;
  timings: Timings;
  promptTokens: number;
  imageTokens: number;
  generatedTokens: number;
  /** Decode forward passes that advanced the request (prefill not counted). */
  decodeSteps: number;
  /** Of those, tokens it decoded inside other requests' prefill passes (prefillDecodeRows). */
  prefillRides: number;
  /** Generated tokens that jump-forward appended without a step of their own. */
  forcedTokens: number;
  /** Prompt tokens whose KV came from the image prefix cache: the image was not encoded again. */
  cachedTokens: number;
  /** Times the request gave its KV back under memory pressure and resumed (reserveGeneration: false). */
  preemptions: number;
}

export type EngineEvent = TokenEvent | FinishEvent;

export interface TokenGeneration {
  tokens: number[];
  logprobs: number[];
  finish: FinishEvent;
}

// Native refusals that are the caller's situation rather than a bad argument
// (a full queue) become RexOmniErrors with the same code and message.
function asRexError(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && !(error instanceof TypeError) && typeof code === 'string' && code.startsWith('ERR_REX_'))
    return new RexOmniError(code, error.message);
  return error;
}

function toFinishEvent(f: NativeFinishEvent): FinishEvent {
  return {
    type: 'finish',
    reason: f.reason,
    error: f.error ? new RexOmniError(f.error.code, f.error.message) : undefined,
    timings: f.timings,
    promptTokens: f.promptTokens,
    imageTokens: f.imageTokens,
    generatedTokens: f.generatedTokens,
    decodeSteps: f.decodeSteps,
    prefillRides: f.prefillRides,
    forcedTokens: f.forcedTokens,
    cachedTokens: f.cachedTokens,
    preemptions: f.preemptions,
  };
}

export class Engine implements AsyncDisposable {
  readonly #native: NativeEngine;
  readonly #channels: Map<number, AsyncChannel<EngineEvent>>;
  #closing: Promise<void> | undefined;

  private constructor(native: NativeEngine, channels: Map<number, AsyncChannel<EngineEvent>>) {
    this.#native = native;
    this.#channels = channels;
  }

  /** Loads the checkpoint in `dir` and starts the scheduler thread (off the JS thread). */
  static async open(dir: string, options: EngineOptions = {}): Promise<Engine> {
    if (typeof dir !== 'string' || dir.length === 0) throw invalidType('Engine.open(dir)', 'a non-empty directory path', dir);
    const callerStack = new Error().stack;
    const { addon } = loadAddon();
    const channels = new Map<number, AsyncChannel<EngineEvent>>();
    const route = (events: NativeEngineEvents): void => {
      const { requestIds, tokens, logprobs, modelLogprobs, steps } = events.tokens;
      for (let i = 0; i < tokens.length; ++i) {
        channels.get(requestIds[i]!)?.push({
          type: 'token',
          token: tokens[i]!,
          logprob: logprobs[i]!,
          modelLogprob: modelLogprobs[i]!,
          step: steps[i]!,
        });
      }
      for (const finished of events.finished) {
        const channel = channels.get(finished.requestId);
        if (!channel) continue;
        channels.delete(finished.requestId);
        channel.push(toFinishEvent(finished));
        channel.close();
      }
    };
    const native = nativeOptions(options);
    try {
      return new Engine(await addon.createEngine(dir, native, route), channels);
    } catch (error) {
      throw withCallerStack(error, callerStack);
    }
  }

  get config(): NativeModelConfig {
    return this.#native.config;
  }

  /** Requests queued or running. */
  get activeRequests(): number {
    return this.#channels.size;
  }

  /**
   * Streams a request's events: its tokens as they are sampled, then one
   * finish event. Aborting the signal cancels it in the core.
   *
   * Back-pressure: the engine never waits for JS. Each step's events cross
   * to the JS thread through the one event pump (a non-blocking call) and
   * are routed to each request's own buffer at once, whether or not anyone
   * is reading that stream. A stream nobody reads therefore stalls no other
   * stream and not the engine; its buffer holds at most maxNewTokens token
   * events and one finish event (what the request can produce), so it is
   * bounded by the request itself, and reading it later yields the complete
   * output. To drop an unwanted stream early, abort its signal or call
   * `return()` on it (that also cancels it in the core).
   * Throws ERR_REX_QUEUE_FULL when maxQueuedRequests are already waiting.
   */
  stream(request: TokenRequest): AsyncIterableIterator<EngineEvent> {
    const { signal, ...nativeRequest } = request;
    signal?.throwIfAborted();
    let id: number;
    try {
      id = this.#native.submit(nativeRequest);
    } catch (error) {
      throw asRexError(error);
    }
    const channel = new AsyncChannel<EngineEvent>();
    this.#channels.set(id, channel);
    const onAbort = (): void => this.#native.cancel(id);
    if (signal) {
      signal.addEventListener('abort', onAbort, { once: true });
      const original = channel.next.bind(channel);
      channel.next = async () => {
        const result = await original();
        if (result.done || (result.value.type === 'finish')) signal.removeEventListener('abort', onAbort);
        return result;
      };
    }
    // Leaving the stream early (break, return()) cancels the request in the
    // core: nobody will read what it would still produce.
    const originalReturn = channel.return.bind(channel);
    channel.return = () => {
      signal?.removeEventListener('abort', onAbort);
      if (this.#channels.get(id) === channel) this.#native.cancel(id);
      return originalReturn();
    };
    return channel;
  }

  /** Runs a request to the end and collects its tokens. */
  async generate(request: TokenRequest): Promise<TokenGeneration> {
    const tokens: number[] = [];
    const logprobs: number[] = [];
    for await (const event of this.stream(request)) {
      if (event.type === 'token') {
        tokens.push(event.token);
        logprobs.push(event.logprob);
        continue;
      }
      if (event.reason === 'cancelled' && request.signal?.aborted) throw request.signal.reason;
      if (event.reason === 'error' || event.reason === 'deadline') throw event.error;
      return { tokens, logprobs, finish: event };
    }
    throw new RexOmniError('ERR_REX_INTERNAL', 'the request ended without a finish event');
  }

  /** The backend ("cpu" or "cuda"), the GPU and the memory in use. */
  info(): EngineInfo {
    return this.#native.info();
  }

  /**
   * Teacher-forced scoring: one prefill over prompt + continuation. For the
   * prompt's last token and each continuation token, the top-k ids with
   * their raw logits, and the log-probability of the continuation's next id.
   * Queued with the other requests; it shares their KV budget.
   */
  async score(request: ScoreRequest): Promise<ScoreResult> {
    if (request === null || typeof request !== 'object') throw invalidType('Engine.score(request)', 'an object', request);
    const { signal, ...nativeRequest } = request;
    signal?.throwIfAborted();
    const callerStack = new Error().stack;
    try {
      const pending = this.#native.score(nativeRequest);
      if (!signal) return await pending;
      // Scoring is one prefill: an abort rejects at once; the prefill itself runs to its end.
      return await new Promise<ScoreResult>((resolve, reject) => {
        const onAbort = (): void => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        pending.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    } catch (error) {
      throw withCallerStack(error, callerStack);
    }
  }

  /** Cancels what is in flight (their streams end with reason "cancelled") and stops the engine. */
  close(): Promise<void> {
    this.#closing ??= this.#native.close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
