// The task routes: POST /v1/<name> for each task, named as the CLI's task
// commands; each one's own fields (JSON Schema, for validation and the
// OpenAPI document) and how its fields become a TaskSpec.
import type { PixelBox, TaskName, TaskSpec } from '../tasks/index.js';
import { KEYPOINT_TYPES, OCR_GRANULARITIES } from '../tasks/index.js';

export type JsonSchema = Record<string, unknown>;

/** A request's task and run fields after parsing, whatever the body format. */
export interface RequestFields {
  categories?: string[];
  boxes?: PixelBox[];
  keypointType?: string;
  granularity?: string;
  element?: string;
  maxNewTokens?: number;
  maxPredictions?: number;
  maxPhraseTokens?: number;
  constrained?: boolean;
  scores?: boolean;
  applyExif?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  seed?: number;
  deadlineMs?: number;
}

export interface TaskRoute {
  /** The path segment: POST /v1/<name>. */
  name: string;
  task: TaskName;
  summary: string;
  /** The task's own fields (JSON form). */
  fields: Record<string, JsonSchema>;
  spec(fields: RequestFields): TaskSpec;
}

const phrases = (what: string): JsonSchema => ({
  type: 'array',
  items: { type: 'string' },
  description: `${what}. In a query string or multipart field: comma-separated (or repeated).`,
});
const box: JsonSchema = { type: 'array', items: { type: 'number' }, minItems: 4, maxItems: 4 };
const element: JsonSchema = { type: 'string', description: 'the GUI element, described in words' };
const granularity: JsonSchema = { type: 'string', enum: [...OCR_GRANULARITIES], default: 'text line' };

export const TASK_ROUTES: readonly TaskRoute[] = [
  {
    name: 'detect',
    task: 'detection',
    summary: 'Boxes around the categories (also referring and layout phrases)',
    fields: { categories: phrases('what to detect') },
    spec: (f) => ({ task: 'detection', categories: f.categories as string[] }),
  },
  {
    name: 'point',
    task: 'pointing',
    summary: 'One point on each instance of the categories',
    fields: { categories: phrases('what to point at') },
    spec: (f) => ({ task: 'pointing', categories: f.categories as string[] }),
  },
  {
    name: 'visual-prompt',
    task: 'visual_prompting',
    summary: 'Boxes around everything like the reference boxes',
    fields: {
      boxes: {
        type: 'array',
        items: box,
        description: 'reference boxes [x0, y0, x1, y1] in pixels. In a query string or multipart field: "x0,y0,x1,y1;x0,y0,x1,y1".',
      },
    },
    spec: (f) => ({ task: 'visual_prompting', boxes: f.boxes as PixelBox[] }),
  },
  {
    name: 'keypoints',
    task: 'keypoint',
    summary: 'A box and 17 keypoints for each person or animal',
    fields: { keypointType: { type: 'string', enum: [...KEYPOINT_TYPES], default: 'person' }, categories: phrases('what to look for (default: the keypoint type)') },
    spec: (f) => ({
      task: 'keypoint',
      keypointType: (f.keypointType ?? 'person') as 'person' | 'animal',
      ...(f.categories ? { categories: f.categories } : {}),
    }),
  },
  {
    name: 'ocr-boxes',
    task: 'ocr_box',
    summary: 'Text boxes with the recognised text',
    fields: { granularity },
    spec: (f) => ({ task: 'ocr_box', granularity: (f.granularity ?? 'text line') as 'word' | 'text line' }),
  },
  {
    name: 'ocr-polygons',
    task: 'ocr_polygon',
    summary: 'Text polygons with the recognised text',
    fields: { granularity },
    spec: (f) => ({ task: 'ocr_polygon', granularity: (f.granularity ?? 'text line') as 'word' | 'text line' }),
  },
  {
    name: 'gui-ground',
    task: 'gui_grounding',
    summary: 'The box of a GUI element',
    fields: { element },
    spec: (f) => ({ task: 'gui_grounding', element: f.element as string }),
  },
  {
    name: 'gui-point',
    task: 'gui_pointing',
    summary: 'A point on a GUI element',
    fields: { element },
    spec: (f) => ({ task: 'gui_pointing', element: f.element as string }),
  },
];

export const TASK_ROUTE_NAMES = TASK_ROUTES.map((r) => r.name);

export function taskRoute(name: string): TaskRoute | undefined {
  return TASK_ROUTES.find((r) => r.name === name);
}

/** Run fields every task takes. */
export const RUN_FIELDS: Record<string, JsonSchema> = {
  maxNewTokens: { type: 'integer', minimum: 1, description: 'stop after this many output tokens (at most the server\'s maxNewTokens, its default)' },
  maxPredictions: { type: 'integer', minimum: 0, description: 'stop after this many predictions (0: no limit)' },
  maxPhraseTokens: { type: 'integer', minimum: 1, description: 'free-text phrases (OCR text, GUI elements) get at most this many tokens' },
  constrained: { type: 'boolean', description: 'decode under the output grammar (default true)' },
  scores: { type: 'boolean', description: 'confidence scores on predictions (default true)' },
  applyExif: { type: 'boolean', description: 'apply the EXIF orientation first (default true)' },
  temperature: { type: 'number', minimum: 0, description: 'sampling temperature (0: greedy, the default)' },
  topK: { type: 'integer', minimum: 0 },
  topP: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
  repetitionPenalty: { type: 'number', exclusiveMinimum: 0 },
  seed: { type: 'integer', minimum: 0 },
  deadlineMs: { type: 'integer', minimum: 1, description: 'this request\'s deadline from its arrival (at most the server\'s deadlineMs)' },
};
