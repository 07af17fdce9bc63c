// StreamingOutputParser: feed it the decoded output text in chunks of any
// size (a token's text at a time, special tokens kept) and it reports each
// prediction the moment its last coordinate arrives. finish() gives the same
// result parseOutput() gives for the whole text. It never throws on text.
import { TASK_OUTPUT } from '../tasks/output-kind.js';
import type { ImageSize, TaskName, TaskSpec } from '../tasks/spec.js';
import { validateImageSize, validateTaskName } from '../tasks/validate.js';
import { invalidType } from '../errors.js';
import { Collector } from './collector.js';
import { GroupParser } from './group-parser.js';
import { KeypointParser } from './keypoint-parser.js';
import type { ParseEvent, ParseResult } from './types.js';

function taskNameOf(task: TaskName | TaskSpec, what: string): TaskName {
  if (typeof task === 'object' && task !== null) return validateTaskName((task as { task?: unknown }).task, `${what}.task`);
  return validateTaskName(task, what);
}

export class StreamingOutputParser {
  readonly task: TaskName;
  readonly imageSize: ImageSize;
  readonly #collector = new Collector();
  readonly #parser: GroupParser | KeypointParser;
  #finished: ParseResult | null = null;

  /** `task`: the task (or its name) the output answers; `imageSize`: the ORIGINAL image's size, for pixels. */
  constructor(task: TaskName | TaskSpec, imageSize: ImageSize) {
    this.task = taskNameOf(task, 'StreamingOutputParser(task)');
    this.imageSize = validateImageSize(imageSize, 'StreamingOutputParser(imageSize)');
    const format = TASK_OUTPUT[this.task];
    this.#parser =
      format.syntax === 'keypoint-json'
        ? new KeypointParser(this.#collector, this.imageSize)
        : new GroupParser(this.#collector, this.imageSize, format.coordinatesPerItem);
  }

  /** Takes the next piece of output text; returns what it completed. */
  push(chunk: string): ParseEvent[] {
    if (typeof chunk !== 'string') throw invalidType('StreamingOutputParser.push(chunk)', 'a string', chunk);
    if (this.#finished) return [];
    this.#parser.push(chunk);
    return this.#collector.drain();
  }

  /** Ends the stream (a cut-off last group is still read) and returns the final result. */
  finish(): ParseResult {
    if (!this.#finished) {
      this.#parser.finish();
      this.#finished = this.#snapshot();
    }
    return this.#finished;
  }

  /** The events finish() produced (call after finish()). */
  drain(): ParseEvent[] {
    return this.#collector.drain();
  }

  /** What has been read so far (predictions emitted early included). */
  get result(): ParseResult {
    return this.#finished ?? this.#snapshot();
  }

  #snapshot(): ParseResult {
    return {
      predictions: [...this.#collector.predictions],
      groups: this.#collector.referenceGroups(),
      unparsed: [...this.#collector.unparsedList],
      complete: this.#parser.complete,
    };
  }
}
