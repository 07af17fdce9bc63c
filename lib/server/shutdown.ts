// Graceful shutdown: stop accepting (Fastify's close: the listener closes,
// idle keep-alive connections close, requests that still arrive get 503),
// let in-flight requests finish up to a deadline, cancel what is left (its
// runs are cancelled in the engine), then close the model.
import type { FastifyInstance } from 'fastify';

import { HttpError } from './errors.js';
import type { RequestState } from './request-state.js';

export async function drainAndClose(app: FastifyInstance, inFlight: Set<RequestState>, drainMs: number, closeModel: () => Promise<void>): Promise<void> {
  const cancel = setTimeout(() => {
    const reason = new HttpError(503, 'ERR_REX_SHUTTING_DOWN', `the server shut down before the request finished (drain deadline ${drainMs} ms)`);
    for (const request of inFlight) request.abort(reason);
    // Connections that still hang on (a reader that stopped reading) go too.
    setTimeout(() => app.server.closeAllConnections(), 1000).unref();
  }, drainMs);
  cancel.unref();
  try {
    await app.close();
  } finally {
    clearTimeout(cancel);
  }
  await closeModel();
}
