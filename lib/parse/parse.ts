// parseOutput: a whole Rex-Omni output text → predictions, reference-shaped
// groups and the parts it could not read. Never throws on the text.
import type { ImageSize, TaskName, TaskSpec } from '../tasks/spec.js';
import { invalidType } from '../errors.js';
import { StreamingOutputParser } from './streaming.js';
import type { ParseResult } from './types.js';

/**
 * Parses `text` (special tokens kept) for `task`, mapping bins to pixels of
 * `imageSize`, the ORIGINAL image's size.
 */
export function parseOutput(text: string, task: TaskName | TaskSpec, imageSize: ImageSize): ParseResult {
  if (typeof text !== 'string') throw invalidType('parseOutput(text)', 'a string', text);
  const parser = new StreamingOutputParser(task, imageSize);
  parser.push(text);
  return parser.finish();
}
