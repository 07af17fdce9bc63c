// The parser's results: predictions, the reference-shaped groups, and
// whatever text could not be parsed (the parser reports, never throws).
import type { Prediction, XY, XYXY } from '../predictions.js';

/** A piece of output the parser skipped, and why. */
export interface Unparsed {
  text: string;
  reason: string;
}

/** One entry of the reference wrapper's `extracted_predictions`, coordinates in pixels. */
export type ReferenceEntry =
  | { type: 'box'; coords: XYXY }
  | { type: 'point'; coords: XY }
  | { type: 'polygon'; coords: XY[] }
  | { type: 'keypoint'; bbox: XYXY; keypoints: Record<string, XY | 'unvisible'>; instance_id: string };

/** Phrase (or keypoint category) → entries, in first-appearance order, like `extracted_predictions`. */
export type ReferenceGroups = Record<string, ReferenceEntry[]>;

export interface ParseResult {
  predictions: Prediction[];
  groups: ReferenceGroups;
  unparsed: Unparsed[];
  /** Whether the output ended properly (`<|im_end|>`, or the keypoint JSON closed) rather than being cut off. */
  complete: boolean;
}

/**
 * What the streaming parser reports as text arrives:
 * - 'prediction': a prediction is complete (its last coordinate arrived);
 * - 'retract': an earlier prediction turned out wrong (a "box" that got a fifth
 *   coordinate, a keypoint instance whose key repeated) and is withdrawn;
 * - 'unparsed': a piece of text was skipped.
 */
export type ParseEvent =
  | { type: 'prediction'; prediction: Prediction }
  | { type: 'retract'; prediction: Prediction }
  | { type: 'unparsed'; unparsed: Unparsed };

/** Where the task parsers send what they find. */
export interface ParseSink {
  /** A new prediction; with `replaces`, it takes that earlier one's place (a retract event first). */
  emit(prediction: Prediction, replaces?: Prediction): void;
  retract(prediction: Prediction): void;
  unparsed(text: string, reason: string): void;
  /** A group closed: its phrase gets a key in `groups` even when it had no items ("None"). */
  group(phrase: string): void;
}
