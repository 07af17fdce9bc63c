// createServer(model, options): Rex-Omni over HTTP (Fastify), for embedding
// in a Node backend; `rex-omni serve` runs it from the command line.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { FastifyInstance } from 'fastify';

import { invalidType } from '../errors.js';
import { packageRoot } from '../native.js';
import type { RexOmni } from '../rex-omni.js';
import { buildApp, type AppState } from './app.js';
import { checkBindAllowed } from './auth.js';
import { HttpError } from './errors.js';
import type { ServerMetrics } from './metrics.js';
import { resolveServerOptions, type ResolvedServerOptions, type ServerOptions } from './options.js';
import { drainAndClose } from './shutdown.js';

export { DEFAULT_SERVER_LIMITS } from './options.js';
export type { ServerLimits, ServerOptions } from './options.js';
export { TASK_ROUTE_NAMES } from './tasks.js';

export interface ListenOptions {
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. Beyond loopback only with a token or insecurePublic. */
  host?: string;
}

export interface RexOmniServer {
  /** The Fastify instance (routes, hooks, inject). */
  readonly app: FastifyInstance;
  readonly metrics: ServerMetrics;
  readonly options: Readonly<ResolvedServerOptions>;
  /** Resolves once the model is loaded (rejects if it failed to load). */
  readonly ready: Promise<void>;
  /** Task and batch requests in flight. */
  readonly inFlight: number;
  /** Starts listening; resolves to the address (http://host:port). */
  listen(options?: ListenOptions): Promise<string>;
  /** Graceful shutdown: stop accepting, drain in-flight requests up to drainMs, cancel the rest, close the model when closeModel. */
  close(options?: { drainMs?: number }): Promise<void>;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/**
 * An HTTP server for `model`, or for a model still loading (a promise):
 * /healthz answers at once, /readyz and the task routes once it is loaded.
 */
export async function createServer(model: RexOmni | Promise<RexOmni>, options: ServerOptions = {}): Promise<RexOmniServer> {
  if (model === null || typeof model !== 'object') throw invalidType('createServer(model)', 'a RexOmni or a promise of one', model);
  const resolved = resolveServerOptions(options);
  const state: AppState = {
    model: undefined,
    notReady: new HttpError(503, 'ERR_REX_NOT_READY', 'the model is still loading'),
    inFlight: new Set(),
    onRequestClosed: () => {
      if (closing) app.server.closeIdleConnections();
    },
  };
  const { app, metrics } = await buildApp(resolved, state, packageVersion());
  let closing: Promise<void> | undefined;
  const ready = Promise.resolve(model).then(
    (loaded) => {
      state.model = loaded;
      if (!closing) state.notReady = null;
    },
    (error: unknown) => {
      state.notReady = new HttpError(503, 'ERR_REX_NOT_READY', `the model failed to load: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
      throw error;
    },
  );
  ready.catch(() => {}); // reported through /readyz and `ready`

  return {
    app,
    metrics,
    options: resolved,
    ready,
    get inFlight() {
      return state.inFlight.size;
    },
    async listen({ port = 0, host = '127.0.0.1' } = {}) {
      checkBindAllowed(host, resolved.token !== undefined, resolved.insecurePublic);
      return app.listen({ port, host, listenTextResolver: (address) => `rex-omni serving on ${address}` });
    },
    close({ drainMs = resolved.drainMs } = {}) {
      closing ??= (() => {
        state.notReady = new HttpError(503, 'ERR_REX_SHUTTING_DOWN', 'the server is shutting down');
        return drainAndClose(app, state.inFlight, drainMs, async () => {
          if (!resolved.closeModel) return;
          const loaded = await ready.then(() => state.model, () => undefined);
          await loaded?.close();
        });
      })();
      return closing;
    },
  };
}
