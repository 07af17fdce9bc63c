// compileGrammar against the tiny checkpoint's Rex-Omni-style tokenizer: the
// separators are the in-context token sequences (", " between coordinates is
// ",", "Ġ"), phrases are the categories' tokens, free text bans every special
// and coordinate id, the keypoint grammar lists the JSON-safe tokens (decoded,
// with the single characters that close the JSON, covering a real keypoint
// output), and bad options are rejected with "expected … but got …".
import { beforeAll, describe, expect, it } from 'vitest';
import {
  compileGrammar,
  encodeBetween,
  END_OF_VOCAB,
  GRAMMAR_FIELDS,
  isJsonSafeText,
  KEYPOINT_CLOSING_CHARS,
  type GrammarJson,
} from '../lib/grammar/index.js';
import { RexTokenizer } from '../lib/tokenizer.js';
import { ensureTinyCheckpoint } from './fixtures/tiny-checkpoint.js';

const C0 = 150643;
let tokenizer: RexTokenizer;

beforeAll(async () => {
  tokenizer = await RexTokenizer.fromDir(await ensureTinyCheckpoint());
});

const detection = (phrases: string[] | null) => ({ syntax: 'groups', kind: 'box', phrases }) as const;

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
  let vocab: Map<number, string>;
  beforeAll(async () => {
    g = await compileGrammar({ syntax: 'keypoint-json', kind: 'keypoints', phrases: null }, tokenizer, { maxPredictions: 3 });
    vocab = new Map();
    for (const entry of g.json_vocab.split('|').slice(0, -1)) {
      const colon = entry.indexOf(':');
      vocab.set(Number(entry.slice(0, colon)), entry.slice(colon + 1));
    }
  });

  it('is keypoint_json mode with every field, JSON-serialisable, the cap passed through', () => {
    expect(Object.keys(g).sort()).toEqual([...GRAMMAR_FIELDS].sort());
    expect(JSON.parse(JSON.stringify(g))).toEqual(g);
    expect(g.mode).toBe('keypoint_json');
    expect(g.max_predictions).toBe(3);
    expect(g.stop_ids).toEqual([151645]);
    expect(g.json_vocab.endsWith('|')).toBe(true);
  });

  it('lists a large JSON-safe candidate vocabulary: no special or coordinate id, texts decoded', () => {
    expect(vocab.size).toBeGreaterThan(10000);
    expect([...vocab].filter(([id, text]) => !(id < C0 && isJsonSafeText(text)))).toEqual([]);
    // Byte-level BPE is decoded: "Ġ" is a space, "Ċ" a newline.
    expect(vocab.get(220)).toBe(' ');
    expect(vocab.get(198)).toBe('\n');
    expect(vocab.get(1)).toBe('"');
    expect([...vocab.values()]).not.toContain('a.b');
    expect([...vocab.values()].some((t) => t.includes('.'))).toBe(false);
  });

  it('holds the single-character tokens the core closes the JSON with', () => {
    const singles = new Set([...vocab.values()].filter((t) => t.length === 1));
    for (const ch of KEYPOINT_CLOSING_CHARS) expect(singles.has(ch), JSON.stringify(ch)).toBe(true);
    for (const ch of '{}":, ') expect(singles.has(ch)).toBe(true);
  });

  it('covers every text token of a real keypoint output', async () => {
    const text =
      '```json\n{\n  "person1": {\n    "bbox": " <1> <2> <3> <4> ",\n    "keypoints": {\n' +
      '      "nose": " <5> <6> ",\n      "left eye": "unvisible",\n      "right eye": " <7> <8> "\n    }\n  }\n}\n```';
    const ids = await tokenizer.encode(text);
    const texts = ids.filter((id) => id < C0 || id >= C0 + 1000).map((id) => vocab.get(id));
    expect(texts.every((t) => t !== undefined)).toBe(true);
    expect(texts.join('')).toBe(text.replace(/<\d+>/g, ''));
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
