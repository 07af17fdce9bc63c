// The routes: POST /v1/<task> for each task, POST /v1/batch, and the
// operational ones (/healthz, /readyz, /metrics, /openapi.json).
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

import { AsyncChannel } from '../async-channel.js';
import type { RexOmni, RexOmniEvent, RexOmniResult } from '../rex-omni.js';
import { readBody } from './body.js';
import { HttpError, errorBody, httpErrorOf } from './errors.js';
import { prepareRun, runEvents, runOptionsOf } from './inference.js';
import { checkFieldLimits, checkImageCount } from './limits.js';
import type { ServerMetrics } from './metrics.js';
import type { ResolvedServerOptions } from './options.js';
import type { RequestState } from './request-state.js';
import { negotiate, sendStream, type StreamEvent } from './respond.js';
import { batchRouteSchema, taskRouteSchema } from './schemas.js';
import { TASK_ROUTES, TASK_ROUTE_NAMES, taskRoute, type TaskRoute } from './tasks.js';

export interface RouteContext {
  options: ResolvedServerOptions;
  metrics: ServerMetrics;
  /** The loaded model, or the 503 that says why there is none. */
  model(): RexOmni;
  /** null when ready; else why not (loading, failed, shutting down). */
  notReady(): HttpError | null;
}

function stateOf(request: FastifyRequest): RequestState {
  if (!request.rex) throw new HttpError(500, 'ERR_REX_INTERNAL', 'the request has no state');
  return request.rex;
}

/** An error inside a stream that has started: logged, counted, sent as an event. */
function streamError(error: unknown, log: FastifyBaseLogger, metrics: ServerMetrics, extra: Record<string, unknown> = {}): StreamEvent {
  const e = httpErrorOf(error);
  metrics.error(e.code);
  log[e.statusCode >= 500 ? 'error' : 'info']({ err: error, code: e.code }, 'run failed after the response started');
  return { type: 'error', ...extra, ...errorBody(e) };
}

async function* taskStream(events: AsyncIterable<RexOmniEvent>, log: FastifyBaseLogger, metrics: ServerMetrics): AsyncGenerator<StreamEvent> {
  try {
    for await (const event of events) yield event.type === 'done' ? { type: 'done', result: event.result } : { type: event.type, prediction: event.prediction };
  } catch (error) {
    yield streamError(error, log, metrics);
  }
}

/** Runs the events to their end: the run's result (runEvents' return value). */
async function resultOf(events: AsyncGenerator<RexOmniEvent, RexOmniResult>): Promise<RexOmniResult> {
  for (;;) {
    const step = await events.next();
    if (step.done) return step.value;
  }
}

async function handleTask(ctx: RouteContext, route: TaskRoute, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const state = stateOf(request);
  const type = negotiate(request);
  const { images, fields } = readBody(request, false);
  const { maxNewTokens, deadlineMs } = checkFieldLimits(fields, ctx.options);
  state.setDeadline(deadlineMs);
  const model = ctx.model();
  const prepared = await prepareRun(images[0]!, route, fields, ctx.options);
  const events = runEvents(model, prepared, runOptionsOf(fields, maxNewTokens, ctx.options), state, ctx.metrics);
  if (type !== 'application/json') return sendStream(reply, type, taskStream(events, request.log, ctx.metrics));
  return resultOf(events);
}

type BatchItem = { type: 'result'; index: number; result: RexOmniResult } | { type: 'error'; index: number; code: string; message: string };

async function handleBatch(ctx: RouteContext, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const started = performance.now();
  const state = stateOf(request);
  const type = negotiate(request);
  const { images, fields } = readBody(request, true);
  const { task, ...taskFields } = fields;
  const route = taskRoute(task ?? '');
  if (!route) throw new HttpError(400, 'ERR_REX_UNKNOWN_TASK', `task: expected one of ${TASK_ROUTE_NAMES.join(', ')} but got ${JSON.stringify(task)}`);
  checkImageCount(images.length, ctx.options);
  const { maxNewTokens, deadlineMs } = checkFieldLimits(taskFields, ctx.options);
  state.setDeadline(deadlineMs);
  const model = ctx.model();
  state.acquire(images.length - 1); // one slot per image; the request holds one already
  ctx.metrics.batch(images.length);
  const options = runOptionsOf(taskFields, maxNewTokens, ctx.options);

  // Every image at once (the engine batches them), each result as it finishes.
  const finished = new AsyncChannel<BatchItem>();
  let pending = images.length;
  images.forEach(async (bytes, index) => {
    try {
      const prepared = await prepareRun(bytes, route, taskFields, ctx.options);
      finished.push({ type: 'result', index, result: await resultOf(runEvents(model, prepared, options, state, ctx.metrics)) });
    } catch (error) {
      const e = httpErrorOf(error);
      ctx.metrics.error(e.code);
      finished.push({ type: 'error', index, ...errorBody(e) });
    } finally {
      if (--pending === 0) finished.close();
    }
  });
  const summary = (items: BatchItem[]) => ({
    type: 'summary',
    task: route.name,
    images: images.length,
    succeeded: items.filter((i) => i.type === 'result').length,
    failed: items.filter((i) => i.type === 'error').length,
    totalMs: performance.now() - started,
  });

  if (type === 'application/json') {
    const items: BatchItem[] = [];
    for await (const item of finished) items.push(item);
    items.sort((a, b) => a.index - b.index);
    const results = items.map((i) => (i.type === 'result' ? { index: i.index, result: i.result } : { index: i.index, error: { code: i.code, message: i.message } }));
    return { results, summary: summary(items) };
  }
  async function* events(): AsyncGenerator<StreamEvent> {
    const items: BatchItem[] = [];
    for await (const item of finished) {
      items.push(item);
      yield item;
    }
    yield summary(items);
  }
  return sendStream(reply, type, events());
}

export function addRoutes(app: FastifyInstance, ctx: RouteContext): void {
  for (const route of TASK_ROUTES) {
    app.post(`/v1/${route.name}`, { schema: taskRouteSchema(route), config: { inference: true } }, (request, reply) => handleTask(ctx, route, request, reply));
  }
  app.post('/v1/batch', { schema: batchRouteSchema(), config: { inference: true } }, (request, reply) => handleBatch(ctx, request, reply));

  app.get('/healthz', { schema: { summary: 'Liveness: the process answers', tags: ['operations'] } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { summary: 'Readiness: 200 once the model is loaded (503 while loading or shutting down)', tags: ['operations'] } }, async (_request, reply) => {
    const why = ctx.notReady();
    if (why) return reply.code(503).send(errorBody(why));
    return { status: 'ready' };
  });
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', tags: ['operations'] } }, async (_request, reply) => {
    reply.type(ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
}
