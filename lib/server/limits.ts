// The request limits, each with its own error code, and the bounded
// admission queue. The pixel limit is the image loader's: loadImage reads
// the header (sharp's metadata()) and refuses an image over maxInputPixels
// before anything is decoded (lib/image/load.ts), so a decompression bomb is
// never inflated.
import { HttpError } from './errors.js';
import type { ResolvedServerOptions } from './options.js';
import type { RequestFields } from './tasks.js';

/** Checks the fields against the limits; returns the maxNewTokens and deadline that apply. */
export function checkFieldLimits(fields: RequestFields, limits: ResolvedServerOptions): { maxNewTokens: number; deadlineMs: number } {
  const listed = fields.categories?.length ?? 0;
  const boxes = fields.boxes?.length ?? 0;
  if (Math.max(listed, boxes) > limits.maxCategories)
    throw new HttpError(
      400,
      'ERR_REX_TOO_MANY_CATEGORIES',
      `${listed > boxes ? 'categories' : 'boxes'}: expected at most ${limits.maxCategories} (maxCategories) but got ${Math.max(listed, boxes)}`,
    );
  for (const [what, phrase] of [...(fields.categories ?? []).map((c, i) => [`categories[${i}]`, c] as const), ['element', fields.element] as const]) {
    if (typeof phrase === 'string' && phrase.length > limits.maxPhraseLength)
      throw new HttpError(400, 'ERR_REX_PHRASE_TOO_LONG', `${what}: expected at most ${limits.maxPhraseLength} characters (maxPhraseLength) but got ${phrase.length}`);
  }
  if (fields.maxNewTokens !== undefined && fields.maxNewTokens > limits.maxNewTokens)
    throw new HttpError(400, 'ERR_REX_TOO_MANY_TOKENS', `maxNewTokens: expected at most ${limits.maxNewTokens} (the server's maxNewTokens) but got ${fields.maxNewTokens}`);
  return {
    maxNewTokens: fields.maxNewTokens ?? limits.maxNewTokens,
    deadlineMs: Math.min(fields.deadlineMs ?? limits.deadlineMs, limits.deadlineMs),
  };
}

export function checkImageCount(count: number, limits: ResolvedServerOptions): void {
  if (count === 0) throw new HttpError(400, 'ERR_REX_INVALID_REQUEST', 'images: expected at least one image but got none');
  if (count > limits.maxBatchImages)
    throw new HttpError(400, 'ERR_REX_TOO_MANY_IMAGES', `images: expected at most ${limits.maxBatchImages} (maxBatchImages) but got ${count}`);
}

/**
 * The bounded queue: at most maxActiveRequests + maxQueuedRequests images
 * are admitted at once (a batch takes one slot per image). A request that
 * finds it full is answered 503 with Retry-After before its body is read.
 */
export class Admission {
  readonly capacity: number;
  readonly #retryAfter: number;
  #held = 0;

  constructor(limits: ResolvedServerOptions) {
    this.capacity = limits.maxActiveRequests + limits.maxQueuedRequests;
    this.#retryAfter = limits.retryAfterSeconds;
  }

  /** Slots held now (requests admitted and not yet answered). */
  get held(): number {
    return this.#held;
  }

  /** Takes `n` slots, or throws the 503. */
  acquire(n: number): void {
    if (this.#held + n > this.capacity)
      throw new HttpError(503, 'ERR_REX_QUEUE_FULL', `the queue is full: ${this.#held} of ${this.capacity} slots in use; retry after ${this.#retryAfter} s`, {
        headers: { 'retry-after': String(this.#retryAfter) },
      });
    this.#held += n;
  }

  release(n: number): void {
    this.#held = Math.max(0, this.#held - n);
  }
}
