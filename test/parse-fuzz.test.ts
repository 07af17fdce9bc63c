// The parser never throws on text: random garbage, every truncation of valid
// outputs, and arbitrary chunkings, with streaming and whole-text parsing
// always agreeing.
import { describe, expect, it } from 'vitest';
import { StreamingOutputParser, parseOutput } from '../lib/parse/index.js';
import type { Prediction } from '../lib/predictions.js';
import { TASK_NAMES, type TaskName } from '../lib/tasks/index.js';
import { seededRandom as rng } from './fixtures/seeded-random.js';

const SIZE = { width: 1280, height: 720 };


const PIECES = [
  '<|object_ref_start|>', '<|object_ref_end|>', '<|box_start|>', '<|box_end|>', '<|im_end|>', '<|endoftext|>', '<|im_start|>',
  ',', ', ', ' ', '\n', 'None', 'cat', 'a, b', '<', '>', '<|', '|>', '<12', '3>', '<999>', '<0>', '<1000000>', '{', '}', '[', ']',
  '"', '\\', ':', '```json', '```', '"bbox"', '"keypoints"', '" <1> <2> <3> <4> "', '"unvisible"', 'null', '\ud800', '€', '__proto__',
];

function garbage(random: () => number): string {
  let text = '';
  const n = Math.floor(random() * 60);
  for (let i = 0; i < n; i++) {
    text += random() < 0.8 ? PIECES[Math.floor(random() * PIECES.length)] : String.fromCharCode(Math.floor(random() * 0x3000));
  }
  return text;
}

function streamed(text: string, task: TaskName, random: () => number) {
  const parser = new StreamingOutputParser(task, SIZE);
  const live: Prediction[] = [];
  const apply = (events: ReturnType<StreamingOutputParser['push']>) => {
    for (const e of events) {
      if (e.type === 'prediction') live.push(e.prediction);
      else if (e.type === 'retract') live.splice(live.indexOf(e.prediction), 1);
    }
  };
  for (let i = 0; i < text.length; ) {
    const n = 1 + Math.floor(random() * 8);
    apply(parser.push(text.slice(i, i + n)));
    i += n;
  }
  const result = parser.finish();
  apply(parser.drain());
  return { result, live };
}

const sortKey = (ps: Prediction[]) => ps.map((p) => JSON.stringify(p)).sort();

const VALID: Record<TaskName, string> = {
  detection: '<|object_ref_start|>person<|object_ref_end|><|box_start|><0><35><980><987>,<646><0><999><940><|box_end|>, <|object_ref_start|>cup<|object_ref_end|><|box_start|>None<|box_end|>, <|object_ref_start|>dog<|object_ref_end|><|box_start|><1><2><3><4><|box_end|><|im_end|>',
  pointing: '<|object_ref_start|>boy<|object_ref_end|><|box_start|><100><200>, <300><400><|box_end|>, <|object_ref_start|>girl<|object_ref_end|><|box_start|><5><6><|box_end|><|im_end|>',
  visual_prompting: '<|object_ref_start|>object_1<|object_ref_end|><|box_start|><10><20><30><40>,<50><60><70><80><|box_end|><|im_end|>',
  keypoint: '```json\n{"person1": {"bbox": " <1> <36> <987> <984> ", "keypoints": {"nose": " <540> <351> ", "left eye": "unvisible"}}, "person2": {"bbox": " <2> <3> <4> <5> ", "keypoints": {"nose": " <6> <7> "}}}\n```<|im_end|>',
  ocr_box: '<|object_ref_start|>Hello, world<|object_ref_end|><|box_start|><1><2><3><4><|box_end|>, <|object_ref_start|>Total: $5<|object_ref_end|><|box_start|><5><6><7><8><|box_end|><|im_end|>',
  ocr_polygon: '<|object_ref_start|>Hi<|object_ref_end|><|box_start|><1><2><3><4><5><6><7><8><|box_end|>, <|object_ref_start|>there<|object_ref_end|><|box_start|><9><10><11><12><13><14><|box_end|><|im_end|>',
  gui_grounding: '<|object_ref_start|>search bar<|object_ref_end|><|box_start|><100><20><900><60><|box_end|><|im_end|>',
  gui_pointing: '<|object_ref_start|>search bar<|object_ref_end|><|box_start|><500><40><|box_end|><|im_end|>',
};

describe('parser fuzz', () => {
  it('never throws on random garbage, and streaming agrees with parseOutput', () => {
    const random = rng(20260101);
    for (let round = 0; round < 3000; round++) {
      const text = garbage(random);
      const task = TASK_NAMES[round % TASK_NAMES.length];
      const whole = parseOutput(text, task, SIZE);
      const { result, live } = streamed(text, task, random);
      expect(result).toEqual(whole);
      expect(sortKey(live)).toEqual(sortKey(whole.predictions));
      for (const p of whole.predictions) {
        expect(p.phrase).toBeTypeOf('string');
        expect(p.bins.flat().every((b) => Number.isInteger(b) && b >= 0)).toBe(true);
      }
      for (const u of whole.unparsed) expect(u.text.length + u.reason.length).toBeGreaterThan(0);
    }
  });

  it('never throws on any truncation of a valid output, and keeps what was complete', () => {
    const random = rng(7);
    for (const task of TASK_NAMES) {
      const full = parseOutput(VALID[task], task, SIZE);
      expect(full.complete).toBe(true);
      expect(full.unparsed).toEqual([]);
      expect(full.predictions.length).toBeGreaterThan(0);
      for (let cut = 0; cut <= VALID[task].length; cut++) {
        const text = VALID[task].slice(0, cut);
        const partial = parseOutput(text, task, SIZE);
        expect(streamed(text, task, random).result).toEqual(partial);
        // All but the last (possibly partial) prediction are the full output's.
        const n = partial.predictions.length;
        const kept = task === 'keypoint' ? n : Math.max(0, n - 1);
        expect(partial.predictions.slice(0, kept)).toEqual(full.predictions.slice(0, kept));
        expect(n).toBeLessThanOrEqual(full.predictions.length);
      }
    }
  });

  it('never throws on random edits of valid outputs', () => {
    const random = rng(99);
    for (let round = 0; round < 2000; round++) {
      const task = TASK_NAMES[round % TASK_NAMES.length];
      let text = VALID[task];
      for (let k = 0; k < 3; k++) {
        const at = Math.floor(random() * text.length);
        const op = random();
        if (op < 0.33) text = text.slice(0, at) + text.slice(at + 1 + Math.floor(random() * 5));
        else if (op < 0.66) text = text.slice(0, at) + PIECES[Math.floor(random() * PIECES.length)] + text.slice(at);
        else text = text.slice(0, at) + String.fromCharCode(Math.floor(random() * 128)) + text.slice(at + 1);
      }
      const whole = parseOutput(text, task, SIZE);
      expect(streamed(text, task, random).result).toEqual(whole);
    }
  });

  it('parses a long dense output (5,000 boxes in one group)', () => {
    const items = Array.from({ length: 5000 }, (_, i) => `<${i % 1000}><${(i * 7) % 1000}><${(i * 13) % 1000}><${(i * 17) % 1000}>`);
    const text = `<|object_ref_start|>pigeon<|object_ref_end|><|box_start|>${items.join(',')}<|box_end|><|im_end|>`;
    const result = parseOutput(text, 'detection', SIZE);
    expect(result.predictions).toHaveLength(5000);
    expect(result.unparsed).toEqual([]);
  });
});
