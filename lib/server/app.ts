// The Fastify application: logger and request ids, auth, CORS, body
// parsers, the admission hook of the task routes, error responses, metrics
// per request, the routes and the OpenAPI document.
import { randomUUID } from 'node:crypto';

import accepts from '@fastify/accepts';
import cors from '@fastify/cors';
import swagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyInstance } from 'fastify';

import type { RexOmni } from '../rex-omni.js';
import { addBearerAuth } from './auth.js';
import { registerBodyParsers } from './body.js';
import { HttpError, errorBody, httpErrorOf } from './errors.js';
import { Admission } from './limits.js';
import { ServerMetrics } from './metrics.js';
import type { ResolvedServerOptions } from './options.js';
import { openRequestState, type RequestState } from './request-state.js';
import { addRoutes } from './routes.js';
import { RAW_IMAGE_TYPES } from './schemas.js';
import { TASK_ROUTE_NAMES } from './tasks.js';

export interface AppState {
  model: RexOmni | undefined;
  /** null when ready; else why not. */
  notReady: HttpError | null;
  /** The requests in flight on the task and batch routes. */
  inFlight: Set<RequestState>;
  /** Called when a task or batch request's response closes. */
  onRequestClosed(): void;
}

export async function buildApp(options: ResolvedServerOptions, state: AppState, packageVersion: string): Promise<{ app: FastifyInstance; metrics: ServerMetrics; admission: Admission }> {
  const app = Fastify({
    logger: options.logger,
    bodyLimit: options.maxBodyBytes,
    requestIdHeader: 'x-request-id',
    // Probes are not logged per request.
    logController: new LogController({ requestIdLogLabel: 'requestId', disableRequestLogging: (request) => request.url === '/healthz' || request.url === '/readyz' }),
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // Unknown fields are refused rather than dropped.
    ajv: { customOptions: { removeAdditional: false } },
  });
  const admission = new Admission(options);
  const metrics = new ServerMetrics(
    {
      model: () => state.model,
      admitted: () => admission.held,
      activeHttp: () => state.inFlight.size,
      maxActiveRequests: options.maxActiveRequests,
    },
    options.processMetrics,
  );

  app.decorateRequest('rex', null);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.request(request.routeOptions.url ?? 'unknown', reply.statusCode, reply.elapsedTime / 1000);
  });
  app.setErrorHandler((error, request, reply) => {
    const e = httpErrorOf(error);
    metrics.error(e.code);
    request.log[e.statusCode >= 500 && e.statusCode !== 503 && e.statusCode !== 504 ? 'error' : 'info']({ err: error, code: e.code }, e.message);
    if (e.code === 'ERR_REX_QUEUE_FULL' && !e.headers['retry-after']) reply.header('retry-after', String(options.retryAfterSeconds));
    return reply.code(e.statusCode).headers(e.headers).send(errorBody(e));
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const e =
      request.method === 'POST' && path.startsWith('/v1/')
        ? new HttpError(404, 'ERR_REX_UNKNOWN_TASK', `POST ${path}: expected a task, one of ${[...TASK_ROUTE_NAMES, 'batch'].map((n) => `/v1/${n}`).join(', ')}`)
        : new HttpError(404, 'ERR_REX_NOT_FOUND', `no route ${request.method} ${path}`);
    metrics.error(e.code);
    return reply.code(404).send(errorBody(e));
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'rex-omni', version: packageVersion, description: 'Rex-Omni detection over HTTP' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      ...(options.token ? { security: [{ bearer: [] }] } : {}),
    },
    transformObject: (document) => {
      const openapiObject = 'openapiObject' in document ? document.openapiObject : undefined;
      // Raw image bodies have no JSON Schema to validate; list them in the document.
      for (const [path, item] of Object.entries(openapiObject?.paths ?? {})) {
        const content = (item as { post?: { requestBody?: { content?: Record<string, unknown> } } }).post?.requestBody?.content;
        if (!content || path === '/v1/batch' || !path.startsWith('/v1/')) continue;
        for (const type of RAW_IMAGE_TYPES) content[type] = { schema: { type: 'string', format: 'binary' } };
      }
      return openapiObject ?? {};
    },
  });
  await app.register(accepts);
  if (options.cors !== false)
    await app.register(cors, { origin: options.cors, methods: ['GET', 'POST'], exposedHeaders: ['x-request-id', 'retry-after'] });
  if (options.token) addBearerAuth(app, options.token);
  await registerBodyParsers(app, options);

  // Admission into the bounded queue, before the body is read.
  app.addHook('onRequest', async (request, reply) => {
    if (!request.routeOptions.config.inference) return;
    if (state.notReady) throw state.notReady;
    const requestState = openRequestState(request, reply, admission, options.deadlineMs, (s) => {
      state.inFlight.delete(s);
      state.onRequestClosed();
    });
    state.inFlight.add(requestState);
  });

  addRoutes(app, {
    options,
    metrics,
    model: () => {
      if (!state.model) throw state.notReady ?? new HttpError(503, 'ERR_REX_NOT_READY', 'the model is not loaded');
      return state.model;
    },
    notReady: () => state.notReady,
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  return { app, metrics, admission };
}
