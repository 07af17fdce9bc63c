// Per-request state of the task and batch routes: the slots it holds in the
// bounded queue, its AbortController (a client disconnect, the deadline or
// shutdown abort it, which cancels its runs in the engine), and its deadline.
// Everything is released when the response closes, however it ends.
import type { FastifyReply, FastifyRequest } from 'fastify';

import { HttpError } from './errors.js';
import type { RequestContext } from './inference.js';
import type { Admission } from './limits.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A task or batch route: admitted through the bounded queue. */
    inference?: boolean;
  }
  interface FastifyRequest {
    rex: RequestState | null;
  }
}

export class RequestState implements RequestContext {
  readonly arrived = performance.now();
  readonly #controller = new AbortController();
  readonly #admission: Admission;
  #slots = 0;
  #timer: NodeJS.Timeout | undefined;
  deadlineAt: number;

  constructor(admission: Admission, deadlineMs: number) {
    this.#admission = admission;
    this.deadlineAt = this.arrived;
    this.setDeadline(deadlineMs);
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Takes `n` more slots of the queue (or throws its 503). */
  acquire(n: number): void {
    this.#admission.acquire(n);
    this.#slots += n;
  }

  /** The request's deadline, `ms` from its arrival. */
  setDeadline(ms: number): void {
    clearTimeout(this.#timer);
    this.deadlineAt = this.arrived + ms;
    this.#timer = setTimeout(
      () => this.abort(new HttpError(504, 'ERR_REX_DEADLINE', `expected to finish within ${ms} ms of arrival (the deadline) but had not`)),
      Math.max(0, this.deadlineAt - performance.now()),
    );
    this.#timer.unref();
  }

  abort(reason: HttpError): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(reason);
  }

  /** Frees the slots and the timer; a response that closed unfinished means the client left: its runs are cancelled. */
  closed(finished: boolean): void {
    clearTimeout(this.#timer);
    this.#admission.release(this.#slots);
    this.#slots = 0;
    if (!finished) this.abort(new HttpError(499, 'ERR_REX_CANCELLED', 'the client disconnected'));
  }
}

/** Opens a request's state and ties its release to the response's close. */
export function openRequestState(
  request: FastifyRequest,
  reply: FastifyReply,
  admission: Admission,
  deadlineMs: number,
  onClose: (state: RequestState) => void,
): RequestState {
  const state = new RequestState(admission, deadlineMs);
  state.acquire(1);
  request.rex = state;
  reply.raw.once('close', () => {
    state.closed(reply.raw.writableFinished);
    onClose(state);
  });
  return state;
}
