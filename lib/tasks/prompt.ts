// buildTaskPrompt: the task prompt text, byte for byte the reference
// wrapper's templates (REXOMNI.md "Prompt"), including gui_grounding's doubled
// quote and visual prompting's json.dumps layout.
import { KEYPOINT_NAMES } from './keypoints.js';
import type { ImageSize, PixelBox, TaskSpec } from './spec.js';
import { validateTask } from './validate.js';

/** A pixel coordinate's bin: int(clamp(v / size, 0, 1) · 999), as the reference computes it. */
export function pixelToBin(value: number, size: number): number {
  return Math.trunc(Math.max(0, Math.min(1, value / size)) * 999);
}

/** The visual prompt JSON: `{"object_1": ["<x0><y0><x1><y1>", …]}` (json.dumps separators ", " and ": "). */
export function visualPromptJson(boxes: readonly PixelBox[], imageSize: ImageSize): string {
  const { width, height } = imageSize;
  const items = boxes.map(
    ([x0, y0, x1, y1]) =>
      `"<${pixelToBin(x0, width)}><${pixelToBin(y0, height)}><${pixelToBin(x1, width)}><${pixelToBin(y1, height)}>"`,
  );
  return `{"object_1": [${items.join(', ')}]}`;
}

/** The task prompt for `spec` (validated first; `imageSize` is the original image's). */
export function buildTaskPrompt(spec: TaskSpec, imageSize?: ImageSize): string {
  const task = validateTask(spec, imageSize);
  switch (task.task) {
    case 'detection':
      return `Detect ${task.categories.join(', ')}. Output the bounding box coordinates in [x0, y0, x1, y1] format.`;
    case 'pointing':
      return `Point to ${task.categories.join(', ')}.`;
    case 'visual_prompting':
      return (
        `Given reference boxes ${visualPromptJson(task.boxes, imageSize as ImageSize)} indicating one or more ` +
        'objects, find all similar objects in the image and output their bounding boxes.'
      );
    case 'keypoint':
      return (
        `Can you detect each ${task.categories.join(', ')} in the image using a [x0, y0, x1, y1] box format, ` +
        `and then provide the coordinates of its ${KEYPOINT_NAMES[task.keypointType].join(', ')} as [x0, y0]? ` +
        'Output the answer in JSON format.'
      );
    case 'ocr_box':
      return `Detect all ${task.granularity} and recognize them.`;
    case 'ocr_polygon':
      return `Can you detect all ${task.granularity} in this image in polygon format like [x0, y0, x1, y1, x2, y2 ...] and then recognize them?`;
    case 'gui_grounding':
      return `Detect element "${task.element}"" in the image.`;
    case 'gui_pointing':
      return `Point to element "${task.element}".`;
  }
}
