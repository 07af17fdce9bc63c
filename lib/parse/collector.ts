// Collects what a task parser finds: the event list a push() returns, and the
// running predictions / reference-shaped groups / unparsed list.
import type { Prediction, XY } from '../predictions.js';
import type { ParseEvent, ParseSink, ReferenceEntry, ReferenceGroups, Unparsed } from './types.js';

/** A prediction as the reference's extracted_predictions writes it. */
export function referenceEntry(p: Prediction): ReferenceEntry {
  switch (p.kind) {
    case 'box':
      return { type: 'box', coords: [...p.coords] };
    case 'point':
      return { type: 'point', coords: [...p.coords] };
    case 'polygon':
      return { type: 'polygon', coords: p.coords.map((xy): XY => [xy[0], xy[1]]) };
    case 'keypoints': {
      const keypoints: Record<string, XY | 'unvisible'> = {};
      for (const [name, kp] of Object.entries(p.keypoints)) setOwn(keypoints, name, kp ? [kp.coords[0], kp.coords[1]] : 'unvisible');
      return { type: 'keypoint', bbox: [...p.coords], keypoints, instance_id: p.instanceId };
    }
  }
}

/** Sets an own property even for keys such as "__proto__". */
export function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

export class Collector implements ParseSink {
  readonly predictions: Prediction[] = [];
  readonly unparsedList: Unparsed[] = [];
  readonly #groups = new Map<string, Prediction[]>();
  #events: ParseEvent[] = [];

  /** The events since the last call. */
  drain(): ParseEvent[] {
    const events = this.#events;
    this.#events = [];
    return events;
  }

  emit(prediction: Prediction, replaces?: Prediction): void {
    const at = replaces ? this.predictions.indexOf(replaces) : -1;
    if (replaces && at >= 0) {
      // Replaced in place: a 'retract' event for the old one, then the new one.
      this.#events.push({ type: 'retract', prediction: replaces });
      this.predictions[at] = prediction;
      const group = this.#groups.get(replaces.phrase) as Prediction[];
      const inGroup = group.indexOf(replaces);
      if (replaces.phrase === prediction.phrase) group[inGroup] = prediction;
      else {
        group.splice(inGroup, 1);
        this.group(prediction.phrase).push(prediction);
      }
    } else {
      this.predictions.push(prediction);
      this.group(prediction.phrase).push(prediction);
    }
    this.#events.push({ type: 'prediction', prediction });
  }

  retract(prediction: Prediction): void {
    const at = this.predictions.indexOf(prediction);
    if (at >= 0) this.predictions.splice(at, 1);
    const group = this.#groups.get(prediction.phrase);
    const inGroup = group ? group.indexOf(prediction) : -1;
    if (group && inGroup >= 0) group.splice(inGroup, 1);
    this.#events.push({ type: 'retract', prediction });
  }

  unparsed(text: string, reason: string): void {
    const unparsed = { text, reason };
    this.unparsedList.push(unparsed);
    this.#events.push({ type: 'unparsed', unparsed });
  }

  group(phrase: string): Prediction[] {
    let group = this.#groups.get(phrase);
    if (!group) {
      group = [];
      this.#groups.set(phrase, group);
    }
    return group;
  }

  /** The groups as the reference's extracted_predictions (phrase → entries, first-appearance order). */
  referenceGroups(): ReferenceGroups {
    const groups: ReferenceGroups = {};
    for (const [phrase, predictions] of this.#groups) setOwn(groups, phrase, predictions.map(referenceEntry));
    return groups;
  }
}
