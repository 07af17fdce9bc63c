// validateTask: checks a TaskSpec (and the image size it refers to) and
// returns a frozen copy with defaults filled in. Bad input gets a TypeError
// (wrong type) or RangeError (wrong value) reading "expected … but got …".
import { invalidType, outOfRange, rangeErrorWith, typeErrorWith } from '../errors.js';
import { DEFAULT_KEYPOINT_CATEGORIES } from './keypoints.js';
import {
  KEYPOINT_TYPES,
  OCR_GRANULARITIES,
  TASK_NAMES,
  type ImageSize,
  type PixelBox,
  type TaskName,
  type TaskSpec,
  type ValidatedTask,
} from './spec.js';

const oneOf = (values: readonly string[]): string => `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`;
const CATEGORIES = 'a non-empty array of non-empty strings';

/** Checks `imageSize` and returns a plain { width, height } copy. */
export function validateImageSize(imageSize: unknown, what = 'imageSize'): ImageSize {
  if (typeof imageSize !== 'object' || imageSize === null || Array.isArray(imageSize)) {
    throw invalidType(what, 'an object { width, height } in pixels', imageSize);
  }
  const { width, height } = imageSize as Record<string, unknown>;
  for (const [key, value] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (typeof value !== 'number') throw invalidType(`${what}.${key}`, 'a positive integer', value);
    if (!Number.isInteger(value) || value < 1) throw outOfRange(`${what}.${key}`, 'a positive integer', value);
  }
  return { width: width as number, height: height as number };
}

/** Checks a task name ("detection", …). */
export function validateTaskName(name: unknown, what = 'task.task'): TaskName {
  if (typeof name !== 'string') throw invalidType(what, oneOf(TASK_NAMES), name);
  if (!(TASK_NAMES as readonly string[]).includes(name)) throw outOfRange(what, oneOf(TASK_NAMES), name);
  return name as TaskName;
}

function nonBlankString(value: unknown, what: string): string {
  if (typeof value !== 'string') throw invalidType(what, 'a non-empty string', value);
  if (value.trim().length === 0) throw outOfRange(what, 'a non-empty string', value);
  return value;
}

function categoryList(value: unknown, what: string): string[] {
  if (!Array.isArray(value)) throw invalidType(what, CATEGORIES, value);
  if (value.length === 0) throw outOfRange(what, CATEGORIES, value);
  return value.map((category, i) => nonBlankString(category, `${what}[${i}]`));
}

function choice<T extends string>(value: unknown, choices: readonly T[], what: string): T {
  if (typeof value !== 'string') throw invalidType(what, oneOf(choices), value);
  if (!(choices as readonly string[]).includes(value)) throw outOfRange(what, oneOf(choices), value);
  return value as T;
}

const formatBox = (box: readonly number[]): string => `[${box.map(String).join(', ')}]`;

function pixelBox(value: unknown, what: string, size: ImageSize): PixelBox {
  const expected = 'a box [x0, y0, x1, y1] of 4 numbers';
  if (!Array.isArray(value)) throw invalidType(what, expected, value);
  if (value.length !== 4) throw outOfRange(what, expected, value);
  const names = ['x0', 'y0', 'x1', 'y1'];
  value.forEach((v: unknown, i) => {
    const at = `${what}[${i}] (${names[i]})`;
    if (typeof v !== 'number') throw invalidType(at, 'a finite number', v);
    if (!Number.isFinite(v)) throw outOfRange(at, 'a finite number', v);
    const limit = i % 2 === 0 ? size.width : size.height;
    if (v < 0 || v > limit) {
      throw outOfRange(at, `a number from 0 to ${limit} (the image ${i % 2 === 0 ? 'width' : 'height'})`, v);
    }
  });
  const box = value as PixelBox;
  if (box[2] < box[0]) throw rangeErrorWith(what, 'x0 <= x1', formatBox(box));
  if (box[3] < box[1]) throw rangeErrorWith(what, 'y0 <= y1', formatBox(box));
  return [box[0], box[1], box[2], box[3]];
}

/**
 * Checks a task spec. `imageSize` (the original image's) is required for
 * visual prompting, whose boxes must lie inside the image; it is checked
 * whenever given.
 */
export function validateTask(spec: TaskSpec, imageSize?: ImageSize): ValidatedTask {
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalidType('task', 'a task object such as { task: "detection", categories: ["person"] }', spec);
  }
  const raw = spec as unknown as Record<string, unknown>;
  const name = validateTaskName(raw.task);
  const size = imageSize === undefined ? undefined : validateImageSize(imageSize);
  switch (name) {
    case 'detection':
    case 'pointing':
      return Object.freeze({ task: name, categories: Object.freeze(categoryList(raw.categories, `${name}.categories`)) as string[] });
    case 'visual_prompting': {
      if (size === undefined) {
        throw typeErrorWith('visual_prompting imageSize', 'the original image size { width, height }', 'undefined');
      }
      const what = 'visual_prompting.boxes';
      const expected = 'a non-empty array of [x0, y0, x1, y1] boxes';
      if (!Array.isArray(raw.boxes)) throw invalidType(what, expected, raw.boxes);
      if (raw.boxes.length === 0) throw outOfRange(what, expected, raw.boxes);
      const boxes = raw.boxes.map((box: unknown, i) => Object.freeze(pixelBox(box, `${what}[${i}]`, size)) as PixelBox);
      return Object.freeze({ task: name, boxes: Object.freeze(boxes) as PixelBox[] });
    }
    case 'keypoint': {
      const keypointType = choice(raw.keypointType, KEYPOINT_TYPES, 'keypoint.keypointType');
      const categories =
        raw.categories === undefined
          ? [...DEFAULT_KEYPOINT_CATEGORIES[keypointType]]
          : categoryList(raw.categories, 'keypoint.categories');
      return Object.freeze({ task: name, keypointType, categories: Object.freeze(categories) as string[] });
    }
    case 'ocr_box':
    case 'ocr_polygon':
      return Object.freeze({ task: name, granularity: choice(raw.granularity, OCR_GRANULARITIES, `${name}.granularity`) });
    case 'gui_grounding':
    case 'gui_pointing':
      return Object.freeze({ task: name, element: nonBlankString(raw.element, `${name}.element`) });
  }
}
