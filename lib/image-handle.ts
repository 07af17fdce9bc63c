// model.image(input): an image decoded once, for several questions about it.
// Every task on the handle sends the same pixels, so the engine's image
// prefix cache (EngineOptions.prefixCacheGB) finds the image's KV after the
// first: later tasks skip the decode, the vision encoder and the image's
// prefill. The cache works without a handle too (any input that decodes to
// the same pixels); the handle saves the decode and keeps the pixels alive.
import type { RawImage } from './image/index.js';
import type { RexOmni, RexOmniEvent, RexOmniResult } from './rex-omni.js';
import type { RunOptions } from './run-options.js';
import type { KeypointType, OcrGranularity, PixelBox, TaskSpec } from './tasks/index.js';

/** What a handle needs from the model: its run and stream, and the task methods it forwards to. */
export type TaskRunner = Pick<
  RexOmni,
  'run' | 'stream' | 'detect' | 'point' | 'visualPrompt' | 'keypoints' | 'ocrBoxes' | 'ocrPolygons' | 'guiGround' | 'guiPoint'
>;

/** The model's task methods on these pixels: each forwards to the model's own, so a task's spec is built in one place. */
export class RexImage {
  readonly #model: TaskRunner;
  readonly #pixels: RawImage;

  constructor(model: TaskRunner, pixels: RawImage) {
    this.#model = model;
    this.#pixels = pixels;
  }

  get width(): number {
    return this.#pixels.width;
  }
  get height(): number {
    return this.#pixels.height;
  }

  run(task: TaskSpec, options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.run(this.#pixels, task, options);
  }
  stream(task: TaskSpec, options?: RunOptions): AsyncGenerator<RexOmniEvent, void, undefined> {
    return this.#model.stream(this.#pixels, task, options);
  }

  detect(categories: string[], options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.detect(this.#pixels, categories, options);
  }
  point(categories: string[], options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.point(this.#pixels, categories, options);
  }
  visualPrompt(boxes: PixelBox[], options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.visualPrompt(this.#pixels, boxes, options);
  }
  keypoints(keypointType: KeypointType, options?: RunOptions & { categories?: string[] }): Promise<RexOmniResult> {
    return this.#model.keypoints(this.#pixels, keypointType, options);
  }
  /** granularity: default 'text line' (the model's). */
  ocrBoxes(granularity?: OcrGranularity, options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.ocrBoxes(this.#pixels, granularity, options);
  }
  /** granularity: default 'text line' (the model's). */
  ocrPolygons(granularity?: OcrGranularity, options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.ocrPolygons(this.#pixels, granularity, options);
  }
  guiGround(element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.guiGround(this.#pixels, element, options);
  }
  guiPoint(element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.#model.guiPoint(this.#pixels, element, options);
  }
}
