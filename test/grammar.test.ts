// compileGrammar against the tiny checkpoint's Rex-Omni-style tokenizer: the
// separators are the in-context token sequences (", " between coordinates is
// ",", "Ġ"), phrases are the categories' tokens, free text bans every special
// and coordinate id, keypoint triggers match the tokens of a real keypoint
// output, and bad options are rejected with "expected … but got …".
import { beforeAll, describe, expect, it } from 'vitest';
import { compileGrammar, encodeBetween, END_OF_VOCAB, GRAMMAR_FIELDS, type GrammarJson } from '../lib/grammar/index.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const C0 = 150643;
let tokenizer: RexTokenizer;

beforeAll(async () => {
  tokenizer = await RexTokenizer.fromDir(await ensureTinyCheckpoint());
});

const detection = (phrases: string[] | null) => ({ syntax: 'groups', kind: 'box', phrases }) as const;

function isSuffix(tokens: readonly number[], end: number, seq: readonly number[]): boolean {
  return seq.length <= end && seq.every((id, i) => tokens[end - seq.length + i] === id);
}

describe('compileGrammar (groups)', () => {
  it('writes every field of the C++ struct, JSON-serialisable', async () => {
    const g = await compileGrammar(detection(['person']), tokenizer);
    expect(Object.keys(g).sort()).toEqual([...GRAMMAR_FIELDS].sort());
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
  });

  it('finds the structural ids, the coordinate range and the stop', async () => {
    const g = await compileGrammar(detection(['person']), tokenizer);
    expect(g).toMatchObject({
      mode: 'groups',
      coord_first: C0,
      coord_count: 1000,
      stop_ids: [151645],
      ref_start: 151646,
      ref_end: 151647,
      box_start: 151648,
      box_end: 151649,
      arity: 'box',
    });
  });

  it('tokenizes separators in context: "," and ", " between coordinates, ", " between groups', async () => {
    const g = await compileGrammar(detection(['person']), tokenizer);
    expect(g.item_separators).toEqual([[11], [11, 220]]);
    expect(g.group_separators).toEqual([[11, 220]]);
    expect(g.none_tokens).toEqual(await tokenizer.encode('None'));
    // The sequences are what a real output holds.
    const out = await tokenizer.encode('<|box_start|><1><2><3><4>, <5><6><7><8>,<9><9><9><9><|box_end|>, <|object_ref_start|>');
    expect(out.slice(5, 7)).toEqual(g.item_separators[1]);
    expect(out.slice(11, 12)).toEqual(g.item_separators[0]);
    expect(out.slice(17, 19)).toEqual(g.group_separators[0]);
  });

  it('uses the categories as fixed phrases (their tokens between the ref markers), deduplicated', async () => {
    const g = await compileGrammar(detection(['person', 'traffic light', 'person']), tokenizer);
    expect(g.phrase_mode).toBe('fixed');
    const whole = await tokenizer.encode('<|object_ref_start|>traffic light<|object_ref_end|>');
    expect(g.phrases).toEqual([await tokenizer.encode('person'), whole.slice(1, -1)]);
  });

  it('makes phrases free text when there are no categories, banning specials and coordinates', async () => {
    for (const [kind, phrases] of [['box', null], ['polygon', null], ['point', []]] as const) {
      const g = await compileGrammar({ syntax: 'groups', kind, phrases }, tokenizer, { maxPolygonCoords: 40 });
      expect(g.phrase_mode).toBe('free');
      expect(g.arity).toBe(kind);
      expect(g.max_item_coords).toBe(kind === 'polygon' ? 40 : 0);
      // Coordinates run straight into the special ids here, so one range covers both.
      expect(g.free_text_banned.at(-1)).toEqual([C0, END_OF_VOCAB]);
      // Every other banned id is a token whose text holds '<' (the reference reads a phrase as [^<]+).
      const lessThan = tokenizer.idsWithTextContaining('<');
      expect(lessThan.length).toBeGreaterThan(100);
      const bannedBelowCoords = g.free_text_banned.slice(0, -1).flatMap(([b, e]) => Array.from({ length: e - b }, (_, i) => b + i));
      expect(bannedBelowCoords).toEqual(lessThan.filter((id) => id < C0));
      for (const id of bannedBelowCoords.slice(0, 50)) expect(tokenizer.tokenContent(id)).toContain('<');
      expect(g.max_phrase_tokens).toBe(128);
    }
  });

  it('passes maxPredictions and forbidDuplicateBoxes through', async () => {
    const g = await compileGrammar(detection(['cat']), tokenizer, { maxPredictions: 7, forbidDuplicateBoxes: true });
    expect(g.max_predictions).toBe(7);
    expect(g.forbid_duplicate_boxes).toBe(true);
    const d = await compileGrammar(detection(['cat']), tokenizer);
    expect(d.max_predictions).toBe(0);
    expect(d.forbid_duplicate_boxes).toBe(false);
  });
});

describe('compileGrammar (keypoint)', () => {
  let g: GrammarJson;
  beforeAll(async () => {
    g = await compileGrammar({ syntax: 'keypoint-json', kind: 'keypoints', phrases: null }, tokenizer);
  });

  it('is free text with coordinate runs and no coordinate elsewhere', () => {
    expect(g.mode).toBe('free');
    expect(g.coords_only_in_runs).toBe(true);
    expect(g.free_text_banned).toEqual([[151643, END_OF_VOCAB]]);
    expect(g.runs).toHaveLength(2);
    expect(g.runs[0]).toMatchObject({ coords: 4, ordered_box: true, optional: false, separator: [220] });
    expect(g.runs[1]).toMatchObject({ coords: 2, ordered_box: false, optional: true, separator: [220] });
  });

  it('has triggers that match right before every coordinate run of a real keypoint output', async () => {
    const text =
      '```json\n{\n  "person1": {\n    "bbox": " <1> <2> <3> <4> ",\n    "keypoints": {\n' +
      '      "nose": " <5> <6> ",\n      "left eye": "unvisible",\n      "right eye": " <7> <8> "\n    }\n  }\n}\n```';
    const ids = await tokenizer.encode(text);
    const firstCoords: number[] = [];
    ids.forEach((id, i) => {
      if (id >= C0 && id < C0 + 1000 && !(ids[i - 2]! >= C0 && ids[i - 2]! < C0 + 1000)) firstCoords.push(i);
    });
    expect(firstCoords).toHaveLength(3); // bbox, nose, right eye
    // Each run starts with the separator; the trigger ends right before it. The bbox run is the longest match.
    const [bboxAt, ...pointAt] = firstCoords.map((i) => i - 1);
    expect(g.runs[0]!.triggers.some((t) => isSuffix(ids, bboxAt!, t))).toBe(true);
    for (const at of pointAt) {
      expect(g.runs[0]!.triggers.some((t) => isSuffix(ids, at, t))).toBe(false);
      expect(g.runs[1]!.triggers.some((t) => isSuffix(ids, at, t))).toBe(true);
    }
  });
});

describe('encodeBetween', () => {
  it('cuts the middle out, or says null when the text merges with a neighbour', async () => {
    expect(await encodeBetween(tokenizer, '<12>', ', ', '<34>')).toEqual([11, 220]);
    expect(await encodeBetween(tokenizer, 'ab', 'c', '')).toBeNull();
  });
});

describe('compileGrammar rejects bad input', () => {
  it('with "expected … but got …"', async () => {
    await expect(compileGrammar(detection(['a']), tokenizer, { maxPredictions: -1 })).rejects.toThrow(
      'compileGrammar(options.maxPredictions): expected an integer >= 0 but got -1',
    );
    await expect(compileGrammar(detection(['a']), tokenizer, { maxPolygonCoords: 7 })).rejects.toThrow(
      'compileGrammar(options.maxPolygonCoords): expected 0 or an even integer >= 6 but got 7',
    );
    await expect(
      compileGrammar(detection(['a']), tokenizer, { forbidDuplicateBoxes: 'yes' as unknown as boolean }),
    ).rejects.toThrow('compileGrammar(options.forbidDuplicateBoxes): expected a boolean but got "yes"');
    await expect(
      compileGrammar({ syntax: 'groups', kind: 'keypoints', phrases: null }, tokenizer),
    ).rejects.toThrow('compileGrammar(task.kind): expected "box" or "point" or "polygon" but got "keypoints"');
    await expect(compileGrammar(detection(['']), tokenizer)).rejects.toThrow(
      'compileGrammar(task.phrases): expected non-empty strings but got ""',
    );
  });
});
