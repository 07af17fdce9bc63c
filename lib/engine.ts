// The token-level engine: a core Engine with its own scheduler thread, fed
// token ids and an RGB image, streaming token events back. The task API
// (prompts, grammar, predictions) sits on top of this.
import type {
  NativeEngine,
  NativeEngineEvents,
  NativeEngineOptions,
  NativeFinishEvent,
  NativeGenerationRequest,
  NativeModelConfig,
  NativeTimings,
} from './addon-types.js';
import { AsyncChannel } from './async-channel.js';
import { RexOmniError, invalidType, withCallerStack } from './errors.js';
import { loadAddon } from './native.js';

export type EngineOptions = NativeEngineOptions;
export type Timings = NativeTimings;

export interface TokenRequest extends NativeGenerationRequest {
  /** Cancels the request; generate() then rejects with the signal's reason. */
  signal?: AbortSignal;
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
}

export type EngineEvent = TokenEvent | FinishEvent;

export interface TokenGeneration {
  tokens: number[];
  logprobs: number[];
  finish: FinishEvent;
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
    try {
      return new Engine(await addon.createEngine(dir, options, route), channels);
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
   */
  stream(request: TokenRequest): AsyncIterableIterator<EngineEvent> {
    const { signal, ...nativeRequest } = request;
    signal?.throwIfAborted();
    const id = this.#native.submit(nativeRequest);
    const channel = new AsyncChannel<EngineEvent>();
    this.#channels.set(id, channel);
    if (signal) {
      const onAbort = (): void => this.#native.cancel(id);
      signal.addEventListener('abort', onAbort, { once: true });
      const original = channel.next.bind(channel);
      channel.next = async () => {
        const result = await original();
        if (result.done || (result.value.type === 'finish')) signal.removeEventListener('abort', onAbort);
        return result;
      };
    }
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
      if (event.reason === 'error') throw event.error;
      return { tokens, logprobs, finish: event };
    }
    throw new RexOmniError('ERR_REX_INTERNAL', 'the request ended without a finish event');
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
