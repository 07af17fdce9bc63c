// What each task's output looks like, for the grammar compiler and the parser:
// the geometry of every item and where the phrases come from.
import type { PredictionKind } from '../predictions.js';
import type { TaskName, ValidatedTask } from './spec.js';

/**
 * How a task's phrases are chosen:
 * - 'categories': each group's phrase is one of the requested categories (detection, pointing);
 * - 'element': the phrase describes the one requested GUI element;
 * - 'free': free text (OCR's recognised text; visual prompting's label);
 * - 'json': no phrases; instances are keys of a ```json object (keypoint).
 * Only 'categories' is a hard constraint the reference relies on; the others are what the
 * training format suggests, so a grammar should keep them free text.
 */
export type PhrasePolicy = 'categories' | 'element' | 'free' | 'json';

export interface TaskOutputFormat {
  /** The geometry of every item. */
  kind: PredictionKind;
  /** Coordinates per item: 4 for a box, 2 for a point, null where it varies (polygon, keypoints). */
  coordinatesPerItem: 4 | 2 | null;
  /** Groups `<|object_ref_start|>PHRASE<|object_ref_end|><|box_start|>…<|box_end|>`, or JSON. */
  syntax: 'groups' | 'keypoint-json';
  phrases: PhrasePolicy;
}

export const TASK_OUTPUT: Readonly<Record<TaskName, TaskOutputFormat>> = Object.freeze({
  detection: { kind: 'box', coordinatesPerItem: 4, syntax: 'groups', phrases: 'categories' },
  pointing: { kind: 'point', coordinatesPerItem: 2, syntax: 'groups', phrases: 'categories' },
  visual_prompting: { kind: 'box', coordinatesPerItem: 4, syntax: 'groups', phrases: 'free' },
  keypoint: { kind: 'keypoints', coordinatesPerItem: null, syntax: 'keypoint-json', phrases: 'json' },
  ocr_box: { kind: 'box', coordinatesPerItem: 4, syntax: 'groups', phrases: 'free' },
  ocr_polygon: { kind: 'polygon', coordinatesPerItem: null, syntax: 'groups', phrases: 'free' },
  gui_grounding: { kind: 'box', coordinatesPerItem: 4, syntax: 'groups', phrases: 'element' },
  gui_pointing: { kind: 'point', coordinatesPerItem: 2, syntax: 'groups', phrases: 'element' },
} satisfies Record<TaskName, TaskOutputFormat>);

/**
 * The phrases a validated task's output may use, or null where they are free text
 * ('element', 'free') or absent ('json').
 */
export function allowedPhrases(task: ValidatedTask): readonly string[] | null {
  return task.task === 'detection' || task.task === 'pointing' ? task.categories : null;
}
