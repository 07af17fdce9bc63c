// The server's options: every limit with its default, auth, CORS, logging and
// shutdown. resolveServerOptions fills the defaults in and checks the values.
import { invalidType, outOfRange } from '../errors.js';
import type { RunOptions } from '../run-options.js';

export interface ServerLimits {
  /** Largest request body, in bytes (JSON, raw image, or each multipart file). Default 16 MiB. ERR_REX_BODY_TOO_LARGE (413). */
  maxBodyBytes: number;
  /** Largest image, width × height, read from its header before any decoding. Default 40 000 000. ERR_REX_IMAGE_TOO_LARGE (413). */
  maxInputPixels: number;
  /** Most categories (or reference boxes) in one request. Default 64. ERR_REX_TOO_MANY_CATEGORIES (400). */
  maxCategories: number;
  /** Longest category, GUI element or other phrase, in characters. Default 256. ERR_REX_PHRASE_TOO_LONG (400). */
  maxPhraseLength: number;
  /** Largest maxNewTokens a request may ask for; also its default. Default 4096. ERR_REX_TOO_MANY_TOKENS (400). */
  maxNewTokens: number;
  /** Each request's deadline from its arrival, in milliseconds (a request may ask for less). Default 120 000. ERR_REX_DEADLINE (504). */
  deadlineMs: number;
  /** Requests decoded at once: should equal the model's maxActiveRequests (default 8, the engine's default). */
  maxActiveRequests: number;
  /** Requests admitted beyond those running; one more is answered 503 with Retry-After. Default 64. ERR_REX_QUEUE_FULL (503). */
  maxQueuedRequests: number;
  /** Most images in one POST /v1/batch (each takes a slot of the queue). Default 16 (at most the queue's capacity). ERR_REX_TOO_MANY_IMAGES (400). */
  maxBatchImages: number;
  /** The Retry-After of a 503, in seconds. Default 1. */
  retryAfterSeconds: number;
}

export interface ServerOptions extends Partial<ServerLimits> {
  /** A bearer token every request but /healthz and /readyz must carry. Default: $REX_OMNI_TOKEN, else none. */
  token?: string;
  /** Allow listening beyond loopback without a token. Default false. */
  insecurePublic?: boolean;
  /** CORS: false (default) is off; true allows any origin; or the allowed origins. */
  cors?: boolean | string | string[];
  /** Fastify's logger (pino): true for JSON logs at "info", false for none, or pino options. Default false. */
  logger?: boolean | Record<string, unknown>;
  /** How long close() lets in-flight requests run before cancelling them. Default 10 000 ms. */
  drainMs?: number;
  /** Whether close() closes the model too. Default false (the caller owns it); `rex-omni serve` sets it. */
  closeModel?: boolean;
  /** Run options applied under each request's own (e.g. { maxPixels }). */
  runDefaults?: RunOptions;
  /** Also export Node's default process metrics. Default true. */
  processMetrics?: boolean;
  /** The environment to read REX_OMNI_TOKEN from. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ResolvedServerOptions extends ServerLimits {
  token: string | undefined;
  insecurePublic: boolean;
  cors: false | true | string[];
  logger: boolean | Record<string, unknown>;
  drainMs: number;
  closeModel: boolean;
  runDefaults: RunOptions;
  processMetrics: boolean;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxBodyBytes: 16 * 2 ** 20,
  maxInputPixels: 40_000_000,
  maxCategories: 64,
  maxPhraseLength: 256,
  maxNewTokens: 4096,
  deadlineMs: 120_000,
  maxActiveRequests: 8,
  maxQueuedRequests: 64,
  maxBatchImages: 16,
  retryAfterSeconds: 1,
});

function integer(name: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalidType(`server options.${name}`, 'an integer', value);
  if (value < min) throw outOfRange(`server options.${name}`, `an integer of at least ${min}`, value);
  return value;
}

export function resolveServerOptions(options: ServerOptions = {}): ResolvedServerOptions {
  if (options === null || typeof options !== 'object') throw invalidType('createServer(model, options)', 'an options object', options);
  const env = options.env ?? process.env;
  const limits = {} as ServerLimits;
  for (const key of Object.keys(DEFAULT_SERVER_LIMITS) as (keyof ServerLimits)[]) {
    const min = key === 'maxQueuedRequests' || key === 'retryAfterSeconds' ? 0 : 1;
    limits[key] = integer(key, options[key], min, DEFAULT_SERVER_LIMITS[key]);
  }
  // The default shrinks to the queue's capacity; a larger explicit value could never be admitted.
  const capacity = limits.maxActiveRequests + limits.maxQueuedRequests;
  if (options.maxBatchImages === undefined) limits.maxBatchImages = Math.min(limits.maxBatchImages, capacity);
  if (limits.maxBatchImages > capacity)
    throw outOfRange('server options.maxBatchImages', `at most maxActiveRequests + maxQueuedRequests (${capacity})`, limits.maxBatchImages);
  const token = options.token ?? (env.REX_OMNI_TOKEN || undefined);
  if (token !== undefined && (typeof token !== 'string' || token.length === 0)) throw invalidType('server options.token', 'a non-empty string', token);
  const cors = options.cors ?? false;
  if (typeof cors !== 'boolean' && typeof cors !== 'string' && !(Array.isArray(cors) && cors.every((o) => typeof o === 'string')))
    throw invalidType('server options.cors', 'a boolean, an origin or a list of origins', cors);
  return {
    ...limits,
    token,
    insecurePublic: options.insecurePublic ?? false,
    cors: typeof cors === 'string' ? [cors] : cors,
    logger: options.logger ?? false,
    drainMs: integer('drainMs', options.drainMs, 0, 10_000),
    closeModel: options.closeModel ?? false,
    runDefaults: options.runDefaults ?? {},
    processMetrics: options.processMetrics ?? true,
  };
}
