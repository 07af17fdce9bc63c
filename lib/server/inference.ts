// One image through the model: decode it (the header's size checked against
// maxInputPixels before anything is decoded), check the task against it,
// then stream the model's events under the request's signal (client
// disconnect, deadline, shutdown) and the core's own deadline.
import { loadImage } from '../image/index.js';
import type { RexOmni, RexOmniEvent, RexOmniResult } from '../rex-omni.js';
import type { RunOptions } from '../run-options.js';
import { validateTask, type TaskSpec } from '../tasks/index.js';
import type { ServerMetrics } from './metrics.js';
import type { ResolvedServerOptions } from './options.js';
import type { RequestFields, TaskRoute } from './tasks.js';

/** What a request brings to every run it makes. */
export interface RequestContext {
  /** performance.now() at arrival. */
  arrived: number;
  /** Aborted by a disconnect, the deadline or shutdown, with the reason as an HttpError. */
  signal: AbortSignal;
  deadlineAt: number;
}

export interface PreparedRun {
  image: { data: Uint8Array; width: number; height: number };
  spec: TaskSpec;
  decodeMs: number;
}

/** Decodes the image and checks the task against its size: every input error surfaces here, before a response starts. */
export async function prepareRun(bytes: Buffer, route: TaskRoute, fields: RequestFields, limits: ResolvedServerOptions): Promise<PreparedRun> {
  const started = performance.now();
  const decoded = await loadImage(bytes, { applyExif: fields.applyExif ?? limits.runDefaults.applyExif ?? true, maxInputPixels: limits.maxInputPixels });
  const size = { width: decoded.width, height: decoded.height };
  const spec = validateTask(route.spec(fields), size) as TaskSpec;
  return { image: { data: decoded.rgb, ...size }, spec, decodeMs: performance.now() - started };
}

export function runOptionsOf(fields: RequestFields, maxNewTokens: number, limits: ResolvedServerOptions): RunOptions {
  const d = limits.runDefaults;
  const pick = <K extends keyof RequestFields>(key: K) => (fields[key] !== undefined ? { [key]: fields[key] } : {});
  const sampling = {
    ...d.sampling,
    ...pick('temperature'),
    ...pick('topK'),
    ...pick('topP'),
    ...pick('repetitionPenalty'),
    ...pick('seed'),
  };
  return {
    ...d,
    ...pick('maxPredictions'),
    ...pick('maxPhraseTokens'),
    ...pick('constrained'),
    ...pick('scores'),
    maxNewTokens,
    applyExif: false, // applied while decoding
    sampling,
  };
}

/** Streams one prepared run; observes it in the metrics when it completes. */
export async function* runEvents(
  model: RexOmni,
  prepared: PreparedRun,
  options: RunOptions,
  context: RequestContext,
  metrics: ServerMetrics,
): AsyncGenerator<RexOmniEvent, RexOmniResult> {
  const startedMs = performance.now() - context.arrived;
  // The core's deadline counts from submit: what is left of the request's.
  const deadlineMs = Math.max(1, Math.round(context.deadlineAt - performance.now()));
  context.signal.throwIfAborted();
  for await (const event of model.stream(prepared.image, prepared.spec, { ...options, signal: context.signal, deadlineMs })) {
    if (event.type === 'done') {
      metrics.run(event.result, startedMs, prepared.decodeMs);
      yield event;
      return event.result;
    }
    yield event;
  }
  throw new Error('the run ended without a result');
}
