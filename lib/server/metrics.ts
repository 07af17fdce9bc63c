// Prometheus metrics (prom-client), in a registry of the server's own.
// Gauges read the engine and the admission queue when scraped; histograms
// and counters are updated as requests finish.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

import type { RexOmni, RexOmniResult } from '../rex-omni.js';

export interface MetricsSources {
  /** The model once loaded. */
  model(): RexOmni | undefined;
  /** Requests admitted and not yet answered (a batch counts its images). */
  admitted(): number;
  /** HTTP requests being handled on the task and batch routes. */
  activeHttp(): number;
  maxActiveRequests: number;
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #requestDuration: Histogram<'route' | 'status'>;
  readonly #firstToken: Histogram;
  readonly #stage: Histogram<'stage'>;
  readonly #tokensPerSecond: Histogram;
  readonly #generated: Counter;
  readonly #errors: Counter<'code'>;
  readonly #batchImages: Histogram;

  constructor(sources: MetricsSources, processMetrics: boolean) {
    const registers = [this.registry];
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'rex_omni_process_' });
    const engineRequests = () => sources.model()?.engine.activeRequests ?? 0;
    new Gauge({
      name: 'rex_omni_queue_depth',
      help: 'Admitted requests not being decoded: admitted minus min(engine requests, maxActiveRequests)',
      registers,
      collect() {
        this.set(Math.max(0, sources.admitted() - Math.min(engineRequests(), sources.maxActiveRequests)));
      },
    });
    new Gauge({ name: 'rex_omni_active_requests', help: 'HTTP requests in flight on the task and batch routes', registers, collect() { this.set(sources.activeHttp()); } });
    new Gauge({ name: 'rex_omni_admitted_requests', help: 'Slots of the bounded queue in use (a batch holds one per image)', registers, collect() { this.set(sources.admitted()); } });
    new Gauge({ name: 'rex_omni_engine_requests', help: 'Requests in the engine, queued or running', registers, collect() { this.set(engineRequests()); } });
    new Gauge({
      name: 'rex_omni_batch_size',
      help: 'Requests the engine decodes together now: min(engine requests, maxActiveRequests)',
      registers,
      collect() { this.set(Math.min(engineRequests(), sources.maxActiveRequests)); },
    });
    new Gauge({
      name: 'rex_omni_gpu_memory_bytes',
      help: 'Memory as the engine reports it: device_used (the whole GPU, 0 on the CPU), peak, weights, kv_cache, kv_cache_used, workspace',
      labelNames: ['kind'],
      registers,
      collect() {
        const memory = sources.model()?.info().memory;
        if (!memory) return;
        this.set({ kind: 'device_used' }, memory.deviceUsedBytes);
        this.set({ kind: 'peak' }, memory.peakBytes);
        this.set({ kind: 'weights' }, memory.weightsBytes);
        this.set({ kind: 'kv_cache' }, memory.kvCacheBytes);
        this.set({ kind: 'kv_cache_used' }, memory.kvCacheUsedBytes);
        this.set({ kind: 'workspace' }, memory.workspaceBytes);
      },
    });
    this.#requestDuration = new Histogram({
      name: 'rex_omni_request_duration_seconds',
      help: 'HTTP request latency, from arrival to the end of the response',
      labelNames: ['route', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#firstToken = new Histogram({
      name: 'rex_omni_time_to_first_token_seconds',
      help: 'From a request\'s arrival to its first generated token (queueing, image decoding, vision and prefill)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#stage = new Histogram({
      name: 'rex_omni_stage_duration_seconds',
      help: 'Time per stage of a run: decode_image, preprocess, vision, prefill, decode_steps',
      labelNames: ['stage'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#tokensPerSecond = new Histogram({
      name: 'rex_omni_decode_tokens_per_second',
      help: 'Per run: generated tokens after the first per second of decode steps',
      buckets: [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
      registers,
    });
    this.#generated = new Counter({ name: 'rex_omni_generated_tokens_total', help: 'Generated tokens (rate() of it: tokens/s)', registers });
    this.#errors = new Counter({ name: 'rex_omni_errors_total', help: 'Error responses and failed runs, by error code', labelNames: ['code'], registers });
    this.#batchImages = new Histogram({ name: 'rex_omni_batch_images', help: 'Images per POST /v1/batch', buckets: [1, 2, 4, 8, 16, 32, 64, 128], registers });
  }

  request(route: string, status: number, seconds: number): void {
    this.#requestDuration.observe({ route, status: String(status) }, seconds);
  }

  /** A finished run; `startedMs`: from the request's arrival to the run's start; `decodeImageMs`: the server's image decoding. */
  run(result: RexOmniResult, startedMs: number, decodeImageMs: number): void {
    const t = result.timings;
    this.#generated.inc(result.tokens.generated);
    if (t.firstTokenMs !== undefined) this.#firstToken.observe((startedMs + t.firstTokenMs) / 1000);
    if (t.decodeTokensPerSecond > 0) this.#tokensPerSecond.observe(t.decodeTokensPerSecond);
    for (const [stage, ms] of [
      ['decode_image', decodeImageMs],
      ['preprocess', t.preprocessMs],
      ['vision', t.visionMs],
      ['prefill', t.prefillMs],
      ['decode_steps', t.decodeStepsMs],
    ] as const)
      this.#stage.observe({ stage }, ms / 1000);
  }

  error(code: string): void {
    this.#errors.inc({ code });
  }

  batch(images: number): void {
    this.#batchImages.observe(images);
  }
}
