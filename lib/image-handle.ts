// model.image(input): an image decoded once, for several questions about it.
// Every task on the handle sends the same pixels, so the engine's image
// prefix cache (EngineOptions.prefixCacheGB) finds the image's KV after the
// first: later tasks skip the decode, the vision encoder and the image's
// prefill. The cache works without a handle too (any input that decodes to
// the same pixels); the handle saves the decode and keeps the pixels alive.
import type { ImageInput, RawImage } from './image/index.js';
import type { RexOmniEvent, RexOmniResult } from './rex-omni.js';
import type { RunOptions } from './run-options.js';
import type { KeypointType, OcrGranularity, PixelBox, TaskSpec } from './tasks/index.js';

/** What a handle needs from the model: its run and stream. */
export interface TaskRunner {
  run(image: ImageInput, task: TaskSpec, options?: RunOptions): Promise<RexOmniResult>;
  stream(image: ImageInput, task: TaskSpec, options?: RunOptions): AsyncGenerator<RexOmniEvent, void, undefined>;
}

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
    return this.run({ task: 'detection', categories }, options);
  }
  point(categories: string[], options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'pointing', categories }, options);
  }
  visualPrompt(boxes: PixelBox[], options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'visual_prompting', boxes }, options);
  }
  keypoints(keypointType: KeypointType, options?: RunOptions & { categories?: string[] }): Promise<RexOmniResult> {
    const { categories, ...rest } = options ?? {};
    return this.run({ task: 'keypoint', keypointType, ...(categories ? { categories } : {}) }, rest);
  }
  ocrBoxes(granularity: OcrGranularity = 'text line', options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'ocr_box', granularity }, options);
  }
  ocrPolygons(granularity: OcrGranularity = 'text line', options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'ocr_polygon', granularity }, options);
  }
  guiGround(element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'gui_grounding', element }, options);
  }
  guiPoint(element: string, options?: RunOptions): Promise<RexOmniResult> {
    return this.run({ task: 'gui_pointing', element }, options);
  }
}
