// RexOmni: the task API. One method per task, a generic run(), and stream(),
// which yields each prediction the moment its last coordinate token is
// sampled, then a final event with the whole result.
//
// Per request: decode the image (lib/image) → validate the task against its
// size → the reference's prompt, byte for byte → token ids → the engine (its
// own thread: preprocessing, vision, prefill, decode) → token events →
// text → the streaming parser → predictions in original-image pixels, scored.
import { join } from 'node:path';

import { buildPromptIds, expandImagePads, imagePadCount } from './chat.js';
import { Engine, type EngineOptions, type FinishEvent } from './engine.js';
import { invalidType, RexOmniError } from './errors.js';
import { loadImage, type ImageInput, type LoadImageOptions } from './image/index.js';
import { RexImage } from './image-handle.js';
import { StreamingOutputParser, type ParseResult, type ReferenceGroups, type Unparsed } from './parse/index.js';
import type { Prediction } from './predictions.js';
import { resolveRunOptions, type ResolvedRunOptions, type RunOptions } from './run-options.js';
import { CoordinateScorer } from './scores.js';
import { StreamingDetokenizer } from './detokenizer.js';
import {
  TASK_OUTPUT,
  allowedPhrases,
  buildTaskPrompt,
  validateTask,
  type ValidatedTask,
  type KeypointType,
  type OcrGranularity,
  type PixelBox,
  type TaskSpec,
} from './tasks/index.js';
import { RexTokenizer } from './tokenizer.js';
import { compileGrammar } from './grammar/index.js';
import { PromiseCache } from './promise-cache.js';
import { loadAddon } from './native.js';

export interface LoadOptions extends EngineOptions {
  /** Defaults for every run of this model (each run may override them). */
  defaults?: RunOptions;
  /** Refuse decoded images larger than this many pixels. */
  maxInputPixels?: number;
}

export interface RunTimings {
  /** Decoding the image in JS (sharp). */
  decodeMs: number;
  /** Resize and patchify, in the core. */
  preprocessMs: number;
  visionMs: number;
  prefillMs: number;
  /** From the call to the first prediction (undefined when there was none). */
  firstPredictionMs: number | undefined;
  /** From the call to the first generated token (undefined when there was none). */
  firstTokenMs: number | undefined;
  /** Time spent in decode steps. */
  decodeStepsMs: number;
  /** Tokens after the first (the prefill's) per second of decode steps. */
  decodeTokensPerSecond: number;
  totalMs: number;
}

export interface RexOmniResult {
  predictions: Prediction[];
  /** Shaped like the reference wrapper's `extracted_predictions`: phrase → entries. */
  groups: ReferenceGroups;
  /** The raw output text, special tokens kept. */
  text: string;
  /** The generated token ids (a stop token included). */
  outputTokenIds: number[];
  /** Pieces of output the parser could not read (empty under constrained decoding). */
  unparsed: Unparsed[];
  /** Whether the output ended properly rather than being cut off. */
  complete: boolean;
  finishReason: FinishEvent['reason'];
  /** `forced`: generated tokens that jump-forward appended without a decode step of their own. */
  /** cached: prompt tokens whose KV came from the image prefix cache (the image was not encoded again). */
  tokens: { prompt: number; image: number; generated: number; forced: number; cached: number };
  /** Decode forward passes the run took (prefill not counted): with jump-forward, fewer than generated tokens. */
  decodeSteps: number;
  /** Of those, tokens decoded inside other requests' prefill passes (`prefillDecodeRows`). */
  prefillRides: number;
  /** Times it gave its KV back under memory pressure and resumed (reserveGeneration: false); 0 otherwise. */
  preemptions: number;
  timings: RunTimings;
  image: { width: number; height: number; resizedWidth: number; resizedHeight: number };
}

export type RexOmniEvent =
  | { type: 'prediction'; prediction: Prediction }
  /** An earlier prediction turned out wrong (unconstrained output only) and is withdrawn. */
  | { type: 'retract'; prediction: Prediction }
  | { type: 'done'; result: RexOmniResult };

export class RexOmni implements AsyncDisposable {
  readonly #engine: Engine;
  readonly #tokenizer: RexTokenizer;
  readonly #defaults: RunOptions;
  readonly #maxInputPixels: number | undefined;
  // Services reuse a few category lists: the 64 newest grammars and task prompts' ids are kept.
  readonly #grammars = new PromiseCache<string>(64);
  readonly #promptIds = new PromiseCache<number[]>(64);

  private constructor(engine: Engine, tokenizer: RexTokenizer, options: LoadOptions) {
    this.#engine = engine;
    this.#tokenizer = tokenizer;
    this.#defaults = options.defaults ?? {};
    this.#maxInputPixels = options.maxInputPixels;
  }

  /** Loads the checkpoint directory (config.json, safetensors, tokenizer.json) off the JS thread. */
  static async load(dir: string, options: LoadOptions = {}): Promise<RexOmni> {
    if (typeof dir !== 'string' || dir.length === 0) throw invalidType('RexOmni.load(dir)', 'a non-empty directory path', dir);
    if (options === null || typeof options !== 'object') throw invalidType('RexOmni.load(dir, options)', 'an options object', options);
    resolveRunOptions(options.defaults); // fail early on bad defaults
    const { defaults: _defaults, maxInputPixels: _max, ...engineOptions } = options;
    const [tokenizer, engine] = await Promise.all([RexTokenizer.fromFile(join(dir, 'tokenizer.json')), Engine.open(dir, engineOptions)]);
    return new RexOmni(engine, tokenizer, options);
  }

  get config() {
    return this.#engine.config;
  }

  /** The backend in use ("cpu" or "cuda"), the GPU's name, CUDA and driver versions, and memory. */
  info() {
    return this.#engine.info();
  }

  /** The token-level engine underneath (teacher-forced `score`, raw token streams). */
  get engine(): Engine {
    return this.#engine;
  }

  /**
   * Decodes an image once, for several tasks on it: the handle's methods are
   * the task methods without the image argument. After the first, its tasks
   * find the image's KV in the prefix cache (EngineOptions.prefixCacheGB).
   */
  async image(input: ImageInput, options: LoadImageOptions = {}): Promise<RexImage> {
    const decoded = await loadImage(input, { maxInputPixels: this.#maxInputPixels, ...options });
    return new RexImage(this, { data: decoded.rgb, width: decoded.width, height: decoded.height, channels: 3 });
  }

  detect(image: ImageInput, categories: string[], options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'detection', categories }, options);
  }
  point(image: ImageInput, categories: string[], options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'pointing', categories }, options);
  }
  visualPrompt(image: ImageInput, boxes: PixelBox[], options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'visual_prompting', boxes }, options);
  }
  keypoints(image: ImageInput, keypointType: KeypointType, options?: RunOptions & { categories?: string[] }): Promise<RexOmniResult> {
    const { categories, ...rest } = options ?? {};
    return this.run(image, { task: 'keypoint', keypointType, ...(categories ? { categories } : {}) }, rest);
  }
  ocrBoxes(image: ImageInput, granularity: OcrGranularity = 'text line', options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'ocr_box', granularity }, options);
  }
  ocrPolygons(image: ImageInput, granularity: OcrGranularity = 'text line', options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'ocr_polygon', granularity }, options);
  }
  guiGround(image: ImageInput, element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'gui_grounding', element }, options);
  }
  guiPoint(image: ImageInput, element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.run(image, { task: 'gui_pointing', element }, options);
  }

  /** Runs any task to the end. */
  async run(image: ImageInput, task: TaskSpec, options?: RunOptions): Promise<RexOmniResult> {
    for await (const event of this.stream(image, task, options)) if (event.type === 'done') return event.result;
    throw new RexOmniError('ERR_REX_INTERNAL', 'the run ended without a result');
  }

  /** Streams predictions as they are decoded, then `{type: 'done', result}`. */
  async *stream(image: ImageInput, task: TaskSpec, options?: RunOptions): AsyncGenerator<RexOmniEvent, void, undefined> {
    const started = performance.now();
    const opts = resolveRunOptions(options, this.#defaults);
    opts.signal?.throwIfAborted();
    const decoded = await loadImage(image, { applyExif: opts.applyExif, maxInputPixels: this.#maxInputPixels });
    const decodeMs = performance.now() - started;
    const size = { width: decoded.width, height: decoded.height };
    const spec = validateTask(task, size);
    const resized = loadAddon().addon.smartResize(decoded.height, decoded.width, opts.minPixels, opts.maxPixels);
    const imagePads = imagePadCount(resized.height / 14, resized.width / 14);
    const taskPrompt = buildTaskPrompt(spec, size);
    const promptIds = expandImagePads(
      await this.#promptIds.get(taskPrompt, () => buildPromptIds(this.#tokenizer, taskPrompt, 1)),
      this.#tokenizer.ids.imagePad,
      imagePads,
    );

    const parser = new StreamingOutputParser(spec, size);
    const detokenizer = new StreamingDetokenizer(this.#tokenizer);
    const scorer = new CoordinateScorer();
    let text = '';
    const outputTokenIds: number[] = [];
    let firstPredictionMs: number | undefined;
    let firstTokenMs: number | undefined;
    const toEvents = (events: ReturnType<StreamingOutputParser['push']>): RexOmniEvent[] => {
      const out: RexOmniEvent[] = [];
      for (const event of events) {
        if (event.type === 'unparsed') continue;
        if (event.type === 'prediction') {
          if (opts.scores) event.prediction.score = scorer.score(event.prediction);
          firstPredictionMs ??= performance.now() - started;
        }
        out.push(event);
      }
      return out;
    };

    let finish: FinishEvent | undefined;
    const grammar = opts.constrained ? await this.#grammar(spec, opts) : undefined;
    for await (const event of this.#engine.stream({ ...this.#request(promptIds, decoded, opts), grammar })) {
      if (event.type === 'finish') {
        finish = event;
        break;
      }
      firstTokenMs ??= performance.now() - started;
      outputTokenIds.push(event.token);
      if (opts.scores && this.#tokenizer.isCoordinateId(event.token)) scorer.add(this.#tokenizer.coordinateBin(event.token), event.modelLogprob);
      const piece = detokenizer.push(event.token);
      text += piece;
      yield* toEvents(parser.push(piece));
    }
    if (!finish) throw new RexOmniError('ERR_REX_INTERNAL', 'the engine stream ended without a finish event');
    if (finish.reason === 'cancelled' && opts.signal?.aborted) throw opts.signal.reason;
    if (finish.reason === 'error' || finish.reason === 'deadline')
      throw finish.error ?? new RexOmniError(finish.reason === 'deadline' ? 'ERR_REX_DEADLINE' : 'ERR_REX_INTERNAL', 'generation failed');
    const tail = detokenizer.flush();
    text += tail;
    if (tail) yield* toEvents(parser.push(tail));
    const parsed: ParseResult = parser.finish();
    yield* toEvents(parser.drain());

    const decodeTokens = Math.max(finish.generatedTokens - 1, 0);
    yield {
      type: 'done',
      result: {
        predictions: parsed.predictions,
        groups: parsed.groups,
        text,
        outputTokenIds,
        unparsed: parsed.unparsed,
        complete: parsed.complete,
        finishReason: finish.reason,
        tokens: {
          prompt: finish.promptTokens,
          image: finish.imageTokens,
          generated: finish.generatedTokens,
          forced: finish.forcedTokens,
          cached: finish.cachedTokens,
        },
        decodeSteps: finish.decodeSteps,
        prefillRides: finish.prefillRides,
        preemptions: finish.preemptions,
        timings: {
          decodeMs,
          preprocessMs: finish.timings.preprocessMs,
          visionMs: finish.timings.visionMs,
          prefillMs: finish.timings.prefillMs,
          firstPredictionMs,
          firstTokenMs,
          decodeStepsMs: finish.timings.decodeMs,
          decodeTokensPerSecond: finish.timings.decodeMs > 0 ? decodeTokens / (finish.timings.decodeMs / 1000) : 0,
          totalMs: performance.now() - started,
        },
        image: { ...size, resizedWidth: resized.width, resizedHeight: resized.height },
      },
    };
  }

  async close(): Promise<void> {
    await this.#engine.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** The task's output grammar, as JSON text for the core (compiled once per task and options). */
  async #grammar(task: ValidatedTask, opts: ResolvedRunOptions): Promise<string> {
    const format = TASK_OUTPUT[task.task];
    const key = JSON.stringify([task.task, allowedPhrases(task), opts.maxPredictions, opts.forbidDuplicateBoxes, opts.maxPhraseTokens]);
    return this.#grammars.get(key, () =>
      compileGrammar(
        { syntax: format.syntax, kind: format.kind, phrases: allowedPhrases(task) },
        this.#tokenizer,
        { maxPredictions: opts.maxPredictions, forbidDuplicateBoxes: opts.forbidDuplicateBoxes, maxPhraseTokens: opts.maxPhraseTokens },
      ).then((grammar) => JSON.stringify(grammar)),
    );
  }

  #request(promptIds: number[], image: { rgb: Uint8Array; width: number; height: number }, opts: ResolvedRunOptions) {
    return {
      promptIds,
      image: { data: image.rgb, width: image.width, height: image.height, minPixels: opts.minPixels, maxPixels: opts.maxPixels },
      maxNewTokens: opts.maxNewTokens,
      stopTokenIds: [this.#tokenizer.ids.imEnd],
      sampling: opts.sampling,
      jumpForward: opts.jumpForward,
      scores: opts.scores,
      signal: opts.signal,
      ...(opts.deadlineMs > 0 ? { deadlineMs: opts.deadlineMs } : {}),
    };
  }
}

