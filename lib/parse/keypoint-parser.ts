// The parser for keypoint output: a ```json fence holding
//   {"person1": {"bbox": " <x0> <y0> <x1> <y1> ", "keypoints": {"nose": " <x> <y> " | "unvisible", …}}, …}
// Each instance is read the moment its object closes, so a cut-off output
// still yields its complete instances (the reference's json.loads yields none).
// Per instance it follows the reference: bbox must hold exactly 4 coordinates;
// a keypoint that is "unvisible", null or not exactly 2 coordinates is not
// visible; the phrase is the instance key's leading letters ("person1" → "person").
import type { Keypoint, KeypointsPrediction, XY, XYXY } from '../predictions.js';
import type { ImageSize } from '../tasks/spec.js';
import { binsInText, boxFromBins, pointFromBins } from './coords.js';
import { setOwn } from './collector.js';
import { isPyBlank } from './text.js';
import type { ParseSink } from './types.js';

export const KEYPOINT_REASONS = {
  noJson: 'no JSON object in the keypoint output',
  invalidJson: 'an instance that is not valid JSON',
  notInstance: 'expected an instance object with "bbox" and "keypoints"',
  badBbox: 'expected "bbox" to be a string of 4 coordinates " <x0> <y0> <x1> <y1> "',
  badKeypoints: 'expected "keypoints" to be an object of name → " <x> <y> " | "unvisible"',
  badKeypoint: 'expected a keypoint " <x> <y> " or "unvisible" (read as not visible)',
  truncated: 'output cut off inside an instance',
} as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class KeypointParser {
  readonly #sink: ParseSink;
  readonly #image: ImageSize;
  #text = '';
  /** Next character to scan. */
  #at = 0;
  /** Depth of {…} / […] nesting outside strings; 0 before the top-level object opens. */
  #depth = 0;
  #started = false;
  #inString = false;
  #escape = false;
  /** Where the current top-level member (`"key": value`) starts, or -1 between members. */
  #memberStart = -1;
  /** No more input is read (the top-level object closed, or finish()). */
  #done = false;
  /** The top-level object closed. */
  #closed = false;
  readonly #byId = new Map<string, KeypointsPrediction>();

  constructor(sink: ParseSink, image: ImageSize) {
    this.#sink = sink;
    this.#image = image;
  }

  get complete(): boolean {
    return this.#closed;
  }

  push(chunk: string): void {
    if (this.#done) return;
    this.#text += chunk;
    this.#scan();
  }

  finish(): void {
    if (this.#done) return;
    if (!this.#started) {
      const rest = this.#text.replace(/<\|(?:im_end|endoftext)\|>/g, '');
      if (!isPyBlank(rest)) this.#sink.unparsed(this.#text, KEYPOINT_REASONS.noJson);
    } else if (this.#memberStart >= 0) {
      const text = this.#text.slice(this.#memberStart).trim();
      if (text !== '') this.#sink.unparsed(text, KEYPOINT_REASONS.truncated);
    }
    this.#done = true;
  }

  #scan(): void {
    const text = this.#text;
    if (!this.#started) {
      const open = text.indexOf('{', this.#at);
      if (open < 0) {
        this.#at = text.length;
        return;
      }
      this.#started = true;
      this.#depth = 1;
      this.#at = open + 1;
    }
    for (let i = this.#at; i < text.length; i++) {
      const ch = text[i];
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (ch === '\\') this.#escape = true;
        else if (ch === '"') this.#inString = false;
        continue;
      }
      if (this.#depth === 1 && this.#memberStart < 0 && ch !== ',' && ch !== '}' && !/\s/.test(ch)) this.#memberStart = i;
      if (ch === '"') {
        this.#inString = true;
      } else if (ch === '{' || ch === '[') {
        this.#depth++;
      } else if (ch === '}' || ch === ']') {
        this.#depth--;
        if (this.#depth === 1 && ch === '}') {
          this.#member(text.slice(this.#memberStart, i + 1));
          this.#memberStart = -2; // read; wait for the ',' or '}'
        } else if (this.#depth === 0) {
          if (this.#memberStart >= 0) this.#member(text.slice(this.#memberStart, i));
          this.#done = true;
          this.#closed = true;
          this.#at = i + 1;
          return;
        }
      } else if (ch === ',' && this.#depth === 1) {
        if (this.#memberStart >= 0) this.#member(text.slice(this.#memberStart, i));
        this.#memberStart = -1;
      }
    }
    this.#at = text.length;
  }

  /** One `"key": value` member of the top-level object. */
  #member(text: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(`{${text}}`);
    } catch {
      this.#sink.unparsed(text, KEYPOINT_REASONS.invalidJson);
      return;
    }
    const entries = Object.entries(parsed as Record<string, unknown>);
    if (entries.length !== 1) {
      this.#sink.unparsed(text, KEYPOINT_REASONS.invalidJson);
      return;
    }
    const [instanceId, value] = entries[0];
    if (!isPlainObject(value) || !('bbox' in value) || !('keypoints' in value)) {
      this.#sink.unparsed(text, KEYPOINT_REASONS.notInstance);
      return;
    }
    const bboxBins = typeof value.bbox === 'string' && !isPyBlank(value.bbox) ? binsInText(value.bbox) : [];
    if (bboxBins.length !== 4) {
      this.#sink.unparsed(text, KEYPOINT_REASONS.badBbox);
      return;
    }
    if (!isPlainObject(value.keypoints)) {
      this.#sink.unparsed(text, KEYPOINT_REASONS.badKeypoints);
      return;
    }
    const keypoints: Record<string, Keypoint> = {};
    for (const [name, raw] of Object.entries(value.keypoints)) {
      const bins = typeof raw === 'string' && raw !== 'unvisible' && !isPyBlank(raw) ? binsInText(raw) : [];
      if (bins.length === 2) {
        const xy: XY = [bins[0], bins[1]];
        setOwn(keypoints, name, { coords: pointFromBins(xy, this.#image), bins: xy });
      } else {
        setOwn(keypoints, name, null);
        if (raw !== 'unvisible' && raw !== null) this.#sink.unparsed(JSON.stringify({ [name]: raw }), KEYPOINT_REASONS.badKeypoint);
      }
    }
    const bins: XYXY = [bboxBins[0], bboxBins[1], bboxBins[2], bboxBins[3]];
    const prediction: KeypointsPrediction = {
      kind: 'keypoints',
      phrase: /^[a-zA-Z_]+/.exec(instanceId)?.[0] ?? 'keypoint_instance',
      instanceId,
      coords: boxFromBins(bins, this.#image),
      bins,
      keypoints,
    };
    // A repeated key replaces the earlier instance in place, as Python's json.loads keeps the last value.
    const previous = this.#byId.get(instanceId);
    this.#byId.set(instanceId, prediction);
    this.#sink.emit(prediction, previous);
  }
}
